"""Attend2u readers and splits, and the synthetic users world."""

import json
import random

import pytest

from mmgpt2.apps.personalized.attend2u import (
    load_attend2u_splits,
    posts_by_user,
    read_instagram,
    read_yfcc,
    split_posts,
)
from mmgpt2.worlds import WORLDS
from mmgpt2.worlds.shapes import attribute_accuracy, make_scene
from mmgpt2.worlds.users import HELD_OUT_USERS, TRAIN_USERS, USERS, caption_as, in_style, posts, style_of

INSTAGRAM = {
    "alice": {
        "p1": {"caption": ["sunset", "at", "the", "beach"], "tags": ["summer"]},
        "p2": {"caption": "café <b>time</b> ☕", "tags": []},
    },
    "bob": {"p3": {"caption": "new bike", "tags": ["ride", "#fast"]}},
}
YFCC = {
    "carol": [
        {
            "title": "Old+stone+bridge",
            "description": "a+stone+bridge",
            "user tags": "bridge,stone",
            "page url": "http://www.flickr.com/photos/carol/77/",
        },
        {"title": "", "description": "river+at+dawn", "page url": "http://www.flickr.com/photos/carol/78/"},
    ]
}


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_instagram_reader_joins_tokens_strips_html_and_adds_tags(tmp_path):
    posts_ = read_instagram(write(tmp_path, "i.json", INSTAGRAM), with_tags=True)
    assert [(p.user, p.id) for p in posts_] == [("alice", "p1"), ("alice", "p2"), ("bob", "p3")]
    assert posts_[0].caption == "sunset at the beach #summer" and posts_[0].image == "alice_@_p1"
    assert posts_[1].caption == "café time ☕"
    assert posts_[2].caption == "new bike #ride #fast"


def test_yfcc_reader_takes_title_then_description(tmp_path):
    posts_ = read_yfcc(write(tmp_path, "y.json", YFCC), image_pattern="{user}/{post}.jpg")
    assert [p.caption for p in posts_] == ["old stone bridge", "river at dawn"]
    assert posts_[0].image == "carol/77.jpg" and posts_[1].id == "78"


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="y.json: user 'carol' maps to dict"):
        read_yfcc(write(tmp_path, "y.json", {"carol": {"x": 1}}))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_instagram(tmp_path / "missing.json")


def test_split_test1_is_unseen_users_and_test2_unseen_posts():
    from mmgpt2.apps.personalized import UserPost

    all_posts = [
        UserPost(f"u{u}", f"{u}_{i}.jpg", f"caption {i}", f"{u}_{i}") for u in range(20) for i in range(10)
    ]
    s = split_posts(all_posts, test1_users=0.2, test2_posts=0.2, seed=3)
    train_users = {p.user for p in s["train"]}
    assert len({p.user for p in s["test1"]}) == 4 and not ({p.user for p in s["test1"]} & train_users)
    assert {p.user for p in s["test2"]} <= train_users and len(s["test2"]) == 16 * 2
    assert not ({p.id for p in s["test2"]} & {p.id for p in s["train"]})
    assert s == split_posts(all_posts, test1_users=0.2, test2_posts=0.2, seed=3)


def test_shipped_split_files_are_checked_for_leaks(tmp_path):
    train = write(tmp_path, "train.json", INSTAGRAM)
    test1 = write(tmp_path, "test1.json", {"alice": {"p9": {"caption": "x"}}})
    with pytest.raises(ValueError, match="test1 must hold unseen users"):
        load_attend2u_splits({"train": train, "test1": test1})
    ok = load_attend2u_splits(
        {"train": train, "test2": write(tmp_path, "t2.json", {"bob": {"p8": {"caption": "y"}}})}
    )
    assert posts_by_user(ok["test2"]) == {"bob": ["y"]}


def test_users_world_has_8_plus_distinct_styles_and_held_out_users():
    assert len(TRAIN_USERS) >= 8 and len(HELD_OUT_USERS) >= 2
    assert len(set(USERS.values())) == len(USERS)
    for axis in range(3):  # every held-out style value was seen in training, in other combinations
        assert {s[axis] for s in HELD_OUT_USERS.values()} <= {s[axis] for s in TRAIN_USERS.values()}
    assert "users" in WORLDS


def test_style_check_recovers_each_users_style_and_captions_keep_attributes():
    rng = random.Random(1)
    for _ in range(20):
        scene = make_scene(rng, n_objects=1)
        for user in USERS:
            cap = caption_as(user, scene)
            assert in_style(cap, user) and attribute_accuracy(cap, scene), cap
            others = [u for u in USERS if u != user and in_style(cap, u)]
            assert not others


def test_style_check_rejects_near_misses():
    cap = caption_as("jo", make_scene(random.Random(0), n_objects=1))  # wow ... so pretty
    assert style_of(cap) is not None
    assert style_of(cap + " !") is None and style_of(cap.replace("so pretty", "pretty")) is None


def test_posts_are_deterministic_per_user_and_seed():
    assert posts("ada", 3, seed=0) == posts("ada", 3, seed=0)
    assert [c for _, c in posts("ada", 3, 0)] != [c for _, c in posts("bo", 3, 0)]
