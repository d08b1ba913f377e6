"""Med-XPT training examples over the feature cache."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset

from mmgpt2.errors import Mmgpt2Error


class ExplanationDataset(Dataset):
    """Training examples: cached features of an image, its prompt and its explanation.

    `items`: dicts with ``image`` (a key of `store`), ``explanation`` and ``prompt`` (from
    `MedicalExplainer.prompts_for`, computed once, so retrieval is not repeated every epoch).
    """

    def __init__(self, items: Sequence[dict[str, Any]], store, use_tokens: bool = True):
        self.items = [it for it in items if it["image"] in store and it["explanation"].strip()]
        if not self.items:
            raise Mmgpt2Error(
                "no training examples: no image is in the feature cache or every explanation is empty"
            )
        if use_tokens and not store.has_tokens:
            raise Mmgpt2Error(
                f"{store.folder}: the feature cache has no patch tokens; extract with tokens=True"
            )
        self.store, self.use_tokens = store, use_tokens

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        it = self.items[i]
        out = {
            "index": i,
            "pooled": self.store.pooled(it["image"]),
            "prompts": it["prompt"],
            "explanations": it["explanation"],
        }
        if self.use_tokens:
            out["tokens"] = self.store.tokens(it["image"])
        return out
