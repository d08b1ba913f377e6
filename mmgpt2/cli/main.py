"""The `mmgpt2` command line. Each command lives in its own module with `register(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import sys

#: Modules under mmgpt2.cli that add sub-commands; each defines `register(subparsers)`.
COMMAND_MODULES = ["captioning", "worlds_cmd", "video", "medical", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmgpt2",
        description="Give a frozen GPT-2 eyes: captioning, personalized captioning, dense video captioning "
        "and medical explanations, all running offline on the embedded tiny models by default.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"mmgpt2.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError) as err:  # user errors: one clear line, no traceback
        print(f"mmgpt2 {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
