"""Small trainable networks that turn encoder features into GPT-2 prefix embeddings.

Every mapper takes ``(pooled (B, D), tokens (B, N, Dt) or None)`` and returns ``(B, K, d_lm)``.
The mappers more than one application uses live here; an application's own mapper lives in its
package (`apps/personalized/query_guided.py`, `apps/medical/projector.py`). All of them are named
in `mmgpt2.registry.MAPPERS`, so `build_mapper` rebuilds any saved mapper in any process.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from mmgpt2.errors import ConfigError
from mmgpt2.mappers.mlp import MLPMapper, MLPMapperConfig
from mmgpt2.mappers.transformer import TransformerMapper, TransformerMapperConfig
from mmgpt2.registry import MAPPERS, UnknownName


def mapper_config_class(kind: str) -> type:
    """The config dataclass of mapper type `kind` (``"mlp"``, ``"projector"``, ...)."""
    return MAPPERS[kind].config_class


def build_mapper(config: dict[str, Any] | Any, source: str | None = None) -> nn.Module:
    """Build a mapper from a config dataclass or its dict form (``{"type": "mlp", ...}``).

    Example:
        >>> build_mapper({"type": "projector", "input_dim": 8, "token_dim": 8, "lm_dim": 16}).config.prefix_length
        10
    """
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    if not isinstance(config, dict):
        raise ConfigError(
            f"{source or 'mapper'}: a mapper config must be a JSON object, not {type(config).__name__}"
        )
    try:
        module_cls = MAPPERS[config.get("type")]
    except UnknownName as err:
        raise ConfigError(f"{source}: {err}" if source else str(err)) from None
    known = module_cls.config_class.field_names()
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ConfigError(
            f"{source + ': ' if source else ''}mapper config of type {config['type']!r} has unknown fields "
            f"{unknown}; it takes {sorted(known)}"
        )
    return module_cls(module_cls.config_class.from_dict(config, source))


__all__ = [
    "MAPPERS",
    "MLPMapper",
    "MLPMapperConfig",
    "TransformerMapper",
    "TransformerMapperConfig",
    "build_mapper",
    "mapper_config_class",
]
