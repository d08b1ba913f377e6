"""Frame features of a video from a frozen encoder, cached by the file's content hash.

The cache key is the SHA-256 of the file's bytes (so a renamed or copied video is a hit, an edited
one a miss) plus the encoder spec and the sampling settings. Each entry is one safetensors file
holding ``features`` (T, D) float32 and ``times`` (T,) seconds, with the duration in its metadata.
Frames stream from the decoding worker chunk by chunk and are encoded as they come, so a long video
is never held in memory whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from mmgpt2.apps.video.reader import SamplingConfig, VideoStream
from mmgpt2.checkpoint import atomic_write
from mmgpt2.encoders import VisionEncoder

#: Default cache folder; `MMGPT2_CACHE` overrides the root.
DEFAULT_CACHE = Path(os.environ.get("MMGPT2_CACHE", Path.home() / ".cache" / "mmgpt2")) / "video_features"


class VideoDecodeWarning(UserWarning):
    """A video decoded only in part (e.g. a truncated file); its events cover only what decoded."""


@dataclass
class VideoFeatures:
    """Per-frame encoder features of one video.

    ``features`` (T, D) float32 (not normalized), ``times`` (T,) seconds of each sampled frame,
    ``duration`` seconds, ``warnings`` from decoding (e.g. a truncated container).
    """

    path: str
    features: torch.Tensor
    times: torch.Tensor
    duration: float
    warnings: list[str]


def file_sha256(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks (bounded memory for large videos)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


#: Bump when what an entry means changes, so older entries are rebuilt, not trusted (2: the
#: duration of a truncated video is the decoded span, not the container's claim; 3: a frame
#: sampled twice from a slow video is kept once).
CACHE_FORMAT = 3


def cache_key(path: str | os.PathLike, encoder_spec: str, sampling: SamplingConfig) -> str:
    settings = {"encoder": encoder_spec, **asdict(sampling), "timeout": None, "format": CACHE_FORMAT}
    settings = json.dumps(settings, sort_keys=True)
    return f"{file_sha256(path)[:32]}-{hashlib.sha256(settings.encode()).hexdigest()[:12]}"


def _load(entry: Path, path: str) -> VideoFeatures:
    with safe_open(str(entry), framework="pt") as f:
        meta = f.metadata() or {}
        return VideoFeatures(
            path,
            f.get_tensor("features"),
            f.get_tensor("times"),
            float(meta.get("duration", 0.0)),
            json.loads(meta.get("warnings", "[]")),
        )


@torch.no_grad()
def video_features(
    path: str | os.PathLike,
    encoder: VisionEncoder,
    sampling: SamplingConfig | None = None,
    cache_dir: str | os.PathLike | None = DEFAULT_CACHE,
    progress: bool = False,
) -> VideoFeatures:
    """Encode the sampled frames of `path` with `encoder` (cached; `cache_dir=None` disables it).

    Example:
        >>> enc = load_encoder("embedded:shapes-clip")  # doctest: +SKIP
        >>> vf = video_features("clip.mp4", enc, SamplingConfig(fps=2, size=64))  # doctest: +SKIP
        >>> vf.features.shape, vf.times[:3]  # doctest: +SKIP
    """
    sampling = sampling or SamplingConfig()
    stream = VideoStream(path, sampling)  # validates the file before hashing it
    entry = None
    if cache_dir is not None:
        entry = Path(cache_dir) / f"{cache_key(stream.path, encoder.spec, sampling)}.safetensors"
        if entry.is_file():
            try:
                return _announced(_load(entry, str(path)))
            except Exception:  # a damaged cache entry is rebuilt, never trusted
                entry.unlink(missing_ok=True)
    feats, times = [], []
    bar = tqdm(desc=f"encoding {Path(path).name}", unit="frame", disable=not progress)
    for chunk in stream:
        pixels = encoder.preprocess_batch([Image.fromarray(f) for f in chunk.frames])
        feats.append(encoder.encode_image(pixels).float().cpu())
        times.append(torch.as_tensor(chunk.times, dtype=torch.float32))
        bar.update(len(chunk.times))
    bar.close()
    times_all = torch.cat(times)
    duration = decoded_duration(stream, times_all)
    result = VideoFeatures(str(path), torch.cat(feats), times_all, duration, list(stream.warnings))
    if entry is not None:
        tensors = {"features": result.features.contiguous(), "times": result.times.contiguous()}
        meta = {
            "duration": repr(result.duration),
            "warnings": json.dumps(result.warnings),
            "encoder": encoder.spec,
        }
        atomic_write(entry, lambda p: save_file(tensors, str(p), metadata=meta))
    return _announced(result)


def decoded_duration(stream: VideoStream, times: torch.Tensor) -> float:
    """Seconds of video the features cover.

    The container's duration, unless decoding stopped early (a truncated file): then only up to
    the last decoded frame plus half a sampling step, so no event is placed past the damage.
    """
    last = float(times[-1])
    half_step = float(times[-1] - times[-2]) / 2 if len(times) > 1 else 0.0
    covered = max(last + half_step, 1e-3)
    info = stream.info
    if info is None or not info.duration > 0:
        return covered
    return min(float(info.duration), covered) if stream.warnings else float(info.duration)


def _announced(features: VideoFeatures) -> VideoFeatures:
    """Raise each decoding warning as a `VideoDecodeWarning`, from a fresh decode or the cache alike."""
    for message in features.warnings:
        warnings.warn(message, VideoDecodeWarning, stacklevel=3)
    return features
