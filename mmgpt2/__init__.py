"""mmgpt2: give a frozen GPT-2 eyes.

Heavy pieces import lazily, so ``import mmgpt2`` is cheap and optional dependencies (faiss, decord,
gradio) load only when their feature is used.
"""

from __future__ import annotations

from mmgpt2.registry import lazy_module

__version__ = "0.1.0"

_EXPORTS = {
    "FrozenLM": "mmgpt2.lm.frozen_lm:FrozenLM",
    "load_lm": "mmgpt2.lm.frozen_lm:load_lm",
    "VisionEncoder": "mmgpt2.encoders.base:VisionEncoder",
    "load_encoder": "mmgpt2.encoders.factory:load_encoder",
    "PrefixCaptioner": "mmgpt2.apps.captioning.model:PrefixCaptioner",
    "RetrievalCaptioner": "mmgpt2.apps.captioning.retrieval:RetrievalCaptioner",
    "TextOnlyCaptioner": "mmgpt2.apps.captioning.text_only:TextOnlyCaptioner",
    "ZeroShotCaptioner": "mmgpt2.apps.captioning.zero_shot:ZeroShotCaptioner",
    "CaptionDatastore": "mmgpt2.apps.captioning.datastore:CaptionDatastore",
    "PersonalizedCaptioner": "mmgpt2.apps.personalized.model:PersonalizedCaptioner",
    "DenseVideoCaptioner": "mmgpt2.apps.video.model:DenseVideoCaptioner",
    "MedicalExplainer": "mmgpt2.apps.medical.model:MedicalExplainer",
    "KnowledgeGraph": "mmgpt2.apps.medical.kg:KnowledgeGraph",
    "load_pipeline": "mmgpt2.pipeline:load_pipeline",
    "load_image": "mmgpt2.images:load_image",
    "Mmgpt2Error": "mmgpt2.errors:Mmgpt2Error",
    "worlds": "mmgpt2.worlds",
}

__getattr__ = lazy_module(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
