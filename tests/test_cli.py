"""The command line: every command explains itself, the COCO recipe runs end to end on tiny models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mmgpt2.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def test_every_command_has_help(capsys):
    usage = build_parser().format_usage()  # "usage: mmgpt2 [-h] [--debug] COMMAND ..." lists no names
    with pytest.raises(SystemExit):
        main(["no-such-command"])
    commands = capsys.readouterr().err.split("choose from ")[1].split(")")[0].replace("'", "").split(", ")
    assert "COMMAND" in usage
    assert {"caption", "extract-features", "train-captioner", "eval-captions", "list-models"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: mmgpt2 " + name in capsys.readouterr().out


def test_eval_captions_prints_json_scores(tmp_path, capsys):
    (tmp_path / "pred.json").write_text(json.dumps([{"image": "a.png", "caption": "a red circle"}]))
    (tmp_path / "refs.json").write_text(json.dumps({"a.png": ["a red circle", "one red circle"]}))
    assert (
        main(
            [
                "eval-captions",
                "--pred",
                str(tmp_path / "pred.json"),
                "--refs",
                str(tmp_path / "refs.json"),
                "--json",
            ]
        )
        == 0
    )
    scores = json.loads(capsys.readouterr().out)
    assert scores["BLEU-1"] > 0.99 and "CIDEr" in scores


def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    assert (
        main(["eval-captions", "--pred", str(tmp_path / "none.json"), "--refs", str(tmp_path / "r.json")])
        == 2
    )
    err = capsys.readouterr().err
    assert "none.json" in err and "Traceback" not in err


@pytest.mark.slow
def test_coco_recipe_runs_end_to_end_on_the_embedded_models(tmp_path):
    images = []
    for i, color in enumerate([(255, 0, 0), (0, 0, 255), (0, 160, 0), (240, 240, 0)]):
        folder = tmp_path / "coco" / ("train2014" if i < 3 else "val2014")
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), color).save(folder / f"{i}.jpg")
        images.append(
            {
                "filepath": folder.name,
                "filename": f"{i}.jpg",
                "cocoid": i,
                "split": "train" if i < 3 else "test",
                "sentences": [{"raw": f"a picture number {i}", "tokens": []}],
            }
        )
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": images}))
    cmd = [
        sys.executable,
        str(ROOT / "recipes" / "coco_clipcap.py"),
        "--karpathy",
        str(tmp_path / "dataset_coco.json"),
        "--images",
        str(tmp_path / "coco"),
        "--out",
        str(tmp_path / "run"),
        "--encoder",
        "embedded:shapes-clip",
        "--lm",
        "embedded:shapes-gpt2",
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--num-beams",
        "2",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = json.loads((tmp_path / "run" / "scores.json").read_text())
    assert set(scores) >= {"BLEU-4", "METEOR", "CIDEr"}
    preds = json.loads((tmp_path / "run" / "predictions.json").read_text())
    assert [r["id"] for r in preds] == ["3"]
