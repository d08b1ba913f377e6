"""Every named thing in mmgpt2, in one place: a static ``name -> "module:attribute"`` table each.

Nothing registers itself on import. A table is plain data, read by whoever needs a name, and an
entry is imported only when it is first used (so ``import mmgpt2`` stays cheap and optional
dependencies load only with their feature). Adding a mapper, pipeline, world or command is one
line here.

Example:
    >>> from mmgpt2.registry import MAPPERS
    >>> MAPPERS["projector"].__name__          # imported on first use, in any process
    'Projector'
    >>> sorted(MAPPERS)
    ['mlp', 'projector', 'query_guided', 'transformer']
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from mmgpt2.errors import Mmgpt2Error


class UnknownName(Mmgpt2Error, KeyError):
    """A name that is in none of a registry's entries."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def resolve(target: str) -> Any:
    """Import ``"package.module:attribute"`` (or a bare module path) and return the object."""
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


class Registry(Mapping[str, Any]):
    """A read-only ``name -> "module:attribute"`` table whose entries are imported on first use.

    ``registry[name]`` imports and returns the object; iterating, ``in`` and `target` import nothing.
    """

    def __init__(self, what: str, entries: Mapping[str, str]):
        self.what = what
        self._entries = dict(entries)
        self._resolved: dict[str, Any] = {}

    def target(self, name: str) -> str:
        """The ``"module:attribute"`` string registered as `name` (`UnknownName` if none)."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self._entries))
            raise UnknownName(f"unknown {self.what} {name!r}; known: {known}") from None

    def __getitem__(self, name: str) -> Any:
        if name not in self._resolved:
            self._resolved[name] = resolve(self.target(name))
        return self._resolved[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)


#: Saved model ``"type"`` -> pipeline class. The strings are what `config.json` stores: never rename.
PIPELINES = Registry(
    "model type",
    {
        "prefix_captioner": "mmgpt2.apps.captioning.model:PrefixCaptioner",
        "personalized_captioner": "mmgpt2.apps.personalized.model:PersonalizedCaptioner",
        "dense_video_captioner": "mmgpt2.apps.video.model:DenseVideoCaptioner",
        "medical_explainer": "mmgpt2.apps.medical.model:MedicalExplainer",
        "retrieval_captioner": "mmgpt2.apps.captioning.retrieval:RetrievalCaptioner",
        "text_only_captioner": "mmgpt2.apps.captioning.text_only:TextOnlyCaptioner",
        "zero_shot_captioner": "mmgpt2.apps.captioning.zero_shot:ZeroShotCaptioner",
    },
)

#: Mapper ``"type"`` -> mapper class (each declares its ``config_class``).
MAPPERS = Registry(
    "mapper type",
    {
        "mlp": "mmgpt2.mappers.mlp:MLPMapper",
        "transformer": "mmgpt2.mappers.transformer:TransformerMapper",
        "query_guided": "mmgpt2.apps.personalized.query_guided:QueryGuidedMapper",
        "projector": "mmgpt2.apps.medical.projector:Projector",
    },
)

#: Encoder spec kind (the part before ``:``) -> a loader ``(rest, spec) -> VisionEncoder``.
ENCODER_KINDS = Registry(
    "encoder kind",
    {
        "open_clip": "mmgpt2.encoders.factory:load_open_clip",
        "embedded": "mmgpt2.encoders.factory:load_embedded",
        "medclip": "mmgpt2.encoders.factory:load_medclip",
    },
)

#: Generated world -> its module (each exposes ``write(out_dir, n, seed) -> Path``).
WORLDS = Registry(
    "world",
    {
        "shapes": "mmgpt2.worlds.shapes",
        "users": "mmgpt2.worlds.users",
        "chest": "mmgpt2.worlds.chest",
        "videos": "mmgpt2.worlds.videos",
    },
)

#: CLI module -> the module whose ``register(subparsers)`` adds its sub-commands, in help order.
COMMANDS = Registry(
    "command module",
    {
        "caption": "mmgpt2.cli.caption",
        "world": "mmgpt2.cli.world",
        "video": "mmgpt2.cli.video",
        "evaluate": "mmgpt2.cli.evaluate",
        "medical": "mmgpt2.cli.medical",
        "configs": "mmgpt2.cli.configs",
        "demo": "mmgpt2.cli.demo",
        "datastore": "mmgpt2.cli.datastore",
    },
)


def lazy_module(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each exported name from its module on first access.

    ``exports`` maps a public name to ``"module:attribute"``, or to a bare ``"module"`` for the
    module itself.

    Example:
        >>> __getattr__ = lazy_module(__name__, {"FrozenLM": "mmgpt2.lm.frozen_lm:FrozenLM"})
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return resolve(exports[name])

    return __getattr__
