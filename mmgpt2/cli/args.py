"""Argparse types that check a number flag's rule, so a bad value is refused naming the flag.

Argparse prefixes the message with the flag (``argument --batch-size: must be an integer >= 1,
not 0``) and exits 2 before anything is loaded.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> _ = p.add_argument("--batch-size", type=int_range(1, 4096), default=32)
    >>> p.parse_args(["--batch-size", "8"]).batch_size
    8
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def int_range(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers in ``[low, high]`` (either bound may be None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be an integer {_rule(low, high)}, not {value}")
        return value

    parse.__name__ = f"integer {_rule(low, high)}"  # what argparse says if it ever names the type
    return parse


def float_range(
    low: float | None = None, high: float | None = None, low_inclusive: bool = True
) -> Callable[[str], float]:
    """An argparse ``type`` accepting finite numbers in ``[low, high]`` (``(low, high]`` if not `low_inclusive`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
        too_low = low is not None and (value < low or (not low_inclusive and value == low))
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"must be a finite number {_rule(low, high, low_inclusive)}, not {text}"
            )
        return value

    parse.__name__ = f"number {_rule(low, high, low_inclusive)}"
    return parse


def _rule(low: float | None, high: float | None, low_inclusive: bool = True) -> str:
    if low is not None and high is not None:
        return f"from {low} to {high}" if low_inclusive else f"> {low} and <= {high}"
    if low is not None:
        return f">= {low}" if low_inclusive else f"> {low}"
    return f"<= {high}" if high is not None else "(any)"


def device(text: str) -> str:
    """An argparse ``type`` for ``--device``: a torch device that exists on this machine.

    Checked before any model loads, so ``--device cuda`` on a machine without a GPU is one line.
    """
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a device; use cpu, cuda, cuda:1, mps, ..."
        ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text!r}: no CUDA GPU is available here; use --device cpu")
        if dev.index is not None and dev.index >= count:
            raise argparse.ArgumentTypeError(
                f"{text!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: Apple MPS is not available here; use --device cpu")
    return text


#: The common cases.
positive_int = int_range(1)
non_negative_int = int_range(0)
positive_float = float_range(0.0, low_inclusive=False)
