"""`mmgpt2 demo`: a Gradio app for every application, running the embedded models by default.

Gradio is imported only when the app is built (`pip install "mmgpt2[demo]"`).

Example:
    >>> from mmgpt2.demo import launch
    >>> demo, url = launch(port=7860)          # blocks; open http://127.0.0.1:7860
"""

from __future__ import annotations

from typing import Any

__all__ = ["DemoLimits", "ModelRegistry", "build_demo", "launch"]


def __getattr__(name: str) -> Any:
    if name in ("build_demo", "launch"):
        from . import app

        return getattr(app, name)
    if name == "DemoLimits":
        from .limits import DemoLimits

        return DemoLimits
    if name == "ModelRegistry":
        from .models import ModelRegistry

        return ModelRegistry
    raise AttributeError(f"module 'mmgpt2.demo' has no attribute {name!r}")
