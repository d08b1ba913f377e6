"""Read sampled video frames safely: a worker process decodes, the caller streams chunks with a timeout.

Why a worker: decord can deadlock while holding the GIL on a container that over-reports its frame
count, and a hung decoder in our own process could not be interrupted. The worker sends frames in
small chunks through a bounded queue, so memory stays bounded however long the video is (a 3-hour
video is never held whole), and the caller gives up with a clear error if no chunk arrives in time.

Frames are sampled at a target rate (at most `max_frames` per video: long videos are sampled
sparser), decoded at reduced resolution (short side `size`), and each carries its time in seconds.
decord is the decoder; when it refuses a file (e.g. a truncated mp4 whose index it cannot build),
PyAV decodes it sequentially and keeps whatever frames precede the damage.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue as queue_mod
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmgpt2.errors import Mmgpt2Error

REENCODE_HINT = "re-encode it, e.g. `ffmpeg -i in.mp4 -c:v libx264 -pix_fmt yuv420p out.mp4`"
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


class VideoError(Mmgpt2Error):
    """A video that cannot be used; the message names the file, what is wrong and the fix."""


@dataclass(frozen=True)
class SamplingConfig:
    """How frames are taken from a video.

    `fps` frames per second, but never more than `max_frames` per video (longer videos are sampled
    sparser, so compute is bounded); frames are decoded with their short side at `size` pixels;
    `chunk` frames travel together; `timeout` seconds without a chunk from the worker is a hang.
    """

    fps: float = 2.0
    max_frames: int = 256
    size: int = 224
    chunk: int = 32
    timeout: float = 60.0

    def __post_init__(self):
        if self.fps <= 0 or self.max_frames < 1 or self.size < 8 or self.chunk < 1 or self.timeout <= 0:
            raise Mmgpt2Error(f"invalid sampling settings: {self}")


@dataclass
class VideoInfo:
    """What the container says about a video (the frame count may be a lie; see `FrameChunk`)."""

    path: str
    duration: float
    native_fps: float
    num_frames: int
    width: int
    height: int
    backend: str


@dataclass
class FrameChunk:
    """Consecutive sampled frames: ``frames`` (n, H, W, 3) uint8 and their ``times`` (n,) in seconds."""

    frames: np.ndarray
    times: np.ndarray


def sample_times(duration: float, config: SamplingConfig) -> np.ndarray:
    """Centres of equal time bins: `fps` per second, at most `max_frames`, at least one."""
    if duration <= 0:
        return np.zeros(0)
    n = max(1, min(config.max_frames, int(math.floor(duration * config.fps))))
    return (np.arange(n) + 0.5) * (duration / n)


def _scaled_size(width: int, height: int, short: int) -> tuple[int, int]:
    """(width, height) with the short side at `short` (never upscaled), both even for the decoders."""
    scale = min(1.0, short / max(1, min(width, height)))
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def check_video_file(path: str | os.PathLike) -> Path:
    """Refuse what is clearly not a video before any decoder sees it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such video file")
    if path.is_dir():
        raise VideoError(f"{path}: is a folder, not a video")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes), not a video")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(_IMAGE_MAGIC) and not head[8:12] == b"AVI ":
        raise VideoError(
            f"{path}: is a still image, not a video; caption it with `mmgpt2 caption`, "
            "or make a clip first (ffmpeg -loop 1 -t 5 -i img.png clip.mp4)"
        )
    return path


# --- the worker (runs in a child process) ---------------------------------------------------------
def _worker(path: str, config: SamplingConfig, out: mp.Queue) -> None:
    try:
        try:
            _decode_decord(path, config, out)
        except _DecordRefused as err:
            _decode_pyav(path, config, out, reason=str(err))
    except BaseException as err:  # report every failure; the parent turns it into a VideoError
        out.put(("error", f"{type(err).__name__}: {err}"))


class _DecordRefused(Exception):
    pass


def _decode_decord(path: str, config: SamplingConfig, out: mp.Queue) -> None:
    import decord

    try:
        import av

        with av.open(path) as probe:  # container metadata only: nothing is decoded
            if not probe.streams.video:
                raise _DecordRefused("no video stream")
            width, height = probe.streams.video[0].width, probe.streams.video[0].height
        w, h = _scaled_size(width, height, config.size)
        reader = decord.VideoReader(path, width=w, height=h, num_threads=1)
        n, fps = len(reader), float(reader.get_avg_fps())
    except Exception as err:  # decord raises its own DECORDError / RuntimeError types
        raise _DecordRefused(str(err).strip().splitlines()[-1][-200:]) from None
    if n <= 0 or not fps > 0:
        raise _DecordRefused(f"container reports {n} frames at {fps} fps")
    duration = n / fps
    out.put(("info", VideoInfo(path, duration, fps, n, width, height, "decord")))
    times = sample_times(duration, config)
    # Sampling faster than the video's own rate would take a frame twice; each frame counts once
    # (as with PyAV below), so a still or slow video is not mistaken for more moments than it has.
    index = np.unique(np.minimum((times * fps).astype(np.int64), n - 1))
    for start in range(0, len(index), config.chunk):
        idx = index[start : start + config.chunk]
        try:
            frames = reader.get_batch(idx.tolist()).asnumpy()
        except Exception as err:
            # The container promised frames it does not hold: keep what decoded, say where it stopped.
            out.put(("truncated", f"{type(err).__name__}: {str(err).strip()[-160:]}"))
            break
        out.put(("frames", FrameChunk(frames, idx / fps)))
    out.put(("done", None))


def _decode_pyav(path: str, config: SamplingConfig, out: mp.Queue, reason: str) -> None:
    import av

    try:
        container = av.open(path)
    except Exception as err:
        raise RuntimeError(f"neither decord ({reason}) nor PyAV ({err}) can open it") from None
    if not container.streams.video:
        raise RuntimeError("it holds no video stream (zero-length or audio-only file)")
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    else:
        duration = (container.duration or 0) / 1e6
    if duration <= 0:
        duration = (stream.frames or 0) / fps
    out.put(
        ("info", VideoInfo(path, duration, fps, int(stream.frames or 0), stream.width, stream.height, "pyav"))
    )
    if duration <= 0:
        out.put(("done", None))
        return
    w, h = _scaled_size(stream.width, stream.height, config.size)
    times = sample_times(duration, config)
    last = 0.0
    frames, stamps, k = [], [], 0
    try:
        for frame in container.decode(stream):
            t = float(frame.time if frame.time is not None else 0.0)
            last = t
            while k < len(times) and times[k] < t:
                k += 1  # sample times already passed: take the first frame at or after each
            if k >= len(times):
                break
            if t >= times[k] - 0.5 / fps:
                frames.append(frame.reformat(width=w, height=h, format="rgb24").to_ndarray())
                stamps.append(t)
                k += 1
                if len(frames) == config.chunk:
                    out.put(("frames", FrameChunk(np.stack(frames), np.asarray(stamps))))
                    frames, stamps = [], []
    except Exception as err:  # damage mid-stream: keep the frames before it
        if frames:
            out.put(("frames", FrameChunk(np.stack(frames), np.asarray(stamps))))
            frames = []
        out.put(("truncated", f"{type(err).__name__}: {str(err)[-160:]}"))
    else:
        if k < len(times) and times[k] > last + 1.0 / fps:
            # The data ran out quietly (a cut file whose index survived): say so, or the events
            # would be spread over time that has no frames.
            out.put(("truncated", f"the frames end at {last:.1f} s but the container says {duration:.1f} s"))
    if frames:
        out.put(("frames", FrameChunk(np.stack(frames), np.asarray(stamps))))
    container.close()
    out.put(("done", None))


# --- the caller's side -------------------------------------------------------------------------------
def _main_is_importable() -> bool:
    """Whether a spawned worker can re-import ``__main__`` (not when it came from stdin or ``-c``)."""
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None):
        return True  # run with -m: re-imported by name
    path = getattr(main, "__file__", None)
    return path is None or os.path.isfile(path)


class VideoStream:
    """Stream sampled frames of one video from a decoding worker.

    Example:
        >>> stream = VideoStream("clip.mp4", SamplingConfig(fps=1, size=224))  # doctest: +SKIP
        >>> for chunk in stream:  # doctest: +SKIP
        ...     print(chunk.frames.shape, chunk.times[:3])
        >>> stream.info.duration, stream.warnings  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, config: SamplingConfig | None = None):
        self.path = check_video_file(path)
        self.config = config or SamplingConfig()
        self.info: VideoInfo | None = None
        self.warnings: list[str] = []

    def _get(self, q: mp.Queue, proc) -> tuple[str, object]:
        # Poll in short steps so a worker that died (crash, killed) is noticed at once, not after `timeout`.
        waited = 0.0
        while True:
            try:
                return q.get(timeout=0.2)
            except queue_mod.Empty:
                waited += 0.2
            if not proc.is_alive():
                try:  # it may have put its last message just before exiting
                    return q.get(timeout=0.5)
                except queue_mod.Empty:
                    raise VideoError(self._death_message(proc.exitcode)) from None
            if waited >= self.config.timeout:
                raise VideoError(
                    f"{self.path}: the decoder hung (nothing for {self.config.timeout:.0f} s); "
                    f"the file is probably broken: {REENCODE_HINT}"
                )

    def _death_message(self, exitcode: int | None) -> str:
        if self.info is None and not _main_is_importable():
            # spawn re-imports the caller's main module in the worker; code from stdin or `-c`
            # cannot be re-imported, so the worker dies before it sees the video.
            return (
                f"{self.path}: the decoder process could not start (exit code {exitcode}): it re-imports "
                f"your main module ({getattr(sys.modules['__main__'], '__file__', None)!r}), which is not a "
                "file; run your code from a .py file, with its top level under `if __name__ == '__main__':`"
            )
        return (
            f"{self.path}: the decoder process died (exit code {exitcode}); the file is probably broken "
            f"(or, from your own script, its top level is not under `if __name__ == '__main__':`): {REENCODE_HINT}"
        )

    def __iter__(self) -> Iterator[FrameChunk]:
        # spawn, not fork: a forked child would inherit torch's thread pools and locks mid-use.
        ctx = mp.get_context("spawn")
        # A short queue is the back-pressure that keeps memory bounded on long videos.
        q = ctx.Queue(maxsize=2)
        proc = ctx.Process(target=_worker, args=(str(self.path), self.config, q), daemon=True)
        proc.start()
        n = 0
        try:
            while True:
                kind, payload = self._get(q, proc)
                if kind == "info":
                    self.info = payload
                elif kind == "frames":
                    n += len(payload.frames)
                    yield payload
                elif kind == "truncated":
                    self.warnings.append(
                        f"{self.path}: decoding stopped after {n} sampled frames ({payload}); "
                        f"the container promised more; {REENCODE_HINT}"
                    )
                elif kind == "error":
                    raise VideoError(f"{self.path}: not a readable video ({payload}); {REENCODE_HINT}")
                else:  # done
                    break
        finally:
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=5)
            q.close()
        if n == 0:
            what = (
                "zero-length video"
                if self.info is not None and self.info.duration <= 0
                else "no decodable frames"
            )
            raise VideoError(f"{self.path}: {what}; {REENCODE_HINT}")


def read_frames(
    path: str | os.PathLike, config: SamplingConfig | None = None
) -> tuple[np.ndarray, np.ndarray, VideoInfo]:
    """All sampled frames of a (short) video at once: ``(frames, times, info)``.

    Example:
        >>> frames, times, info = read_frames("clip.mp4", SamplingConfig(fps=1, size=64))  # doctest: +SKIP
    """
    stream = VideoStream(path, config)
    chunks = list(stream)
    return np.concatenate([c.frames for c in chunks]), np.concatenate([c.times for c in chunks]), stream.info
