"""`mmgpt2 demo`: a Gradio app for every application, running the embedded models by default.

Gradio is imported only when the app is built (`pip install "mmgpt2[demo]"`).

Example:
    >>> from mmgpt2.demo import launch
    >>> demo, url = launch(port=7860)          # doctest: +SKIP
"""

from __future__ import annotations

from mmgpt2.registry import lazy_module

_EXPORTS = {
    "build_demo": "mmgpt2.demo.app:build_demo",
    "launch": "mmgpt2.demo.app:launch",
    "DemoLimits": "mmgpt2.demo.limits:DemoLimits",
    "ModelRegistry": "mmgpt2.demo.models:ModelRegistry",
}

__getattr__ = lazy_module(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
