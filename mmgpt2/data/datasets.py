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


class FeatureCaptionDataset(Dataset):
    """Pairs every reference caption with its image's cached features.

    Images missing from the cache (unreadable files) are dropped with one warning; empty captions
    are dropped too, since they would teach the model to stop at once.
    """

    def __init__(self, records: Sequence[CaptionRecord], store: FeatureStore, use_tokens: bool = False):
        self.store = store
        self.use_tokens = use_tokens
        self.items: list[tuple[str, str]] = []
        missing: list[str] = []
        empty = 0
        for rec in records:
            if rec.image not in store:
                missing.append(rec.image)
                continue
            for cap in rec.captions:
                if cap.strip():
                    self.items.append((rec.image, cap.strip()))
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

    def __len__(self) -> int:
        return len(self.items)

    def fingerprint(self) -> str:
        """A hash of the (image file name, caption) pairs in order: a resumed training run checks it is
        unchanged. File names, not paths, so the same data reached from another folder still matches."""
        pairs = [(os.path.basename(image), caption) for image, caption in self.items]
        return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:16]

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, caption = self.items[i]
        item = {"index": i, "pooled": self.store.pooled(image), "captions": caption}
        if self.use_tokens:
            item["tokens"] = self.store.tokens(image)
        return item


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
