"""Attend2u in its real layouts (cesc-park/attend2u), end to end through the personalized recipe.

Instagram: ``json/insta-caption-{train,test1,test2}.json`` = ``{user: {post: {"caption", "tags"}}}``,
images ``images/{user}_@_{post}`` without extension. YFCC100M: ``json/yfcc-caption-{train,test}.json``
= ``{user_id: [{"title", "description", "user tags", "page url", ...}]}`` with URL-encoded values,
images ``images/{user_id}_{photo_id}`` without extension. Fixtures are written here, never copied.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmgpt2.apps.personalized.attend2u import (
    load_attend2u_splits,
    normalize_instagram,
    normalize_yfcc,
    read_instagram,
    read_yfcc,
    yfcc_caption,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))

SMALL_MODEL = ["--encoder", "embedded:shapes-clip", "--lm", "embedded:users-gpt2", "--prefix-length", "4"]
SMALL_MODEL += ["--hidden-dim", "64", "--layers", "1", "--max-steps", "2", "--batch-size", "4"]
SMALL_MODEL += [
    "--warmup-steps",
    "1",
    "--num-beams",
    "1",
    "--metrics",
    "BLEU-4,ROUGE-L,CIDEr",
]  # no METEOR: its JVM start is slow


def _image(path: Path, seed: int) -> None:
    """A JPEG saved under Attend2u's extension-less name."""
    Image.new("RGB", (48, 48), ((seed * 53) % 256, (seed * 97) % 256, (seed * 31) % 256)).save(path, "JPEG")


def write_instagram(root: Path, missing: tuple[str, ...] = ()) -> Path:
    train = {
        "kozzie": {
            "1000000000000000101": {"caption": "My new bike!! #ride with @Jo_Doe", "tags": ["ride", "bike"]},
            "1000000000000000102": {"caption": ["sunset", "at", "the", "beach"], "tags": "beach sun"},
            "1000000000000000103": {"caption": "Coffee time ☕ #morning", "tags": "morning"},
        },
        "mary.jane": {
            "1000000000000000201": {"caption": "Best. Pizza. Ever.", "tags": ["food"]},
            "1000000000000000202": {"caption": "Lunch with @anna.b and @tom", "tags": []},
        },
        "zed_99": {
            "1000000000000000301": {"caption": "Rainy DAY in the city", "tags": "rain city"},
            "1000000000000000302": {"caption": "Night lights", "tags": []},
        },
    }
    test1 = {  # unseen users
        "newbie": {
            "1000000000000000901": {"caption": "Hello Instagram 👋", "tags": "first"},
            "1000000000000000902": {"caption": "My cat @kitty_cat", "tags": ["cat"]},
        }
    }
    test2 = {  # unseen posts of training users
        "kozzie": {"1000000000000000104": {"caption": "Another RIDE today", "tags": "ride"}},
        "mary.jane": {"1000000000000000203": {"caption": "Pasta night!", "tags": ["food"]}},
    }
    (root / "json").mkdir(parents=True)
    (root / "images").mkdir()
    seed = 0
    for name, data in (("train", train), ("test1", test1), ("test2", test2)):
        (root / "json" / f"insta-caption-{name}.json").write_text(json.dumps(data, ensure_ascii=False))
        for user, posts in data.items():
            for post in posts:
                seed += 1
                if post not in missing:
                    _image(root / "images" / f"{user}_@_{post}", seed)
    return root


def _flickr(user: str, photo: str, title: str, description: str, tags: str = "") -> dict:
    return {
        "title": title,
        "description": description,
        "user tags": tags,
        "machine tags": "",
        "page url": f"http://www.flickr.com/photos/{user.replace('@', '%40')}/{photo}/",
        "date taken": "2010-03-07 18:05:33.0",
    }


def write_yfcc(root: Path) -> Path:
    u1, u2 = "35468147630@N01", "12037949754@N01"
    train = {
        u1: [
            _flickr(u1, "4420523880", "Sunset+at+Mallory+Square%2C+Key+West", "", "sunset,key+west"),
            _flickr(u1, "4420523881", "IMG_0520", "Our+dog+Rex+on+the+beach+in+2010"),
            _flickr(u1, "4420523882", "Old+harbour+boats+at+dawn", "Boats"),
        ],
        u2: [
            _flickr(u2, "5550000001", "%C3%89glise+Saint-Pierre+de+Montmartre", "a+church"),
            _flickr(u2, "5550000002", "Market+day+in+town", "<b>busy</b>+market"),
            # also in the test split below: must not be trained on
            _flickr(u2, "5550000009", "The+same+photo+twice+here", ""),
        ],
    }
    test = {  # the same user ids, per-user indices restart: ids must still not collide
        u1: [_flickr(u1, "4420529999", "Pelicans+on+the+pier+at+noon", "")],
        u2: [
            _flickr(u2, "5550000009", "The+same+photo+twice+here", ""),
            _flickr(u2, "5550000010", "DSC01234.JPG", "x"),  # no usable caption: reported, not scored
        ],
    }
    (root / "json").mkdir(parents=True)
    (root / "images").mkdir()
    seed = 0
    for name, data in (("train", train), ("test", test)):
        (root / "json" / f"yfcc-caption-{name}.json").write_text(json.dumps(data))
        for user, posts in data.items():
            for post in posts:
                seed += 1
                photo = post["page url"].rstrip("/").rsplit("/", 1)[-1]
                _image(root / "images" / f"{user}_{photo}", seed)
    return root


def test_instagram_text_is_normalised_as_attend2u_does():
    assert normalize_instagram("My new bike!! #ride with @Jo_Doe") == "my new bike #ride with @username"
    assert normalize_instagram(["sunset", "at", "the", "beach"]) == "sunset at the beach"
    assert normalize_instagram("Coffee time ☕#morning") == "coffee time ☕ #morning"
    assert normalize_instagram("Best. Pizza. Ever.") == "best pizza ever"


def test_yfcc_text_is_url_decoded_and_the_caption_rule_is_attend2us():
    assert normalize_yfcc("Sunset+at+Mallory+Square%2C+Key+West") == "sunset at mallory square key west"
    assert normalize_yfcc("%C3%89glise+Saint-Pierre") == "eglise saint-pierre"
    assert yfcc_caption("IMG_0520", "Our+dog+Rex+on+the+beach+in+2010") == "our dog rex on the beach in"
    assert yfcc_caption("Old+harbour+boats", "Boats") == "old harbour boats"  # 3 tokens: the title
    assert yfcc_caption("Boats", "Three+small+boats") == "three small boats"  # title too short
    assert yfcc_caption("DSC01234.JPG", "x") == ""  # a camera file name is no caption


def test_instagram_reader_finds_attend2u_image_names_and_string_tags(tmp_path):
    root = write_instagram(tmp_path / "insta")
    posts = read_instagram(root / "json" / "insta-caption-train.json", root / "images", with_tags=True)
    first = posts[0]
    assert first.id == "1000000000000000101" and first.user == "kozzie"
    assert first.image == str(root / "images" / "kozzie_@_1000000000000000101")
    assert Path(first.image).is_file()
    assert first.caption == "my new bike #ride with @username #ride #bike"
    assert posts[1].caption == "sunset at the beach #beach #sun"  # tags as a string: two tags, not 8


def test_yfcc_reader_takes_ids_from_page_url_and_never_shares_them_with_test(tmp_path):
    root = write_yfcc(tmp_path / "yfcc")
    posts = read_yfcc(root / "json" / "yfcc-caption-train.json", root / "images")
    assert [p.id for p in posts][:2] == ["4420523880", "4420523881"]
    assert posts[0].image == str(root / "images" / "35468147630@N01_4420523880")
    assert all(Path(p.image).is_file() for p in posts)
    report: dict = {}
    splits = load_attend2u_splits(
        {
            "train": root / "json" / "yfcc-caption-train.json",
            "test": root / "json" / "yfcc-caption-test.json",
        },
        kind="yfcc",
        image_dir=root / "images",
        report=report,
    )
    assert report["dropped_from_train"] == ["5550000009"]
    assert not {p.id for p in splits["train"]} & {p.id for p in splits["test"]}
    assert not {p.image for p in splits["train"]} & {p.image for p in splits["test"]}


def test_instagram_recipe_end_to_end_on_the_real_layout(tmp_path):
    import personalized_instagram  # noqa: F401  (the wrapper imports cleanly)
    from personalized_attend2u import main_for

    torch.set_num_threads(1)
    root = write_instagram(tmp_path / "insta", missing=("1000000000000000203",))
    out = tmp_path / "run"
    assert main_for("instagram", ["--data", str(root), "--out", str(out), "--limit", "5", *SMALL_MODEL]) == 0
    rows = json.loads((out / "predictions.json").read_text())
    scores = json.loads((out / "scores.json").read_text())
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == {"1000000000000000901", "1000000000000000902", "1000000000000000104"}
    assert by_id["1000000000000000902"]["references"] == ["my cat @username"]
    assert (
        by_id["1000000000000000104"]["split"] == "test2" and by_id["1000000000000000104"]["user"] == "kozzie"
    )
    assert scores["unscored"]["test2"] == {"1000000000000000203": "image missing or unreadable"}
    assert {"test1", "test2"} <= set(scores) and "CIDEr" in scores["test1"]
    # the missing image arrives: the rerun (same run folder, same feature cache) scores its post
    _image(root / "images" / "mary.jane_@_1000000000000000203", 99)
    assert main_for("instagram", ["--data", str(root), "--out", str(out), "--limit", "5", *SMALL_MODEL]) == 0
    rows = json.loads((out / "predictions.json").read_text())
    assert "1000000000000000203" in {r["id"] for r in rows}
    assert json.loads((out / "scores.json").read_text())["unscored"]["test2"] == {}


def test_yfcc_recipe_end_to_end_on_the_real_layout(tmp_path):
    from personalized_attend2u import main

    torch.set_num_threads(1)
    root = write_yfcc(tmp_path / "yfcc")
    out = tmp_path / "run"
    assert main(["--kind", "yfcc", "--data", str(root), "--out", str(out), *SMALL_MODEL]) == 0
    rows = json.loads((out / "predictions.json").read_text())
    scores = json.loads((out / "scores.json").read_text())
    assert {r["id"]: r["references"] for r in rows} == {
        "4420529999": ["pelicans on the pier at noon"],
        "5550000009": ["the same photo twice here"],
    }
    assert scores["unscored"]["test"] == {"5550000010": "no caption"}
    assert scores["dropped_from_train"] == ["5550000009"]
    assert scores["test"]["posts_scored"] == 2


def test_missing_images_everywhere_is_one_clear_error(tmp_path):
    from personalized_attend2u import main_for

    from mmgpt2.errors import Mmgpt2Error

    root = write_instagram(tmp_path / "insta")
    for image in (root / "images").iterdir():
        image.rename(image.with_name(image.name.split("_@_")[1] + ".gif"))  # another naming scheme
    with pytest.raises(Mmgpt2Error, match=r"\{user\}_@_\{post\} with no extension"):
        main_for("instagram", ["--data", str(root), "--out", str(tmp_path / "run"), *SMALL_MODEL])


def test_wrapper_script_runs_and_names_the_missing_split_file(tmp_path):
    """The script entry point (one of the two identical wrappers: a subprocess costs ~10 s here)."""
    import subprocess

    (tmp_path / "data" / "images").mkdir(parents=True)
    script = ROOT / "recipes" / "personalized_instagram.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "insta-caption-train.json: no such Attend2u Instagram JSON file" in proc.stderr
