"""Training examples from cached features: one example per (image, caption) pair."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from mmgpt2.data.features import FeatureStore
from mmgpt2.data.records import CaptionRecord
from mmgpt2.errors import Mmgpt2Error


class FeatureDataset(Dataset):
    """Training examples over the feature cache: each item is an image key plus its own fields.

    A subclass fills `items` with ``(image, {"captions": ..., ...})``; every example then carries
    ``index``, the image's ``pooled`` feature, its patch ``tokens`` when `use_tokens`, and the fields.
    """

    def __init__(self, store: FeatureStore, use_tokens: bool = False):
        if use_tokens and not store.has_tokens:
            raise Mmgpt2Error(
                f"{store.folder}: the feature cache has no patch tokens; extract with tokens=True"
            )
        self.store, self.use_tokens = store, use_tokens
        self.items: list[tuple[str, dict[str, Any]]] = []

    def __len__(self) -> int:
        return len(self.items)

    def fingerprint(self) -> str:
        """A hash of the examples in order (image file names, not paths, so the same data reached from
        another folder matches): a resumed training run checks its data did not change."""
        examples = [(os.path.basename(image), fields) for image, fields in self.items]
        return hashlib.sha256(json.dumps(examples, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, fields = self.items[i]
        item = {"index": i, "pooled": self.store.pooled(image), **fields}
        if self.use_tokens:
            item["tokens"] = self.store.tokens(image)
        return item


class FeatureCaptionDataset(FeatureDataset):
    """Pairs every reference caption with its image's cached features.

    Images missing from the cache (unreadable files) are dropped with one warning; empty captions
    are dropped too, since they would teach the model to stop at once.
    """

    def __init__(self, records: Sequence[CaptionRecord], store: FeatureStore, use_tokens: bool = False):
        super().__init__(store, use_tokens)
        missing: list[str] = []
        empty = 0
        for rec in records:
            if rec.image not in store:
                missing.append(rec.image)
                continue
            for cap in rec.captions:
                if cap.strip():
                    self.items.append((rec.image, {"captions": cap.strip()}))
                else:
                    empty += 1
        if missing or empty:
            named = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            warnings.warn(
                f"dropped {len(missing)} images not in the feature cache and {empty} empty captions"
                + (f" (not in {store.folder}: {named})" if missing else ""),
                stacklevel=2,
            )
        if not self.items:
            raise Mmgpt2Error(
                "no training pairs: every image was missing from the cache or every caption was empty"
            )


def collate_dicts(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors, make lists of everything else (captions, user ids, prompts)."""
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], int):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out
