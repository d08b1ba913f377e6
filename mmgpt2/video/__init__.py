"""Zero-shot dense video captioning (ZeroTA): read videos, encode frames, optimise moments + prefixes.

Submodules, in data-flow order: `reader` (decode frames in a worker), `features` (frame features,
cached), `moments` (soft moment masks), `zerota` (the test-time optimiser), `captioner`
(`DenseVideoCaptioner`), `timeline` (a picture of the events). Heavy modules import lazily, so the
decoding worker process starts without torch models.

Example:
    >>> from mmgpt2.video import DenseVideoCaptioner
    >>> DenseVideoCaptioner.from_pretrained("shapes-video-zerota").caption_video("clip.mp4", events=3)
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DenseVideoCaptioner": "mmgpt2.video.captioner",
    "activitynet_predictions": "mmgpt2.video.captioner",
    "ZeroTA": "mmgpt2.video.zerota",
    "ZeroTAConfig": "mmgpt2.video.zerota",
    "Event": "mmgpt2.video.zerota",
    "SamplingConfig": "mmgpt2.video.reader",
    "VideoError": "mmgpt2.video.reader",
    "read_frames": "mmgpt2.video.reader",
    "video_features": "mmgpt2.video.features",
    "draw_timeline": "mmgpt2.video.timeline",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'mmgpt2.video' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


__all__ = sorted(_LAZY)
