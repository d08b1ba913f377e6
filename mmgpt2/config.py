"""Typed configs: dataclasses that read and write JSON, refuse unknown keys and check their values.

Every mapper and pipeline declares a `Config` subclass. Defaults live only in its fields; a field's
``metadata`` may bound it (``min``, ``max``, ``choices``). `from_dict` is the one way JSON becomes a
config, so a saved `config.json`, a named config and a keyword argument are checked alike.

Example:
    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Demo(Config):
    ...     k: int = field(default=10, metadata={"min": 1})
    >>> Demo.from_dict({"k": 3}).k
    3
    >>> Demo.from_dict({"kk": 3})
    Traceback (most recent call last):
    ...
    mmgpt2.errors.ConfigError: Demo: unknown key 'kk'; it takes: k
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar, Union

from mmgpt2.errors import ConfigError

C = TypeVar("C", bound="Config")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _check_type(value: Any, tp: Any) -> bool:
    """Whether a JSON value fits a field annotation (int is accepted for float; bool is not an int)."""
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(_check_type(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


@dataclasses.dataclass
class Config:
    """Base of every typed config: `from_dict` (strict), `to_dict`, and value checks on creation."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check each field's type and its ``metadata`` bounds; raise `ConfigError` naming the field."""
        name = type(self).__name__
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _check_type(value, hints.get(f.name, Any)):
                raise ConfigError(
                    f"{name}.{f.name}={value!r}: must be {_type_name(hints.get(f.name))}, not {type(value).__name__}"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{name}.{f.name}={value!r}: must be a finite number")
            low, high, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
            if value is None or isinstance(value, bool):
                continue
            if low is not None and value < low:
                raise ConfigError(f"{name}.{f.name}={value!r}: must be >= {low}")
            if high is not None and value > high:
                raise ConfigError(f"{name}.{f.name}={value!r}: must be <= {high}")
            if choices is not None and value not in choices:
                raise ConfigError(f"{name}.{f.name}={value!r}: must be one of {list(choices)}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], source: str | None = None) -> C:
        """Build from JSON-like data; unknown keys and bad values raise `ConfigError` naming `source`."""
        where = f"{source}: " if source else ""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}{cls.__name__} must be a JSON object, not {type(data).__name__}")
        known = cls.field_names()
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(
                f"{where}{cls.__name__}: unknown key {unknown[0]!r}; it takes: {', '.join(known)}"
            )
        try:
            return cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{where}{err}") from None
        except TypeError as err:  # a required field is missing
            raise ConfigError(f"{where}{cls.__name__}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self: C, **changes: Any) -> C:
        """A copy with `changes`, checked like `from_dict`."""
        return type(self).from_dict({**self.to_dict(), **changes})
