"""Training settings (ClipCap's defaults where it has them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    out_dir: str
    epochs: int = 10
    max_steps: int | None = None  # stop early after this many optimizer steps (overrides epochs)
    batch_size: int = 40  # per process
    lr: float = 2e-5
    warmup_steps: int = 5000
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    save_every: int = 1000  # steps between checkpoints; one is always written at the end
    mixed_precision: str = "no"  # "no", "bf16" or "fp16" (autocast through accelerate)
    seed: int = 42
    resume: bool = False
    num_workers: int = 0
    progress: bool = True
    log_seen_indices: bool = False  # write which examples each rank trained on (tests of sharding)
