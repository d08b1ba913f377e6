"""Training: resumable to the bit, atomic checkpoints, sharded across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import CAPTIONS, ToyFeatures, make_captioner
from safetensors.torch import load_file

from mmgpt2.training import TrainConfig, train


def config(out: Path, **kw) -> TrainConfig:
    return TrainConfig(
        out_dir=str(out), epochs=3, batch_size=4, lr=3e-3, warmup_steps=3, save_every=4, progress=False, **kw
    )


def test_resumed_run_ends_with_the_same_weights_as_an_unbroken_one(tmp_path):
    unbroken = train(make_captioner(), ToyFeatures(), config(tmp_path / "a"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(make_captioner(), ToyFeatures(crash_at=4 * 9), config(tmp_path / "b"))  # dies in step 10
    state = json.loads((tmp_path / "b" / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 8
    resumed = train(make_captioner(), ToyFeatures(), config(tmp_path / "b", resume=True))
    a, b = load_file(unbroken / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    fresh = make_captioner().trainable_state_dict()
    assert any(not torch.equal(fresh[k], a[k]) for k in a), "training changed nothing"


def test_training_lowers_the_loss(tmp_path):
    cap = make_captioner("mlp")
    batch = {"pooled": torch.stack([ToyFeatures()[i]["pooled"] for i in range(4)]), "captions": CAPTIONS}
    before = cap.training_loss(batch).item()
    train(cap, ToyFeatures(), config(tmp_path, mixed_precision="bf16"))
    assert cap.training_loss(batch).item() < before * 0.95


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    train(
        make_captioner(),
        ToyFeatures(),
        TrainConfig(out_dir=str(tmp_path), max_steps=4, batch_size=4, save_every=4, progress=False),
    )
    before = (tmp_path / "checkpoint" / "model.safetensors").read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        train(
            make_captioner(),
            ToyFeatures(),
            TrainConfig(
                out_dir=str(tmp_path), max_steps=8, batch_size=4, save_every=4, progress=False, resume=True
            ),
        )
    assert (tmp_path / "checkpoint" / "model.safetensors").read_bytes() == before
    assert json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())["step"] == 4


SCRIPT = """
import json, os, sys
sys.path.insert(0, {tests!r})
from helpers import CAPTIONS, ToyFeatures, make_captioner
from mmgpt2.training import TrainConfig, train
data = ToyFeatures()
train(make_captioner(), data, TrainConfig(out_dir={out!r}, epochs=1, batch_size=3, save_every=2, progress=False))
with open(os.path.join({out!r}, "seen_rank" + os.environ["RANK"] + ".json"), "w") as f:
    json.dump(data.seen, f)
"""


@pytest.mark.slow
def test_two_processes_see_disjoint_shards_and_write_one_checkpoint(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path / "run")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # `--multi_gpu` is accelerate's torchrun launcher; with no GPU present it gives two gloo CPU ranks.
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(script),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = [set(json.loads((tmp_path / "run" / f"seen_rank{r}.json").read_text())) for r in (0, 1)]
    assert seen[0] and seen[1]
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(24))
    checkpoints = [p for p in (tmp_path / "run").rglob("trainer_state.json")]
    assert len(checkpoints) == 1
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
