"""`mmgpt2 world NAME --n N --seed S --out DIR`: write a generated world's images and captions."""

from __future__ import annotations

import argparse

from mmgpt2.cli.args import int_range
from mmgpt2.errors import Mmgpt2Error


def register(subparsers: argparse._SubParsersAction) -> None:
    from mmgpt2.registry import WORLDS

    parser = subparsers.add_parser(
        "world",
        help="generate an embedded world's data (images + captions.jsonl)",
        description="Write N generated scenes of a world as images plus a captions.jsonl "
        '(one line per image: {"image", "captions", "objects"}). Same seed, same files.',
    )
    parser.add_argument("name", choices=WORLDS.names(), help="which world")
    parser.add_argument(
        "--n", type=int_range(1, 10_000_000), default=100, help="number of scenes (default 100)"
    )
    parser.add_argument("--seed", type=int_range(0, 2**32 - 1), default=0, help="random seed (default 0)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmgpt2.registry import WORLDS

    if args.n < 1:
        raise Mmgpt2Error(f"--n {args.n}: need at least one scene")
    path = WORLDS[args.name].write(args.out, n=args.n, seed=args.seed)
    print(f"wrote {args.n} {args.name} scenes to {path.parent} ({path.name})")
    return 0
