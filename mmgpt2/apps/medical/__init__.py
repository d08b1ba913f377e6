"""Medical explanations with a knowledge-graph retriever (Med-XPT): everything that is only its own.

Modules, in data-flow order: `extract` (triplets from report text), `kg` (the FAISS triplet
datastore), `mimic_nle` (the MIMIC-NLE / MIMIC-CXR readers), `prompt` (triplets + question),
`projector` (patch tokens -> prefix), `dataset` (training examples) and `model` (`MedicalExplainer`).

Example:
    >>> from mmgpt2.apps.medical import build_prompt
    >>> build_prompt([], None)
    'Question: what does this chest x-ray show? Answer:'
"""

from __future__ import annotations

from mmgpt2.registry import lazy_module

_EXPORTS = {
    "MedicalExplainer": "mmgpt2.apps.medical.model:MedicalExplainer",
    "MedicalExplainerConfig": "mmgpt2.apps.medical.model:MedicalExplainerConfig",
    "ExplanationDataset": "mmgpt2.apps.medical.dataset:ExplanationDataset",
    "build_prompt": "mmgpt2.apps.medical.prompt:build_prompt",
    "KG_INTRO": "mmgpt2.apps.medical.prompt:KG_INTRO",
    "Projector": "mmgpt2.apps.medical.projector:Projector",
    "KGError": "mmgpt2.apps.medical.kg:KGError",
    "KnowledgeGraph": "mmgpt2.apps.medical.kg:KnowledgeGraph",
    "Triplet": "mmgpt2.apps.medical.kg:Triplet",
    "merge_triplets": "mmgpt2.apps.medical.kg:merge_triplets",
    "read_triplets_jsonl": "mmgpt2.apps.medical.kg:read_triplets_jsonl",
    "triplet_text": "mmgpt2.apps.medical.kg:triplet_text",
    "PatternExtractor": "mmgpt2.apps.medical.extract:PatternExtractor",
    "RadGraphExtractor": "mmgpt2.apps.medical.extract:RadGraphExtractor",
    "default_extractor": "mmgpt2.apps.medical.extract:default_extractor",
    "split_sentences": "mmgpt2.apps.medical.extract:split_sentences",
}

__getattr__ = lazy_module(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
