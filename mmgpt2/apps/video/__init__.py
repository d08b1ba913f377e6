"""Zero-shot dense video captioning (ZeroTA): read videos, encode frames, optimise moments + prefixes.

Submodules, in data-flow order: `reader` (decode frames in a worker), `features` (frame features,
cached), `moments` (soft moment masks), `zerota` (the test-time optimiser), `model`
(`DenseVideoCaptioner`), `timeline` (a picture of the events). Heavy modules import lazily, so the
decoding worker process starts without torch models.

Example:
    >>> from mmgpt2.apps.video import DenseVideoCaptioner
    >>> DenseVideoCaptioner.from_pretrained("shapes-video-zerota").caption_video("clip.mp4", events=3)  # doctest: +SKIP
"""

from __future__ import annotations

from mmgpt2.registry import lazy_module

_EXPORTS = {
    "DenseVideoCaptioner": "mmgpt2.apps.video.model:DenseVideoCaptioner",
    "DenseVideoCaptionerConfig": "mmgpt2.apps.video.model:DenseVideoCaptionerConfig",
    "activitynet_predictions": "mmgpt2.apps.video.model:activitynet_predictions",
    "ZeroTA": "mmgpt2.apps.video.zerota:ZeroTA",
    "ZeroTAConfig": "mmgpt2.apps.video.zerota:ZeroTAConfig",
    "Event": "mmgpt2.apps.video.zerota:Event",
    "SamplingConfig": "mmgpt2.apps.video.reader:SamplingConfig",
    "VideoError": "mmgpt2.apps.video.reader:VideoError",
    "read_frames": "mmgpt2.apps.video.reader:read_frames",
    "video_features": "mmgpt2.apps.video.features:video_features",
    "draw_timeline": "mmgpt2.apps.video.timeline:draw_timeline",
}

__getattr__ = lazy_module(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
