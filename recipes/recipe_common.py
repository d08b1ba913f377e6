"""What the real-data recipes share: a named config with CLI overrides, ``--limit`` and the two outputs.

Every recipe reads its paper setup from ``mmgpt2/configs/<name>.json`` (``--config`` names another
one or a JSON file of the same shape); a flag given on the command line replaces the config's
value, a flag left out keeps it. Every recipe writes ``OUT/predictions.json`` and ``OUT/scores.json``.

Example (inside a recipe):
    >>> parser = argparse.ArgumentParser()
    >>> add_model_arguments(parser, "clipcap-coco-transformer"); add_train_arguments(parser)
    >>> args = parser.parse_args(["--out", "runs/x", "--lr", "1e-4"])
    >>> named = load_config(args)
    >>> train_config(named, args, "runs/x").lr
    0.0001
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TRAIN_FLAGS = (
    "epochs",
    "max_steps",
    "batch_size",
    "lr",
    "warmup_steps",
    "save_every",
    "mixed_precision",
    "seed",
)


def add_model_arguments(parser: argparse.ArgumentParser, config: str, caption_metrics: bool = True) -> None:
    """``--config``, ``--encoder``, ``--lm``, ``--out``, ``--limit``, ``--device`` [and ``--metrics``]."""
    parser.add_argument(
        "--config", default=config, help=f"named config or JSON file of the setup (default: {config})"
    )
    parser.add_argument("--encoder", help="frozen vision encoder spec (default: the config's)")
    parser.add_argument("--lm", help="frozen LM spec (default: the config's)")
    parser.add_argument("--out", required=True, type=Path, help="run folder")
    parser.add_argument(
        "--limit", type=int, help="only the first N test items (and at most N training items)"
    )
    parser.add_argument("--device", help="default: this process's accelerator, else cpu")
    if not caption_metrics:
        return
    parser.add_argument(
        "--metrics",
        type=lambda text: [m.strip() for m in text.split(",") if m.strip()],
        help="comma-separated caption metrics (default: BLEU-1..4, METEOR, ROUGE-L, CIDEr; METEOR is "
        "the slow one to start)",
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Training flags; each left out keeps the named config's value."""
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (smoke runs)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--warmup-steps", type=int)
    parser.add_argument("--save-every", type=int)
    parser.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"])
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    parser.add_argument(
        "--seed", type=int, help="seeds the untrained parts and the training (default: the config's)"
    )


def load_config(args: argparse.Namespace):
    """The named config, with ``args.encoder``/``args.lm`` filled from it when not given."""
    from mmgpt2.configs import load_named_config

    named = load_named_config(args.config)
    args.encoder = args.encoder or named.pipeline["encoder"]
    args.lm = args.lm or named.pipeline["lm"]
    return named


def build_settings(named, **overrides: Any) -> dict[str, Any]:
    """The config's ``build`` arguments with `overrides` (those not None) on top."""
    return {**named.pipeline.get("build", {}), **{k: v for k, v in overrides.items() if v is not None}}


def train_config(named, args: argparse.Namespace, out_dir: str | os.PathLike):
    """`TrainConfig` from the config's ``train`` section, command-line flags on top."""
    from mmgpt2.training import TrainConfig

    given = {k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k, None) is not None}
    return TrainConfig(out_dir=str(out_dir), resume=args.resume, **{**named.train, **given})


def seed_everything(named, args: argparse.Namespace) -> int:
    """Seed before the untrained parts are built, so one seed gives one model (resume included)."""
    from accelerate.utils import set_seed

    seed = train_config(named, args, ".").seed
    set_seed(seed)
    return seed


def limited(items: Sequence, limit: int | None) -> list:
    """The first `limit` items (all when `limit` is None)."""
    return list(items if limit is None else items[:limit])


def metrics(args: argparse.Namespace) -> tuple[str, ...]:
    """The caption metrics asked for (all by default); an unknown name is a one-line error."""
    from mmgpt2.errors import Mmgpt2Error
    from mmgpt2.eval.captions import METRICS

    chosen = tuple(args.metrics or METRICS)
    unknown = [m for m in chosen if m not in METRICS]
    if unknown:
        raise Mmgpt2Error(f"--metrics: unknown {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    return chosen


def write_results(out: Path, predictions: Any, scores: dict[str, Any]) -> None:
    """``OUT/predictions.json`` and ``OUT/scores.json`` (atomic), and the scores on stdout."""
    from mmgpt2.checkpoint import atomic_write_json

    atomic_write_json(out / "predictions.json", predictions)
    atomic_write_json(out / "scores.json", scores)
    print(json.dumps(scores, indent=2, ensure_ascii=False))
    print(f"wrote {out / 'predictions.json'} and {out / 'scores.json'}")


def run_main(main) -> int:
    """Run a recipe's ``main()``; a user-facing error prints as one line (exit 2), not a traceback."""
    import sys

    from mmgpt2.errors import Mmgpt2Error

    try:
        return main()
    except (Mmgpt2Error, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
