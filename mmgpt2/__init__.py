"""mmgpt2: give a frozen GPT-2 eyes.

Heavy pieces import lazily, so ``import mmgpt2`` is cheap and optional dependencies (faiss, decord,
gradio) load only when their feature is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "FrozenLM": "mmgpt2.lm",
    "load_lm": "mmgpt2.lm",
    "VisionEncoder": "mmgpt2.encoders",
    "load_encoder": "mmgpt2.encoders",
    "PrefixCaptioner": "mmgpt2.captioner",
    "load_pipeline": "mmgpt2.pipeline",
    "load_image": "mmgpt2.images",
    "PersonalizedCaptioner": "mmgpt2.personalized",
    "DenseVideoCaptioner": "mmgpt2.video",
    "MedicalExplainer": "mmgpt2.medical",
    "KnowledgeGraph": "mmgpt2.retrieval",
    "worlds": "mmgpt2.worlds",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'mmgpt2' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    return module if name == "worlds" else getattr(module, name)


__all__ = sorted(_LAZY)
