"""Shared fixtures: tiny random models for fast wiring tests (the embedded models test quality)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from mmgpt2.encoders import VisionEncoder
from mmgpt2.lm import FrozenLM


class TinyRandomEncoder(VisionEncoder):
    """A deterministic random conv encoder: only shapes matter where it is used."""

    def __init__(self, embed_dim: int = 16, token_dim: int = 12):
        super().__init__()
        torch.manual_seed(0)
        self.spec = "test:tiny-random"
        self.embed_dim, self.token_dim = embed_dim, token_dim
        self.conv = torch.nn.Conv2d(3, token_dim, 8, stride=8)
        self.proj = torch.nn.Linear(token_dim, embed_dim)
        self.preprocess = lambda im: torch.from_numpy(
            __import__("numpy").asarray(im.convert("RGB").resize((32, 32)), dtype="float32") / 255
        ).permute(2, 0, 1)
        self.freeze()

    def _encode_image(self, pixels):
        tokens = self.conv(pixels).flatten(2).transpose(1, 2)
        return self.proj(tokens.mean(1)), tokens


def make_tiny_lm(seed: int = 0) -> FrozenLM:
    from transformers import GPT2Config, GPT2LMHeadModel

    from mmgpt2.lm.tokenizer import byte_level_tokenizer

    tok = byte_level_tokenizer()
    torch.manual_seed(seed)
    cfg = GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=2,
        n_positions=64,
        initializer_range=0.3,
        vocab_size=len(tok),
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
    )
    return FrozenLM(GPT2LMHeadModel(cfg), tok, spec="test:tiny-gpt2")


@pytest.fixture
def tiny_encoder() -> TinyRandomEncoder:
    return TinyRandomEncoder()


@pytest.fixture
def tiny_lm() -> FrozenLM:
    return make_tiny_lm()


@pytest.fixture
def rgb_image() -> Image.Image:
    return Image.new("RGB", (40, 30), (200, 30, 30))
