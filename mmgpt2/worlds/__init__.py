"""Procedurally generated worlds that the embedded tiny models are trained on.

A world is a small module exposing ``write(out_dir, n, seed) -> Path`` (PNGs or other media plus a
``captions.jsonl``); it is named in `mmgpt2.registry.WORLDS` so ``mmgpt2 world NAME`` finds it.

Example:
    >>> from mmgpt2.worlds import WORLDS
    >>> WORLDS["shapes"].write("data/shapes", n=10, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

from mmgpt2.registry import WORLDS, lazy_module

__getattr__ = lazy_module(__name__, {name: WORLDS.target(name) for name in WORLDS})
__all__ = ["WORLDS"]
