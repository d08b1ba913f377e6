"""Named configs of the papers' setups, as data (open_clip's ``model_configs/``).

Each ``<name>.json`` here holds an untrained pipeline (its type, the frozen parts' specs and the
keyword arguments of the pipeline's ``build``), the training settings (`TrainConfig` fields) and
the data settings the recipe needs. Recipes read them; a new setup is a new file, not new code.

Example:
    >>> from mmgpt2.configs import list_configs, load_named_config
    >>> list_configs()
    ['clipcap-coco-transformer', 'medxpt-mimic-nle', 'uapt-attend2u', 'zerota-activitynet']
    >>> load_named_config("clipcap-coco-transformer").pipeline["build"]["prefix_length"]
    10
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmgpt2.config import Config
from mmgpt2.errors import ConfigError

CONFIGS_DIR = Path(__file__).resolve().parent


@dataclass
class NamedConfig(Config):
    """One paper setup: what to build, how to train it, and what data settings the recipe uses."""

    description: str = ""
    paper: str = ""
    pipeline: dict[str, Any] = field(default_factory=dict)  # {"type", "encoder", "lm", "build": {...}}
    data: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)  # `mmgpt2.training.TrainConfig` fields

    def validate(self) -> None:
        super().validate()
        missing = [k for k in ("type", "encoder", "lm") if k not in self.pipeline]
        if missing:
            raise ConfigError(f"NamedConfig.pipeline needs {', '.join(repr(k) for k in missing)}")


def list_configs() -> list[str]:
    """Names of the shipped named configs."""
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.json"))


def load_named_config(name_or_path: str | os.PathLike) -> NamedConfig:
    """A shipped config by name, or a JSON file of the same shape by path."""
    path = Path(name_or_path)
    if not path.suffix == ".json":
        path = CONFIGS_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise ConfigError(f"no named config {str(name_or_path)!r}; known: {', '.join(list_configs())}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    return NamedConfig.from_dict(data, source=str(path))


def build_from_config(
    name_or_path: str | os.PathLike | NamedConfig, encoder: Any = None, lm: Any = None, **overrides: Any
) -> Any:
    """An untrained pipeline of a named config; `encoder`/`lm` (specs or loaded) replace the config's.

    `overrides` replace keys of the config's ``build`` arguments.

    Example:
        >>> cap = build_from_config("clipcap-coco-transformer", "embedded:shapes-clip", "embedded:shapes-gpt2")
        >>> cap.mapper.config.num_layers
        8
    """
    from mmgpt2.registry import PIPELINES

    named = name_or_path if isinstance(name_or_path, NamedConfig) else load_named_config(name_or_path)
    spec = named.pipeline
    cls = PIPELINES[spec["type"]]
    return cls.build(encoder or spec["encoder"], lm or spec["lm"], **{**spec.get("build", {}), **overrides})


__all__ = ["CONFIGS_DIR", "NamedConfig", "build_from_config", "list_configs", "load_named_config"]
