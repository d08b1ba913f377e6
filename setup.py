"""Build hook: a wheel carries the embedded models and examples as ``mmgpt2/assets``.

The top-level ``assets/`` folder stays where it is (recipes write into it, the README links into
it); only the built package gets a copy, which `mmgpt2.paths.assets_dir` finds at call time. An
editable install needs no copy: it reads the source tree's ``assets/`` directly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = ["models", "examples"]  # not the README's screenshot


class BuildPyWithAssets(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name in SHIPPED:
            src = HERE / "assets" / name
            if not src.is_dir():
                raise SystemExit(f"setup.py: {src} is missing; a wheel without it has no embedded models")
            shutil.copytree(
                src,
                Path(self.build_lib) / "mmgpt2" / "assets" / name,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", ".*"),
            )


setup(cmdclass={"build_py": BuildPyWithAssets})
