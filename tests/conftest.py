"""Shared fixtures; the tiny random models themselves live in `helpers.py`."""

from __future__ import annotations

import pytest
from helpers import TinyEncoder
from helpers import tiny_lm as make_tiny_lm
from PIL import Image

from mmgpt2.lm import FrozenLM


@pytest.fixture
def tiny_encoder() -> TinyEncoder:
    return TinyEncoder()


@pytest.fixture
def tiny_lm() -> FrozenLM:
    return make_tiny_lm()


@pytest.fixture
def rgb_image() -> Image.Image:
    return Image.new("RGB", (40, 30), (200, 30, 30))
