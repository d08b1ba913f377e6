"""Procedurally generated worlds that the embedded tiny models are trained on.

A world is a small module exposing ``write(out_dir, n, seed) -> Path`` (PNGs or other media plus a
``captions.jsonl``); register it in `WORLDS` so ``mmgpt2 world NAME`` finds it.

Example:
    >>> from mmgpt2.worlds import WORLDS, shapes
    >>> WORLDS["shapes"].write("data/shapes", n=10, seed=0)
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: World name -> module path; each module exposes ``write(out_dir, n, seed) -> Path``.
WORLD_MODULES: dict[str, str] = {
    "shapes": "mmgpt2.worlds.shapes",
    "users": "mmgpt2.worlds.users",
    "chest": "mmgpt2.worlds.chest",
    "videos": "mmgpt2.worlds.videos",
}


class _Registry(dict):
    """Maps a world name to its module, importing it on first use (worlds may pull heavy deps)."""

    def __missing__(self, name: str) -> ModuleType:
        if name not in WORLD_MODULES:
            raise KeyError(f"unknown world {name!r}; known: {', '.join(sorted(WORLD_MODULES))}")
        module = importlib.import_module(WORLD_MODULES[name])
        self[name] = module
        return module

    def __contains__(self, name: object) -> bool:
        return name in WORLD_MODULES

    def names(self) -> list[str]:
        return sorted(WORLD_MODULES)


WORLDS = _Registry()


def __getattr__(name: str) -> ModuleType:
    if name in WORLD_MODULES or name == "tiny_models":
        return importlib.import_module(f"mmgpt2.worlds.{name}")
    raise AttributeError(f"module 'mmgpt2.worlds' has no attribute {name!r}")


__all__ = ["WORLDS", "WORLD_MODULES"]
