"""The frozen language model: prefix embeddings in, loss or text out."""

from mmgpt2.lm.frozen_lm import IGNORE_INDEX, FrozenLM, load_lm

__all__ = ["FrozenLM", "load_lm", "IGNORE_INDEX"]
