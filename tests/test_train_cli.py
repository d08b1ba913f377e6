"""`mmgpt2 train-captioner` as a user meets it: seeds, kills, resumes, damaged caches and bad flags.

A module-wide tiny world (8 scenes, 32 caption pairs) and its feature cache keep every run to a few
dozen steps of the embedded models.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import error_line
from safetensors.torch import load_file

from mmgpt2.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
TRAIN_FLAGS = ["--mapper", "mlp", "--batch-size", "4", "--lr", "1e-3", "--warmup-steps", "2", "--seed", "7"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("train_cli")
    assert main(["world", "shapes", "--n", "8", "--seed", "3", "--out", str(folder / "w")]) == 0
    captions = folder / "w" / "captions.jsonl"
    assert (
        main(
            [
                "extract-features",
                str(captions),
                "--encoder",
                "embedded:shapes-clip",
                "--out",
                str(folder / "feats"),
            ]
        )
        == 0
    )
    return folder


def train_args(world: Path, out: Path, *extra: str, features: Path | None = None) -> list[str]:
    return [
        "train-captioner",
        "--train",
        str(world / "w" / "captions.jsonl"),
        "--features",
        str(features or world / "feats"),
        "--features-only-cached",
        "--out",
        str(out),
        *TRAIN_FLAGS,
        *extra,
    ]


def cli(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "mmgpt2.cli.main", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key}: max diff {(a[key] - b[key]).abs().max()}"


def trained_step(out: Path) -> int:
    try:
        return json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError):
        return -1


@pytest.mark.slow
def test_sigkill_then_resume_ends_bit_identical_to_an_unbroken_run_with_the_same_seed(world):
    steps = ["--max-steps", "24", "--save-every", "1"]  # a checkpoint every step: kills land mid-save
    code, _, err = finish(cli(train_args(world, world / "unbroken", *steps)))
    assert code == 0, err[-2000:]

    killed = world / "killed"
    proc = cli(train_args(world, killed, *steps))
    deadline = time.monotonic() + 240
    while trained_step(killed) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "final").exists()
    code, out, err = finish(cli(train_args(world, killed, *steps, "--resume")))
    assert code == 0, err[-2000:]
    assert "resumed from" in out + err
    assert_identical(weights(world / "unbroken" / "final"), weights(killed / "final"))


def test_one_seed_gives_one_model(world):
    for out in ("seed-a", "seed-b"):
        torch.manual_seed(hash(out) % 1000)  # whatever ran before must not matter
        assert main(train_args(world, world / out, "--max-steps", "2")) == 0
    assert_identical(weights(world / "seed-a" / "final"), weights(world / "seed-b" / "final"))


def test_a_kill_between_the_checkpoint_renames_resumes_from_the_backup(world, capsys):
    out = world / "renames"
    assert main(train_args(world, out, "--max-steps", "4", "--save-every", "2")) == 0
    saved = weights(out / "checkpoint")
    os.replace(out / "checkpoint", out / ".checkpoint.old")  # the state a kill after the 1st rename leaves
    assert main(train_args(world, out, "--max-steps", "6", "--save-every", "2", "--resume")) == 0
    printed = capsys.readouterr().out
    assert "restored" in printed and "resumed from" in printed and "at step 4" in printed
    assert trained_step(out) == 6 and not (out / ".checkpoint.old").exists()
    assert any(not torch.equal(saved[k], v) for k, v in weights(out / "checkpoint").items())


def test_a_stale_backup_does_not_break_later_saves(world, capsys):
    out = world / "stale"
    assert main(train_args(world, out, "--max-steps", "4", "--save-every", "2")) == 0
    stale = out / ".checkpoint.old"  # a kill while the previous backup was being deleted
    shutil.copytree(out / "checkpoint", stale)
    (stale / "model.safetensors").unlink()
    assert main(train_args(world, out, "--max-steps", "6", "--save-every", "2", "--resume")) == 0
    assert trained_step(out) == 6 and not stale.exists()


@pytest.mark.parametrize(
    "change",
    [["--batch-size", "32"], ["--seed", "8"], ["--train", "SMALLER"], ["--train", "REORDERED"]],
    ids=["larger-batch", "other-seed", "smaller-training-file", "same-size-other-order"],
)
def test_a_resume_that_cannot_continue_the_same_run_says_so_and_stops(world, capsys, change):
    out = world / f"resume-{change[0]}"
    # 7 steps of 8 per epoch: a resume with another batch size or file used to loop forever here.
    assert main(train_args(world, out, "--max-steps", "7", "--save-every", "7")) == 0
    capsys.readouterr()
    rows = (world / "w" / "captions.jsonl").read_text().splitlines(True)
    if change[1] in ("SMALLER", "REORDERED"):
        other = world / "w" / f"{change[1].lower()}.jsonl"
        other.write_text("".join(rows[:2] if change[1] == "SMALLER" else rows[::-1]))
        change = ["--train", str(other)]
    args = train_args(world, out, "--max-steps", "20", "--save-every", "7", "--resume")
    args[args.index(change[0]) + 1] = change[1]
    started = time.monotonic()
    assert main(args) == 2
    err = error_line(capsys.readouterr().err, "train-captioner")
    assert time.monotonic() - started < 60
    assert err.startswith(f"error: {out / 'checkpoint'}: cannot continue this run")
    assert trained_step(out) == 7  # the checkpoint is kept for a resume with the right settings


@pytest.mark.parametrize(
    ("flag", "value", "rule"),
    [
        ("--save-every", "0", ">= 1"),
        ("--max-steps", "0", ">= 1"),
        ("--epochs", "-1", ">= 1"),
        ("--lr", "nan", "finite"),
    ],
)
def test_bad_numeric_flags_are_named_with_their_rule(world, capsys, flag, value, rule):
    args = train_args(world, world / "flags")
    assert main([*args, flag, value]) == 2
    err = error_line(capsys.readouterr().err, "train-captioner")
    assert err.startswith(f"error: {flag} {value}: must be") and rule in err
    assert not (world / "flags").exists()


def test_damaged_feature_caches_are_named_in_one_line(world, capsys):
    cut = world / "cut-shard"
    shutil.copytree(world / "feats", cut)
    shard = next(cut.glob("features-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:200])
    assert main(train_args(world, world / "x", features=cut)) == 2
    err = error_line(capsys.readouterr().err, "train-captioner")
    assert err.startswith(f"error: {shard}: unreadable feature shard")

    truncated = world / "cut-index"
    shutil.copytree(world / "feats", truncated)
    index = truncated / "index.json"
    index.write_text(index.read_text()[:12])
    for cached_only in (True, False):
        args = train_args(world, world / "x", features=truncated)
        if not cached_only:
            args.remove("--features-only-cached")
        assert main(args) == 2
        err = error_line(capsys.readouterr().err, "train-captioner")
        assert err.startswith(f"error: {index}: not valid JSON")


def test_features_only_cached_names_each_image_it_drops(world, capsys):
    rows = (world / "w" / "captions.jsonl").read_text().splitlines()
    extra = json.loads(rows[0]) | {"image": "not-encoded.png"}
    train_file = world / "w" / "with-new.jsonl"
    train_file.write_text("\n".join([*rows, json.dumps(extra)]) + "\n")
    args = train_args(world, world / "only-cached", "--max-steps", "1")
    args[args.index("--train") + 1] = str(train_file)
    with pytest.warns(UserWarning, match="not-encoded.png"):
        assert main(args) == 0
    err = capsys.readouterr().err
    assert f"skipped {world / 'w' / 'not-encoded.png'}: not in the feature cache" in err
