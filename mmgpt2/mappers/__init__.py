"""Small trainable networks that turn encoder features into GPT-2 prefix embeddings.

Every mapper takes ``(pooled (B, D), tokens (B, N, Dt) or None)`` and returns ``(B, K, d_lm)``.
Each is registered here by its config's ``type`` so checkpoints can rebuild it from JSON.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from .mlp import MLPMapper, MLPMapperConfig
from .transformer import TransformerMapper, TransformerMapperConfig

MAPPERS: dict[str, tuple[type[nn.Module], type]] = {
    "mlp": (MLPMapper, MLPMapperConfig),
    "transformer": (TransformerMapper, TransformerMapperConfig),
}


def register_mapper(name: str, module_cls: type[nn.Module], config_cls: type) -> None:
    """Make a mapper type buildable from its config dict (applications register theirs)."""
    MAPPERS[name] = (module_cls, config_cls)


def build_mapper(config: dict[str, Any] | Any) -> nn.Module:
    """Build a mapper from a config dataclass or its dict form (``{"type": "mlp", ...}``)."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    kind = config.get("type")
    if kind not in MAPPERS:
        raise ValueError(f"unknown mapper type {kind!r}; known: {sorted(MAPPERS)}")
    module_cls, config_cls = MAPPERS[kind]
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"mapper config of type {kind!r} has unknown fields {unknown}; it takes {sorted(known)}")
    return module_cls(config_cls(**config))


# Application mappers register themselves on import; importing them here makes every saved
# mapper type loadable through `build_mapper` alone.
from . import fusion, projector, query_guided  # noqa: E402, F401

__all__ = [
    "MAPPERS",
    "MLPMapper",
    "MLPMapperConfig",
    "TransformerMapper",
    "TransformerMapperConfig",
    "build_mapper",
    "register_mapper",
]
