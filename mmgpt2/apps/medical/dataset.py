"""Med-XPT training examples over the feature cache."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmgpt2.data.datasets import FeatureDataset
from mmgpt2.errors import Mmgpt2Error


class ExplanationDataset(FeatureDataset):
    """Training examples: cached features of an image, its prompt and its explanation.

    `items`: dicts with ``image`` (a key of `store`), ``explanation`` and ``prompt`` (from
    `MedicalExplainer.prompts_for`, computed once, so retrieval is not repeated every epoch).
    """

    def __init__(self, items: Sequence[dict[str, Any]], store, use_tokens: bool = True):
        super().__init__(store, use_tokens)
        self.items = [
            (it["image"], {"prompts": it["prompt"], "explanations": it["explanation"]})
            for it in items
            if it["image"] in store and it["explanation"].strip()
        ]
        if not self.items:
            raise Mmgpt2Error(
                "no training examples: no image is in the feature cache or every explanation is empty"
            )
