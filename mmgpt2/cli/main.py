"""The `mmgpt2` command line. Each command lives in its own module with `register(subparsers)`."""

from __future__ import annotations

import argparse
import os
import sys

from mmgpt2.errors import Mmgpt2Error
from mmgpt2.registry import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmgpt2",
        description="Give a frozen GPT-2 eyes: captioning, personalized captioning, dense video captioning "
        "and medical explanations, all running offline on the embedded tiny models by default.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (or set MMGPT2_DEBUG=1)"
    )
    for name in COMMANDS:
        COMMANDS[name].register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, Mmgpt2Error) as err:  # user errors: one clear line; bugs keep their traceback
        if args.debug or os.environ.get("MMGPT2_DEBUG"):
            raise
        print(f"mmgpt2 {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
