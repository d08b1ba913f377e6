"""The shipped `shapes-users-tiny`: it writes in each user's style, from an id or from a history."""

import random

import pytest
from safetensors import safe_open

from mmgpt2 import load_pipeline
from mmgpt2.apps.personalized.model import PersonalizedCaptioner
from mmgpt2.paths import assets_dir, models_dir
from mmgpt2.worlds import users
from mmgpt2.worlds.shapes import attribute_accuracy, make_scene, render

pytestmark = pytest.mark.assets  # the shipped shapes-users-tiny, not the code


@pytest.fixture(scope="module")
def model():
    return load_pipeline("shapes-users-tiny")


@pytest.fixture(scope="module")
def scenes():
    rng = random.Random("test-personalized-model")  # scenes the model never trained on
    return [make_scene(rng, n_objects=1) for _ in range(6)]


def test_ships_with_its_training_users_only(model):
    assert isinstance(model, PersonalizedCaptioner)
    assert model.users == sorted(users.TRAIN_USERS)
    assert not set(model.users) & set(users.HELD_OUT_USERS)


def test_known_users_get_their_own_style(model, scenes):
    images = [render(s) for s in scenes]
    for user in ("ada", "fay", "kai", "pia"):
        caps = model.caption(images, user=user)
        in_style = sum(users.in_style(c, user) for c in caps)
        assert in_style >= 5, (user, caps)


@pytest.mark.parametrize("user", sorted(users.HELD_OUT_USERS))
def test_held_out_user_from_a_history_file(model, scenes, user):
    images = [render(s) for s in scenes]
    words = model.user_from_history_file(assets_dir() / "examples" / "users" / f"{user}.txt")
    caps = model.caption(images, user=words)
    assert sum(users.in_style(c, user) for c in caps) >= 5, (words, caps)


def test_captions_name_the_scene_whatever_the_style(model, scenes):
    # The frozen users-gpt2 must take content from the prefix, not only style from the context.
    images = [render(s) for s in scenes]
    for user in ("ada", "fay", "kai", "pia"):
        caps = model.caption(images, user=user)
        assert sum(attribute_accuracy(c, s) for c, s in zip(caps, scenes, strict=True)) >= 5, (user, caps)


def test_unknown_user_error_lists_the_known_ones(model, scenes):
    with pytest.raises(ValueError, match="unknown user 'quinn'; known users: ada, bo, cy"):
        model.caption(render(scenes[0]), user="quinn")


def test_weights_are_fp16_and_small():
    folder = models_dir() / "shapes-users-tiny"
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"F16"}
    total = sum(
        p.stat().st_size for d in ("shapes-users-tiny", "users-gpt2") for p in (models_dir() / d).rglob("*")
    )
    assert total < 12e6
