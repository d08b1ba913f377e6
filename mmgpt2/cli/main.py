"""The `mmgpt2` command line. Each command lives in its own module with `register(subparsers)`."""

from __future__ import annotations

import argparse
import errno
import os
import sys
import warnings

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


#: Errors the user can fix (a bad input, a missing or unreadable file, a full disk); anything else
#: is a bug and keeps its traceback.
USER_ERRORS = (Mmgpt2Error, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or bool(os.environ.get("MMGPT2_DEBUG"))
    original_format = warnings.formatwarning
    if not debug:  # a warning is one line for the user, not a source line of ours
        warnings.formatwarning = _one_line_warning(args.command)
    try:
        return int(args.func(args) or 0)
    except (*USER_ERRORS, OSError) as err:
        if debug or not (isinstance(err, USER_ERRORS) or err.errno in (errno.ENOSPC, errno.EROFS)):
            raise
        print(f"mmgpt2 {args.command}: error: {err}", file=sys.stderr)
        return 2
    finally:
        # Only the format changes (not showwarning), so code that records warnings still sees them.
        warnings.formatwarning = original_format


def _one_line_warning(command: str):
    def format_warning(message, category, filename, lineno, line=None) -> str:
        return f"mmgpt2 {command}: warning: {message}\n"

    return format_warning


if __name__ == "__main__":
    sys.exit(main())
