"""Captioning: prefix (ClipCap, the base every other application stands on), retrieval-augmented
(SmallCap-style), text-only (CapDec / DeCap) and training-free (MAGIC-style).

Example:
    >>> from mmgpt2.apps.captioning import PrefixCaptioner
    >>> PrefixCaptioner.from_pretrained("shapes-tiny").caption("assets/examples/shapes_0.png")
    ['a picture of a large yellow circle in the center']
"""

from __future__ import annotations

from mmgpt2.registry import lazy_module

_EXPORTS = {
    "PrefixCaptioner": "mmgpt2.apps.captioning.model:PrefixCaptioner",
    "PrefixCaptionerConfig": "mmgpt2.apps.captioning.model:PrefixCaptionerConfig",
    "RetrievalCaptioner": "mmgpt2.apps.captioning.retrieval:RetrievalCaptioner",
    "TextOnlyCaptioner": "mmgpt2.apps.captioning.text_only:TextOnlyCaptioner",
    "ZeroShotCaptioner": "mmgpt2.apps.captioning.zero_shot:ZeroShotCaptioner",
    "CaptionDatastore": "mmgpt2.apps.captioning.datastore:CaptionDatastore",
}

__getattr__ = lazy_module(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
