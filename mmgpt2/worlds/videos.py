"""The videos world: mp4 clips made of 2-4 shapes scenes at known times, with their ground truth.

Each clip cuts from one shapes scene to the next at random times (every scene lasts at least a
fifth of the clip); inside a scene the objects drift and every frame gets fresh pixel noise, so no
two frames are identical. Beside the clips, ``ground_truth.json`` holds the events in ActivityNet
Captions format (``{video_id: {"duration", "timestamps", "sentences"}}``) plus, per event, the
scene's objects (``"scenes"``) so captions can be scored attribute by attribute.

Example:
    >>> from mmgpt2.worlds import videos
    >>> videos.write("data/videos", n=5, seed=0)  # doctest: +SKIP
    PosixPath('data/videos/ground_truth.json')
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from pathlib import Path

import numpy as np

from mmgpt2.errors import Mmgpt2Error
from mmgpt2.worlds import shapes


def scene_times(rng: random.Random, duration: float, n_scenes: int, min_fraction: float = 0.2) -> list[float]:
    """Cut times ``[0, t1, ..., duration]`` with every scene at least `min_fraction` of the clip."""
    slack = 1.0 - n_scenes * min_fraction
    if slack < 0:
        raise Mmgpt2Error(f"{n_scenes} scenes cannot each last {min_fraction:.0%} of a clip")
    weights = [rng.random() for _ in range(n_scenes)]
    lengths = [min_fraction + slack * w / sum(weights) for w in weights]
    cuts = np.cumsum([0.0] + lengths) * duration
    cuts[-1] = duration
    return [round(float(c), 3) for c in cuts]


def render_frame(scene: shapes.Scene, t: float, frame_index: int, size: int = 64, drift: float = 0.03):
    """`scene` at time `t`: each object drifts on a small circle; pixel noise differs every frame."""
    jitter = tuple(
        (dx + drift * math.cos(0.9 * t + i), dy + drift * math.sin(0.7 * t + 2 * i), *rest)
        for i, (dx, dy, *rest) in enumerate(scene.jitter)
    )
    moved = dataclasses.replace(
        scene, jitter=jitter, noise_seed=(scene.noise_seed + 7919 * frame_index) % 2**31
    )
    return shapes.render(moved, size)


def write_clip(
    path: str | os.PathLike, scenes: list[shapes.Scene], cuts: list[float], fps: int = 8, size: int = 64
) -> None:
    """Encode one H.264 mp4 of `scenes` switching at `cuts` (seconds), atomically."""
    import av

    from mmgpt2.checkpoint import atomic_write

    n_frames = max(1, int(round(cuts[-1] * fps)))

    def encode(tmp: Path) -> None:
        container = av.open(str(tmp), mode="w", format="mp4")
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        k = 0
        for i in range(n_frames):
            t = (i + 0.5) / fps
            while k + 1 < len(scenes) and t >= cuts[k + 1]:
                k += 1
            image = np.asarray(render_frame(scenes[k], t, i, size))
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        container.close()

    atomic_write(path, encode)


def write(
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    duration: tuple[float, float] = (20.0, 40.0),
    scenes: tuple[int, int] = (2, 4),
    fps: int = 8,
    size: int = 64,
) -> Path:
    """Write `n` clips and ``ground_truth.json`` into `out_dir`; returns the json path.

    `duration` and `scenes` are (min, max) ranges drawn per clip.

    Example:
        >>> write("data/videos", n=3, seed=1, duration=(60, 60), scenes=(3, 3))  # doctest: +SKIP
        PosixPath('data/videos/ground_truth.json')
    """
    from mmgpt2.checkpoint import atomic_write_json

    out = shapes.world_folder(out_dir, n, "video")
    rng = random.Random(seed)
    truth = {}
    for i in range(n):
        length = round(rng.uniform(*duration), 2)
        k = rng.randint(*scenes)
        clip_scenes = [shapes.make_scene(rng) for _ in range(k)]
        cuts = scene_times(rng, length, k)
        video_id = f"{i:05d}"
        write_clip(out / f"{video_id}.mp4", clip_scenes, cuts, fps, size)
        truth[video_id] = {
            "duration": length,
            "timestamps": [[cuts[j], cuts[j + 1]] for j in range(k)],
            "sentences": [shapes.captions(s)[0] for s in clip_scenes],
            "scenes": [s.to_record() for s in clip_scenes],
        }
    gt = out / "ground_truth.json"
    atomic_write_json(gt, truth)
    return gt
