"""pycocoevalcap's PTB tokenizer and METEOR are Java programs: check for Java with a clear message."""

from __future__ import annotations

import shutil

from mmgpt2.errors import Mmgpt2Error


class JavaMissingError(Mmgpt2Error, RuntimeError):
    """No `java` on PATH: a user's set-up problem, shown by the CLI as one line (not a traceback)."""


def require_java() -> str:
    """Path of `java`, or an error that says what needs it and how to install it."""
    java = shutil.which("java")
    if java is None:
        raise JavaMissingError(
            "caption metrics need Java (pycocoevalcap's PTB tokenizer and METEOR are Java programs), "
            "and no `java` is on PATH; install a JRE, e.g. `apt-get install openjdk-17-jre-headless`"
        )
    return java
