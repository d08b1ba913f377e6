"""COCO in its real layout: Karpathy's dataset_coco.json + train2014/val2014, end to end through the recipe.

The fixture is written here in the layout of Karpathy's ``caption_datasets.zip`` (``dataset_coco.json``:
``{"images": [{"filepath", "filename", "imgid", "split", "sentids", "sentences", "cocoid"}],
"dataset": "coco"}``) and COCO 2014's image names (``val2014/COCO_val2014_000000391895.jpg``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmgpt2.data import extract_features, read_coco_karpathy
from mmgpt2.encoders import load_encoder
from mmgpt2.errors import Mmgpt2Error

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))

COLORS = [(220, 30, 30), (30, 30, 220), (30, 160, 30), (230, 230, 20), (200, 0, 200), (0, 200, 200)]


def write_karpathy_coco(root: Path, unreadable_test: bool = True) -> Path:
    """Three train, one restval, three test images (the last test image unreadable), as Karpathy ships them."""
    images, sentid = [], 0
    plan = [("train2014", "train")] * 3 + [("val2014", "restval")] + [("val2014", "test")] * 3
    for imgid, ((folder, split), color) in enumerate(zip(plan, COLORS + [(90, 90, 90)], strict=True)):
        cocoid = 391895 + imgid * 7
        name = f"COCO_{folder}_{cocoid:012d}.jpg"
        (root / "coco" / folder).mkdir(parents=True, exist_ok=True)
        if split == "test" and imgid == len(plan) - 1 and unreadable_test:
            (root / "coco" / folder / name).write_bytes(b"\xff\xd8 truncated jpeg")
        else:
            Image.new("RGB", (64, 64), color).save(root / "coco" / folder / name)
        raws = [f"A red circle in picture {imgid}.", f"Picture {imgid} shows a red circle"]
        sentences = [
            {"tokens": r.lower().rstrip(".").split(), "raw": r, "imgid": imgid, "sentid": sentid + k}
            for k, r in enumerate(raws)
        ]
        images.append(
            {
                "filepath": folder,
                "sentids": [s["sentid"] for s in sentences],
                "filename": name,
                "imgid": imgid,
                "split": split,
                "sentences": sentences,
                "cocoid": cocoid,
            }
        )
        sentid += len(sentences)
    path = root / "dataset_coco.json"
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path


def write_official_captions(root: Path) -> Path:
    path = root / "annotations" / "captions_val2014.json"
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps(
            {
                "info": {"year": 2014},
                "images": [{"id": 391895, "file_name": "COCO_val2014_000000391895.jpg"}],
                "annotations": [{"image_id": 391895, "id": 1, "caption": "A man riding a bike."}],
            }
        )
    )
    return path


def test_karpathy_reader_takes_restval_into_train_and_keeps_cocoids(tmp_path):
    path = write_karpathy_coco(tmp_path)
    train = read_coco_karpathy(path, tmp_path / "coco", "train")
    test = read_coco_karpathy(path, tmp_path / "coco", "test")
    assert len(train) == 4 and len(test) == 3
    assert test[0].id == str(391895 + 4 * 7)
    assert test[0].image == str(tmp_path / "coco" / "val2014" / f"COCO_val2014_{391895 + 28:012d}.jpg")
    assert test[0].captions == ["A red circle in picture 4.", "Picture 4 shows a red circle"]


def test_official_captions_file_is_refused_naming_the_karpathy_format(tmp_path):
    with pytest.raises(Mmgpt2Error, match=r"official COCO captions file.*dataset_coco\.json"):
        read_coco_karpathy(write_official_captions(tmp_path), tmp_path, "train")


def test_recipe_refuses_official_captions_with_one_line(tmp_path, capsys):
    import coco_clipcap
    from recipe_common import run_main

    argv = ["--karpathy", str(write_official_captions(tmp_path)), "--images", str(tmp_path)]
    argv += ["--out", str(tmp_path / "run")]
    assert run_main(lambda: coco_clipcap.main(argv)) == 2
    err = capsys.readouterr().err
    assert "captions_val2014.json" in err and "dataset_coco.json" in err and "Traceback" not in err


def test_failed_images_are_retried_once_readable(tmp_path):
    folder = tmp_path / "val2014"
    folder.mkdir()
    good, bad = folder / "COCO_val2014_000000000001.jpg", folder / "COCO_val2014_000000000002.jpg"
    Image.new("RGB", (32, 32), (200, 0, 0)).save(good)
    bad.write_bytes(b"not yet downloaded")
    enc = load_encoder("embedded:shapes-clip")
    store = extract_features([str(good), str(bad)], enc, tmp_path / "feats", progress=False)
    assert str(bad) not in store
    failed = [json.loads(x)["image"] for x in (tmp_path / "feats" / "failed.jsonl").read_text().splitlines()]
    assert failed == [str(bad)]
    Image.new("RGB", (32, 32), (0, 0, 200)).save(bad, format="JPEG")  # the download finished
    store = extract_features([str(good), str(bad)], enc, tmp_path / "feats", progress=False)
    assert str(bad) in store and len(store) == 2
    assert not (tmp_path / "feats" / "failed.jsonl").exists()  # nothing fails any more


def test_coco_recipe_end_to_end_on_the_real_layout(tmp_path):
    import coco_clipcap

    torch.set_num_threads(1)
    path = write_karpathy_coco(tmp_path)
    argv = ["--karpathy", str(path), "--images", str(tmp_path / "coco"), "--out", str(tmp_path / "run")]
    argv += ["--encoder", "embedded:shapes-clip", "--lm", "embedded:shapes-gpt2", "--limit", "3"]
    argv += ["--max-steps", "2", "--batch-size", "2", "--num-beams", "1", "--warmup-steps", "1"]
    argv += ["--metrics", "BLEU-4,ROUGE-L,CIDEr"]  # METEOR's JVM start is slow; test_cli's slow run has it
    assert coco_clipcap.main(argv) == 0
    preds = json.loads((tmp_path / "run" / "predictions.json").read_text())
    scores = json.loads((tmp_path / "run" / "scores.json").read_text())
    # the first three test images: two scored by cocoid, the unreadable one reported by cocoid
    assert [r["id"] for r in preds] == [str(391895 + 28), str(391895 + 35)]
    assert preds[0]["references"] == ["A red circle in picture 4.", "Picture 4 shows a red circle"]
    assert all(isinstance(r["prediction"], str) for r in preds)
    assert scores["unreadable_images"] == [str(391895 + 42)] and scores["images_scored"] == 2
    assert {"BLEU-4", "ROUGE-L", "CIDEr"} <= set(scores) and "METEOR" not in scores
    # the named config's mapper was built (8 layers, prefix 10), not a hard-coded one
    config = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    assert config["mapper"]["num_layers"] == 8 and config["mapper"]["type"] == "transformer"
    assert config["generation"] == {"max_new_tokens": 30, "num_beams": 1}  # config's, --num-beams on top


def test_coco_recipe_with_one_seed_trains_one_model(tmp_path):
    import coco_clipcap

    torch.set_num_threads(1)
    path = write_karpathy_coco(tmp_path)
    weights = []
    for run in ("a", "b"):
        argv = ["--karpathy", str(path), "--images", str(tmp_path / "coco"), "--out", str(tmp_path / run)]
        argv += [
            "--encoder",
            "embedded:shapes-clip",
            "--lm",
            "embedded:shapes-gpt2",
            "--limit",
            "2",
            "--seed",
            "3",
        ]
        argv += ["--max-steps", "1", "--batch-size", "2", "--num-beams", "1", "--metrics", "BLEU-4"]
        assert coco_clipcap.main(argv) == 0
        weights.append((tmp_path / run / "final" / "model.safetensors").read_bytes())
    assert weights[0] == weights[1]
