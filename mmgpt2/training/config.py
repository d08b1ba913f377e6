"""Training settings (ClipCap's defaults where it has them), typed and checked like every config."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmgpt2.config import Config


@dataclass
class TrainConfig(Config):
    """How `mmgpt2.training.train` runs; bad values raise `ConfigError` naming the field.

    Example:
        >>> TrainConfig(out_dir="runs/x", max_steps=100, batch_size=8).save_every
        1000
        >>> TrainConfig(out_dir="runs/x", save_every=0)
        Traceback (most recent call last):
        ...
        mmgpt2.errors.ConfigError: TrainConfig.save_every=0: must be >= 1
    """

    out_dir: str
    epochs: int = field(default=10, metadata={"min": 1})
    #: stop after this many optimizer steps (overrides epochs); None = epochs decide
    max_steps: int | None = field(default=None, metadata={"min": 1})
    batch_size: int = field(default=40, metadata={"min": 1})  # per process
    lr: float = field(default=2e-5, metadata={"min": 0.0})
    warmup_steps: int = field(default=5000, metadata={"min": 0})
    weight_decay: float = field(default=0.0, metadata={"min": 0.0})
    grad_clip: float | None = field(default=1.0, metadata={"min": 0.0})  # None or 0 = no clipping
    #: steps between checkpoints; one is always written at the end
    save_every: int = field(default=1000, metadata={"min": 1})
    #: autocast through accelerate
    mixed_precision: str = field(default="no", metadata={"choices": ("no", "bf16", "fp16")})
    seed: int = field(default=42, metadata={"min": 0, "max": 2**32 - 1})  # numpy's seed range
    resume: bool = False
    num_workers: int = field(default=0, metadata={"min": 0})
    progress: bool = True
