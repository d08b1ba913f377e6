"""`mmgpt2 dense-caption` under `accelerate launch`: two CPU processes share the videos and write
the predictions file one process writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("accelerate")

ROOT = Path(__file__).resolve().parents[1]
TINY = {"events": 2, "steps": 2, "samples_per_event": 1, "final_samples": 1, "max_new_tokens": 6}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_two_processes_split_the_videos_and_write_what_one_process_writes(tmp_path):
    from mmgpt2.apps.video.model import DenseVideoCaptioner
    from mmgpt2.worlds import videos

    videos.write(tmp_path / "v", n=3, seed=21, duration=(4.0, 4.0), scenes=(2, 2), fps=4)
    model = DenseVideoCaptioner.build(
        "embedded:shapes-clip", "embedded:shapes-gpt2", sampling={"fps": 2.0, "size": 64}, **TINY
    )
    model.save_pretrained(tmp_path / "dvc")
    (tmp_path / "v" / "zz_broken.mp4").write_bytes(b"")  # one bad input: both runs must say so
    clips = sorted(str(p) for p in (tmp_path / "v").glob("*.mp4"))
    cli = ["-m", "mmgpt2.cli.main", "dense-caption", *clips, "--model", "dvc", "--threads", "1"]

    single = _run([sys.executable, *cli, "--out", "single.json"], tmp_path)
    assert single.returncode == 1, single.stderr[-2000:]  # 1: a video was skipped
    # On a machine without GPUs, accelerate starts several processes only with --multi_gpu.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    spread = _run([*launch, *cli, "--out", "spread.json"], tmp_path)
    assert spread.returncode == 1, spread.stderr[-2000:]
    assert "skipped zz_broken" in spread.stderr

    assert "wrote 3 videos" in spread.stdout  # the merging main process spoke, once
    assert spread.stdout.count("wrote") == 1
    one = json.loads((tmp_path / "single.json").read_text())
    two = json.loads((tmp_path / "spread.json").read_text())
    assert list(one["results"]) == ["00000", "00001", "00002"] and one == two
    assert list(two["external_data"]["errors"]) == ["zz_broken"]
    assert not list(tmp_path.glob("spread.json.part*"))  # the per-process parts are merged away
