"""Tiny random models and CLI runners shared by the tests (the embedded models test quality).

Import from here (``from helpers import tiny_lm``), never from ``conftest``: pytest's
``pythonpath`` puts ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from mmgpt2.encoders import VisionEncoder
from mmgpt2.lm import FrozenLM


class TinyEncoder(VisionEncoder):
    """A deterministic random conv encoder: `patch` x `patch` patches of an `image_size` square image.

    With ``text=True`` it also has a bag-of-bytes text tower in the same space, for wiring tests
    of retrieval (not for quality). Only shapes and determinism matter where it is used.
    """

    def __init__(
        self,
        embed_dim: int = 16,
        token_dim: int = 12,
        image_size: int = 32,
        patch: int = 8,
        text: bool = False,
        spec: str = "test:tiny-random",
    ):
        super().__init__()
        torch.manual_seed(0)
        self.spec, self.embed_dim, self.token_dim = spec, embed_dim, token_dim
        self.image_size = image_size
        self.conv = nn.Conv2d(3, token_dim, patch, stride=patch)
        self.proj = nn.Linear(token_dim, embed_dim)
        self.text = nn.EmbeddingBag(256, embed_dim) if text else None
        self.freeze()

    def preprocess(self, image):
        pixels = np.asarray(image.convert("RGB").resize((self.image_size, self.image_size)), dtype="float32")
        return torch.from_numpy(pixels / 255).permute(2, 0, 1)

    def _encode_image(self, pixels):
        tokens = self.conv(pixels).flatten(2).transpose(1, 2)
        return self.proj(tokens.mean(1)), tokens

    def _encode_text(self, texts):
        if self.text is None:
            return super()._encode_text(texts)
        return torch.stack([self.text(torch.tensor([list(t.encode()[:64])]))[0] for t in texts])


def tiny_lm(
    seed: int = 0,
    tokenizer: str | None = "byte_level",
    spec: str = "test:tiny-gpt2",
    vocab_size: int | None = None,
    eos_token_id: int | None = None,
    **config: object,
) -> FrozenLM:
    """A random GPT-2 (2 layers of width 32, init range 0.3 for peaked outputs, unless `config` says otherwise).

    `tokenizer`: ``"byte_level"`` (the embedded shapes tokenizer), ``"fallback"`` (GPT-2's byte
    alphabet, no merges) or None (ids only; give `vocab_size` and `eos_token_id`).
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    from mmgpt2.lm.tokenizer import byte_level_tokenizer, fallback_tokenizer

    tok = {"byte_level": byte_level_tokenizer, "fallback": fallback_tokenizer, None: lambda: None}[
        tokenizer
    ]()
    if tok is not None:
        vocab_size, eos_token_id = len(tok), tok.eos_token_id
    torch.manual_seed(seed)
    settings = {
        "n_layer": 2,
        "n_embd": 32,
        "n_head": 2,
        "n_positions": 64,
        "initializer_range": 0.3,
        **config,
    }
    cfg = GPT2Config(vocab_size=vocab_size, eos_token_id=eos_token_id, bos_token_id=eos_token_id, **settings)
    return FrozenLM(GPT2LMHeadModel(cfg), tok, spec=spec)


CAPTIONS = ["a red circle", "a blue square", "a green star at the top", "two small yellow boxes"]


class ToyFeatures(Dataset):
    """Random but fixed features; `crash_at` simulates a process killed mid-run."""

    def __init__(self, n: int = 24, crash_at: int | None = None):
        self.n, self.crash_at, self.calls = n, crash_at, 0
        self.seen: list[int] = []  # which examples this process loaded, in order (sharding tests)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        self.calls += 1
        if self.crash_at is not None and self.calls > self.crash_at:
            raise RuntimeError("simulated crash")
        self.seen.append(i)
        g = torch.Generator().manual_seed(i)
        return {"index": i, "pooled": torch.randn(16, generator=g), "captions": CAPTIONS[i % len(CAPTIONS)]}


def make_captioner(mapper: str = "transformer"):
    """A `PrefixCaptioner` on `TinyEncoder` + `tiny_lm` with a small mapper, seeded."""
    from mmgpt2.apps.captioning.model import PrefixCaptioner
    from mmgpt2.mappers import build_mapper

    torch.manual_seed(1)
    extra = {"num_layers": 1, "num_heads": 2, "clip_length": 2} if mapper == "transformer" else {}
    return PrefixCaptioner(
        TinyEncoder(),
        tiny_lm(),
        build_mapper({"type": mapper, "input_dim": 16, "lm_dim": 32, "prefix_length": 3, **extra}),
    )


def run_cli(argv: list[str]) -> int:
    """``mmgpt2 ARGV`` in this process, through the real parser and error handling; the exit code."""
    from mmgpt2.cli.main import main

    return main(argv)


def error_line(stderr: str, command: str) -> str:
    """The one ``error:`` line a failed ``mmgpt2 COMMAND`` printed (progress bars aside), checked to be alone.

    Returns it from ``error: `` on, e.g. ``error: --save-every 0: must be >= 1``.
    """
    assert "Traceback" not in stderr
    lines = stderr.replace("\r", "\n").splitlines()
    errors = [line.split("error: ", 1)[1] for line in lines if line.startswith(f"mmgpt2 {command}: error: ")]
    assert len(errors) == 1, stderr[-2000:]
    return "error: " + errors[0]
