"""A picture of a video's events: frame thumbnails along the top, one bar per event below."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

from mmgpt2.apps.video.reader import SamplingConfig, read_frames
from mmgpt2.apps.video.zerota import Event
from mmgpt2.checkpoint import atomic_write


def draw_timeline(
    video: str | os.PathLike,
    events: Sequence[Event],
    out_png: str | os.PathLike,
    thumbnails: int = 8,
    truth: Sequence[tuple[float, float, str]] | None = None,
) -> Path:
    """Draw `events` (and optionally ground-truth ``(start, end, sentence)``) on a time axis in seconds.

    Example:
        >>> events = dvc.caption_video("clip.mp4")  # doctest: +SKIP
        >>> draw_timeline("clip.mp4", events, "clip_timeline.png")  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    frames, times, info = read_frames(video, SamplingConfig(fps=1000.0, max_frames=thumbnails, size=96))
    duration = info.duration if info is not None and info.duration > 0 else float(times[-1])
    n_truth = len(truth or [])
    fig_h = 1.6 + 0.45 * (len(events) + n_truth)
    fig = plt.figure(figsize=(11, fig_h))
    top = fig.add_axes([0.04, 1 - 1.3 / fig_h, 0.92, 1.15 / fig_h])
    for frame, t in zip(frames, times):
        half = duration / len(frames) / 2
        top.imshow(frame, extent=(t - half, t + half, 0, 1), aspect="auto")
    top.set_xlim(0, duration)
    top.set_ylim(0, 1)
    top.axis("off")
    ax = fig.add_axes([0.04, 0.55 / fig_h, 0.92, 1 - 1.95 / fig_h])
    y = 0
    for e in sorted(events, key=lambda e: e.start):
        ax.barh(y, e.end - e.start, left=e.start, height=0.8, color="tab:blue", alpha=0.7)
        ax.text(e.start + 0.005 * duration, y, textwrap.shorten(e.sentence, 80), va="center", fontsize=8)
        y += 1
    for start, end, sentence in truth or []:
        ax.barh(y, end - start, left=start, height=0.8, color="tab:green", alpha=0.5)
        ax.text(start + 0.005 * duration, y, "GT: " + textwrap.shorten(sentence, 76), va="center", fontsize=8)
        y += 1
    ax.set_xlim(0, duration)
    ax.set_ylim(y - 0.5, -0.5)
    ax.set_yticks([])
    ax.set_xlabel("time (s)")
    ax.set_title(f"{Path(video).name}: {len(events)} events", fontsize=9, loc="left")
    out = Path(out_png)
    atomic_write(out, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
    return out
