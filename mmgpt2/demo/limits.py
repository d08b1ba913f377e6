"""What a public demo must refuse, and how: size and duration caps, a time cap, clear messages.

Every check raises `DemoInputError` with a message that names the file and what is wrong; the
tabs turn it into a `gr.Error`, which Gradio shows in the page (the app keeps serving).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mmgpt2.errors import Mmgpt2Error

T = TypeVar("T")


class DemoInputError(Mmgpt2Error):
    """A request the demo refuses; the message is shown to the user as it is."""


@dataclass(frozen=True)
class DemoLimits:
    """Caps for one demo server.

    `max_upload_mb` is also given to Gradio (``launch(max_file_size=...)``), which refuses bigger
    uploads before they reach a handler; the handlers check again for files that come another way.

    Example:
        >>> DemoLimits(max_upload_mb=5, max_video_seconds=60, request_seconds=30).max_upload_bytes
        5242880
    """

    max_upload_mb: float = 20.0
    max_video_seconds: float = 180.0
    request_seconds: float = 300.0
    max_history_chars: int = 20_000

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_video_seconds", "request_seconds", "max_history_chars"):
            if not getattr(self, name) > 0:
                raise Mmgpt2Error(f"DemoLimits.{name}={getattr(self, name)!r}: must be > 0")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def display_name(path: str | os.PathLike) -> str:
    """The name the user knows: Gradio stores uploads as ``<tmp>/<hash>/<original name>``."""
    return Path(path).name


def check_upload(path: str | os.PathLike | None, what: str, limits: DemoLimits) -> Path:
    """The uploaded file as a Path, or `DemoInputError` (missing, empty, or over the size cap)."""
    if path is None or str(path) == "":
        raise DemoInputError(f"no {what} given: upload one or pick an example first")
    p = Path(path)
    if not p.is_file():
        raise DemoInputError(f"{display_name(p)}: the uploaded {what} is gone; upload it again")
    size = p.stat().st_size
    if size == 0:
        raise DemoInputError(f"{display_name(p)}: empty file (0 bytes), not a {what}")
    if size > limits.max_upload_bytes:
        raise DemoInputError(
            f"{display_name(p)}: {size / 2**20:.1f} MB is over this demo's {limits.max_upload_mb:g} MB upload limit"
        )
    return p


def video_duration(path: str | os.PathLike) -> float:
    """Duration in seconds from the container header (no decoding); `DemoInputError` if unreadable."""
    import av

    name = display_name(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DemoInputError(f"{name}: has no video stream (audio only or not a video)")
            stream = container.streams.video[0]
            if container.duration:
                return container.duration / av.time_base
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            if stream.frames and stream.average_rate:
                return float(stream.frames / stream.average_rate)
    except DemoInputError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise DemoInputError(
            f"{name}: not a video this demo can read ({type(err).__name__}); try an mp4 (H.264)"
        ) from err
    raise DemoInputError(
        f"{name}: the container does not say how long the video is; re-encode it as mp4 (H.264)"
    )


def check_video(path: str | os.PathLike | None, limits: DemoLimits) -> Path:
    """An uploaded video within the size and duration caps, or `DemoInputError`."""
    p = check_upload(path, "video", limits)
    seconds = video_duration(p)
    if seconds > limits.max_video_seconds:
        raise DemoInputError(
            f"{display_name(p)}: {seconds:.0f} s long; this demo takes videos up to {limits.max_video_seconds:g} s "
            "(cut it first, e.g. ffmpeg -i in.mp4 -t 60 -c copy out.mp4)"
        )
    return p


def check_image(path: str | os.PathLike | None, limits: DemoLimits) -> Path:
    """An uploaded image that Pillow can open, within the caps, or `DemoInputError`."""
    from mmgpt2.images import ImageError, load_image

    p = check_upload(path, "image", limits)
    try:
        load_image(p)
    except ImageError as err:
        # The stored name is Gradio's; show the user's file name instead.
        raise DemoInputError(str(err).replace(str(p), display_name(p))) from err
    return p


def run_with_time_cap(
    fn: Callable[[], T], seconds: float, lock: threading.Lock | None = None, what: str = "request"
) -> T:
    """Run `fn` (holding `lock`), but give up waiting after `seconds` with a clear `DemoInputError`.

    Python threads cannot be killed, so a run that overruns finishes in the background; it keeps
    holding the model's `lock`, so the model is still never run twice at once, and the next
    request's wait for the lock counts against its own cap.
    """
    future: Future = Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            if lock is None:
                result = fn()
            else:
                with lock:
                    result = fn()
        except BaseException as err:  # handed to the waiting request thread
            future.set_exception(err)
        else:
            future.set_result(result)

    threading.Thread(target=work, name=f"mmgpt2-demo-{what}", daemon=True).start()
    try:
        return future.result(timeout=seconds)
    except FutureTimeout:
        raise DemoInputError(
            f"the {what} took longer than this demo's {seconds:g} s limit per request; "
            "try a shorter input or fewer tokens/beams, or run it locally with `mmgpt2` (no limit)"
        ) from None


@contextmanager
def user_errors(what: str) -> Iterator[None]:
    """Turn what the user can fix (bad file, unknown user, model missing) into a `gr.Error` in the page.

    Anything else propagates: Gradio logs it and shows a generic error, and the app keeps serving.
    """
    import gradio as gr

    try:
        yield
    except (
        Mmgpt2Error,
        FileNotFoundError,
        LookupError,
    ) as err:  # DemoInputError, ImageError, VideoError, ...
        raise gr.Error(str(err), title=f"Cannot {what}", print_exception=False) from err
