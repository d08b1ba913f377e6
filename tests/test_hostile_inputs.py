"""A batch of hostile inputs fed to every command, as a user meets them (`mmgpt2.cli.main.main`).

Each command must: process the good inputs, name each bad one on stderr, exit 1 when any was
skipped (2 when nothing could be done), and never show a traceback. The inputs are tiny and
written here; the embedded tiny models answer.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import mmgpt2
from mmgpt2.cli.main import main
from mmgpt2.paths import embedded_model_dir


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``mmgpt2 ARGV``; argparse refusals count as exit 2."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exit_:
        rc = exit_.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return rc, out, err


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A 1x1 PNG whose header claims `width` x `height` (a decompression bomb in 70 bytes)."""
    Image.new("L", (1, 1)).save(path)
    raw = path.read_bytes()
    body = b"IHDR" + struct.pack(">II", width, height) + raw[24:29]
    path.write_bytes(raw[:8] + struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body)) + raw[33:])
    return path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    """Good and bad images, histories and model folders, written once for the module."""
    d = tmp_path_factory.mktemp("hostile")
    good = Image.open("assets/examples/shapes_0.png").convert("RGB")
    good.save(d / "good.png")
    good.save(d / "good.jpg")
    (d / "adir.png").mkdir()
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("not an image")
    raw = (d / "good.png").read_bytes()
    (d / "trunc.png").write_bytes(raw[: len(raw) // 2])
    png_claiming(d / "bomb.png", 100_000, 100_000)
    (d / "random.bin").write_bytes(np.random.default_rng(0).bytes(20_000))
    return {p.name: p for p in d.iterdir()} | {"missing.png": d / "missing.png", "dir": d}


BAD_IMAGES = ["missing.png", "adir.png", "empty.png", "text.png", "trunc.png", "bomb.png"]


def test_caption_captions_the_good_images_and_names_each_bad_one(hostile, capsys):
    images = [hostile["good.png"], *(hostile[b] for b in BAD_IMAGES), hostile["good.jpg"]]
    rc, out, err = run(["caption", "--batch-size", "2", *images], capsys)
    assert rc == 1
    lines = out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(hostile["good.png"]), str(hostile["good.jpg"])]
    assert all(line.split("\t")[1] for line in lines)
    for bad in BAD_IMAGES:
        assert f"skipped {hostile[bad]}" in err
    assert "decompression bomb" in err


def test_caption_json_keeps_finished_captions_and_stays_valid_json(hostile, capsys):
    rc, out, err = run(
        [
            "caption",
            "--json",
            "--batch-size",
            "1",
            hostile["good.png"],
            hostile["good.jpg"],
            hostile["missing.png"],
        ],
        capsys,
    )
    assert rc == 1 and "missing.png" in err
    assert [r["image"] for r in json.loads(out)] == [str(hostile["good.png"]), str(hostile["good.jpg"])]


def test_only_bad_images_still_give_valid_json_and_exit_1(hostile, capsys):
    rc, out, _ = run(["caption", "--json", hostile["text.png"]], capsys)
    assert rc == 1 and json.loads(out) == []


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["caption", "x.png", "--batch-size", "0"], "--batch-size"),
        (["caption", "x.png", "--batch-size", "-3"], "--batch-size"),
        (["caption", "x.png", "--num-beams", "0"], "--num-beams"),
        (["caption", "x.png", "--max-new-tokens", "0"], "--max-new-tokens"),
        (["caption", "x.png", "--temperature", "0"], "--temperature"),
        (["caption", "x.png", "--top-p", "0"], "--top-p"),
        (["caption", "x.png", "--top-p", "nan"], "--top-p"),
        (["caption", "x.png", "--seed", "-1"], "--seed"),
        (["dense-caption", "v.mp4", "--events", "0"], "--events"),
        (["dense-caption", "v.mp4", "--events", "100"], "--events"),
        (["dense-caption", "v.mp4", "--steps", "-5"], "--steps"),
        (["dense-caption", "v.mp4", "--threads", "0"], "--threads"),
        (["explain", "x.png", "--k", "-1"], "--k"),
        (["explain", "x.png", "--batch-size", "0"], "--batch-size"),
        (["kg", "query", "kg", "--text", "t", "--k", "-2"], "--k"),
        (["caption", "x.png", "--device", "banana"], "--device"),
        (["dense-caption", "v.mp4", "--device", "cuda:99"], "--device"),
        (["demo", "--port", "70000"], "--port"),
        (["demo", "--max-upload-mb", "0"], "--max-upload-mb"),
        (["world", "shapes", "--n", "0", "--out", "w"], "--n"),
    ],
)
def test_numeric_flags_are_checked_naming_the_flag_and_the_rule(argv, flag, capsys):
    rc, _, err = run(argv, capsys)
    assert rc == 2
    assert f"argument {flag}: " in err and ("must be" in err or "device" in err), err


def damaged(tmp_path: Path, name: str, base: str = "shapes-tiny") -> Path:
    folder = tmp_path / name
    shutil.copytree(embedded_model_dir(base), folder)
    return folder


def _edit_config(folder: Path, edit) -> None:
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))


def _edit_weights(folder: Path, edit) -> None:
    state = load_file(str(folder / "model.safetensors"))
    save_file(edit(state), str(folder / "model.safetensors"))


def _poison(state: dict, value: float) -> dict:
    key = sorted(state)[0]
    state[key] = state[key].clone()
    state[key].view(-1)[0] = value
    return state


MODEL_DAMAGE = {
    "truncated weights": (lambda f: _cut(f / "model.safetensors", 0.5), "model.safetensors"),
    "empty weights": (lambda f: (f / "model.safetensors").write_bytes(b""), "model.safetensors"),
    "pickle as weights": (
        lambda f: (f / "model.safetensors").write_bytes(b"\x80\x04\x95" + b"\x00" * 64),
        "model.safetensors",
    ),
    "NaN weights": (lambda f: _edit_weights(f, lambda s: _poison(s, float("nan"))), "NaN"),
    "infinite weights": (lambda f: _edit_weights(f, lambda s: _poison(s, float("inf"))), "infinite"),
    "integer weights": (
        lambda f: _edit_weights(f, lambda s: {k: v.to(torch.int32) for k, v in s.items()}),
        "dtype",
    ),
    "negative prefix length": (
        lambda f: _edit_config(f, lambda c: c["mapper"].update(prefix_length=-3)),
        "config.json",
    ),
    "string prefix length": (
        lambda f: _edit_config(f, lambda c: c["mapper"].update(prefix_length="ten")),
        "config.json",
    ),
    "bad saved decoding": (
        lambda f: _edit_config(f, lambda c: c.update(generation={"num_beams": 0})),
        "config.json",
    ),
    "truncated config": (lambda f: _cut(f / "config.json", 0.5), "config.json"),
}


def _cut(path: Path, share: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])


@pytest.mark.parametrize("damage", sorted(MODEL_DAMAGE))
def test_a_damaged_model_folder_is_one_line_naming_the_file(damage, hostile, tmp_path, capsys):
    folder = damaged(tmp_path, "model")
    make, expected = MODEL_DAMAGE[damage]
    make(folder)
    rc, out, err = run(["caption", "--model", folder, hostile["good.png"]], capsys)
    assert rc == 2 and out == ""
    assert str(folder) in err and expected in err, err
    assert [line for line in err.splitlines() if "error" in line] == [err.strip().splitlines()[-1]]


@pytest.mark.parametrize(
    "model, expected",
    [
        ("./no/such/model", "no such model folder"),
        ("/no/such/model", "no such model folder"),
        ("assets/nope", "no such model folder"),  # 'assets' is a folder here: a path, not a Hub id
        ("chest-tiny", "mmgpt2 explain"),
        ("shapes-video-zerota", "mmgpt2 dense-caption"),
    ],
)
def test_model_names_that_cannot_be_used_say_why(model, expected, hostile, capsys):
    rc, _, err = run(["caption", "--model", model, hostile["good.png"]], capsys)
    assert rc == 2 and expected in err and "Repo id" not in err, err


def test_binary_user_history_is_refused_naming_the_file(hostile, capsys):
    argv = [
        "caption",
        "--model",
        "shapes-users-tiny",
        "--user-history",
        hostile["random.bin"],
        hostile["good.png"],
    ]
    rc, out, err = run(argv, capsys)
    assert rc == 2 and out == ""
    assert str(hostile["random.bin"]) in err and "does not look like text" in err


def test_empty_user_history_is_a_one_line_warning(hostile, tmp_path):
    """In a real process (pytest records warnings instead of printing them)."""
    history = tmp_path / "empty.txt"
    history.write_text("\n\n")
    argv = ["caption", "--model", "shapes-users-tiny", "--user-history", history, hostile["good.png"]]
    done = subprocess.run(
        [sys.executable, "-m", "mmgpt2.cli.main", *map(str, argv)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(mmgpt2.__file__).parents[1]), "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.strip()
    warning = "mmgpt2 caption: warning: the user's history gave no context words"
    assert warning in done.stderr and "Traceback" not in done.stderr
    assert "return func" not in done.stderr and "UserWarning" not in done.stderr  # no source line of ours


def test_explain_and_kg_query_skip_bad_images_by_path(hostile, capsys):
    chest = Image.new("L", (64, 64), 90)
    chest.save(hostile["dir"] / "chest.png")
    images = [hostile["dir"] / "chest.png", hostile["text.png"], hostile["missing.png"]]
    rc, out, err = run(["explain", "--json", "--k", "0", *images], capsys)
    assert rc == 1
    results = json.loads(out)
    assert [r["image"] for r in results] == [str(images[0])] and results[0]["triplets"] == []
    assert str(images[1]) in err and str(images[2]) in err
    kg = embedded_model_dir("chest-tiny") / "kg"
    rc, out, err = run(["kg", "query", kg, *images, "--json"], capsys)
    assert rc == 1 and [r["query"] for r in json.loads(out)] == [str(images[0])]
    assert str(images[1]) in err and str(images[2]) in err


@pytest.mark.parametrize("name", ["random.bin", "good.png"])
def test_kg_build_from_a_file_that_is_not_text_is_one_line(name, hostile, tmp_path, capsys):
    for extra in ([], ["--from-reports"]):
        argv = [
            "kg",
            "build",
            hostile[name],
            "--encoder",
            "embedded:chest-clip",
            "--out",
            tmp_path / "kg",
            *extra,
        ]
        rc, _, err = run(argv, capsys)
        assert rc == 2 and f"{hostile[name]}" in err and "not UTF-8 text" in err


def test_an_empty_knowledge_graph_is_announced(tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text("")
    out_dir = tmp_path / "kg"
    rc, _, err = run(
        ["kg", "build", tmp_path / "empty.jsonl", "--encoder", "embedded:chest-clip", "--out", out_dir],
        capsys,
    )
    assert rc == 0 and "gave no triplets" in err
    rc, _, err = run(["kg", "query", out_dir, "--text", "pleural effusion"], capsys)
    assert rc == 0 and "holds no triplets" in err


@pytest.fixture(scope="module")
def fast_video_model(tmp_path_factory):
    from mmgpt2.apps.video.model import DenseVideoCaptioner

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("dvc") / "model"
    settings = {
        "steps": 0,
        "samples_per_event": 1,
        "final_samples": 1,
        "max_new_tokens": 6,
        "lookahead": False,
        "refine_passes": 0,
        "projection_vocab": 500,
    }
    DenseVideoCaptioner.build(
        "embedded:shapes-clip", "embedded:shapes-gpt2", sampling={"fps": 2.0, "size": 32}, **settings
    ).save_pretrained(folder)
    return folder


def test_dense_caption_names_bad_videos_refuses_same_ids_and_exits_1(
    hostile, fast_video_model, tmp_path, capsys
):
    from test_video_reader import write_mp4

    good = tmp_path / "a" / "clip.mp4"
    twin = tmp_path / "b" / "clip.mp4"  # the same video id: its events must not overwrite the first's
    for path in (good, twin):
        path.parent.mkdir()
        write_mp4(path, n_frames=12, rate=4, size=32)
    (tmp_path / "zero.mp4").write_bytes(b"")
    argv = [
        "dense-caption",
        "--model",
        fast_video_model,
        "--json",
        good,
        tmp_path / "zero.mp4",
        twin,
        tmp_path / "gone.mp4",
    ]
    rc, out, err = run(argv, capsys)
    assert rc == 1
    doc = json.loads(out)
    assert list(doc["results"]) == ["clip"]
    assert "zero" in doc["external_data"]["errors"] and str(twin) in doc["external_data"]["errors"]
    assert "same video id 'clip'" in err and "gone.mp4" in err and "zero.mp4" in err


def test_dense_caption_with_no_good_video_exits_2(fast_video_model, hostile, capsys):
    rc, _, err = run(["dense-caption", "--model", fast_video_model, hostile["good.png"]], capsys)
    assert rc == 2 and "still image" in err
