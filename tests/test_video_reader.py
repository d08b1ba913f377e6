"""The video reader: sampled frames with times, bounded streaming, and bad input that never hangs."""

from __future__ import annotations

import queue
import subprocess
import sys
import types
from fractions import Fraction

import numpy as np
import pytest

from mmgpt2.apps.video.reader import (
    FrameChunk,
    SamplingConfig,
    VideoError,
    VideoStream,
    _decode_decord,
    read_frames,
    sample_times,
)


def write_mp4(path, n_frames: int, rate, size: int = 32) -> None:
    """A clip whose frame i has grey level 8*i, so a frame's content tells where it came from."""
    import av

    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=rate)
    stream.width = stream.height = size
    stream.pix_fmt = "yuv420p"
    for i in range(n_frames):
        frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), (8 * i) % 256, np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("videos") / "clip.mp4"
    write_mp4(path, n_frames=30, rate=10, size=64)  # 3 s at 10 fps
    return path


def test_frames_are_sampled_at_the_target_rate_with_times_in_seconds(clip):
    frames, times, info = read_frames(clip, SamplingConfig(fps=2, size=64))
    assert info.duration == pytest.approx(3.0, abs=0.05)
    assert len(frames) == len(times) == 6
    assert np.allclose(np.diff(times), 0.5, atol=0.11)
    assert 0 <= times[0] < 0.5 and times[-1] <= 3.0
    # Frame i of the clip has grey level 8*i: the sampled frame must be the one at its time.
    levels = frames.reshape(len(frames), -1).mean(1)
    assert np.allclose(levels, 8 * np.round(times * 10), atol=4)


def test_frames_are_decoded_at_reduced_resolution(clip):
    frames, _, info = read_frames(clip, SamplingConfig(fps=1, size=32))
    assert (info.width, info.height) == (64, 64)
    assert frames.shape[1:] == (32, 32, 3)


def test_long_video_streams_in_bounded_chunks(tmp_path):
    """A '3-hour' video (180 frames at one per minute): sparse sampling, never more than a chunk at once."""
    path = tmp_path / "three_hours.mp4"
    write_mp4(path, n_frames=180, rate=Fraction(1, 60))
    stream = VideoStream(path, SamplingConfig(fps=1, max_frames=40, chunk=16, size=32))
    sizes, last = [], None
    for chunk in stream:
        sizes.append(len(chunk.frames))
        last = chunk.times[-1]
    assert stream.info.duration == pytest.approx(3 * 3600, rel=0.01)
    assert sum(sizes) == 40 and max(sizes) <= 16
    assert last > 2.8 * 3600  # the samples reach the end of the video


def test_sample_times_never_exceed_max_frames():
    times = sample_times(10_800.0, SamplingConfig(fps=2, max_frames=100))
    assert len(times) == 100 and times[0] > 0 and times[-1] < 10_800


def test_non_video_file_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 10)
    with pytest.raises(VideoError, match=r"notes\.mp4: not a readable video"):
        read_frames(path)


def test_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoError, match="empty file"):
        read_frames(path)


def test_zero_length_video_is_a_clear_error(tmp_path):
    import imageio_ffmpeg

    path = tmp_path / "zero.mp4"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-y",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=black:s=32x32:r=10",
            "-t",
            "0",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )
    with pytest.raises(VideoError, match=r"zero\.mp4: .*(no video stream|zero-length|no decodable)"):
        read_frames(path)


def test_still_image_is_refused_with_a_pointer_to_image_captioning(tmp_path):
    from PIL import Image

    path = tmp_path / "photo.mp4"  # the extension lies; the content is a PNG
    Image.new("RGB", (32, 32), "red").save(path, format="PNG")
    with pytest.raises(VideoError, match="still image.*mmgpt2 caption"):
        read_frames(path)


def test_truncated_mp4_keeps_the_frames_before_the_damage_or_fails_clearly(tmp_path):
    import av

    path = tmp_path / "full.mp4"
    container = av.open(str(path), "w", options={"movflags": "faststart"})  # index first, then data
    stream = container.add_stream("libx264", rate=10)
    stream.width = stream.height = 32
    stream.pix_fmt = "yuv420p"
    rng = np.random.default_rng(0)
    for _ in range(60):
        frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index still promises 60 frames
    stream = VideoStream(cut, SamplingConfig(fps=5, size=32))
    chunks = list(stream)
    n = sum(len(c.frames) for c in chunks)
    assert 0 < n < 30  # some frames, fewer than the container promised
    assert any("promised more" in w for w in stream.warnings)


class _FakeQueue:
    def __init__(self):
        self.items = []

    def put(self, item):
        self.items.append(item)


def test_container_lying_about_frame_count_stops_cleanly_with_a_warning(monkeypatch):
    """decord trusts the container's frame count; frames past the real end raise, and we keep the rest."""

    class LyingReader:
        def __init__(self, *args, **kwargs):
            pass

        def __len__(self):
            return 1000  # the container's claim

        def get_avg_fps(self):
            return 10.0

        def get_batch(self, idx):
            if max(idx) >= 100:  # only 100 frames really exist
                raise RuntimeError("Error seeking frame")
            return types.SimpleNamespace(asnumpy=lambda: np.zeros((len(idx), 8, 8, 3), np.uint8))

    class Probe:
        streams = types.SimpleNamespace(video=[types.SimpleNamespace(width=8, height=8)])

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setitem(sys.modules, "decord", types.SimpleNamespace(VideoReader=LyingReader))
    monkeypatch.setitem(sys.modules, "av", types.SimpleNamespace(open=lambda path: Probe()))
    out = _FakeQueue()
    _decode_decord("lying.mp4", SamplingConfig(fps=1, size=8, chunk=4), out)
    kinds = [k for k, _ in out.items]
    assert kinds[0] == "info" and kinds[-1] == "done" and "truncated" in kinds
    frames = [p for k, p in out.items if k == "frames"]
    assert all(isinstance(c, FrameChunk) for c in frames)
    assert (
        max(t for c in frames for t in c.times) < 10.0
    )  # nothing from past the real end (100 frames = 10 s)


def test_a_hung_decoder_times_out_instead_of_hanging(tmp_path):
    path = tmp_path / "x.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    stream = VideoStream(path, SamplingConfig(timeout=0.5))
    alive = types.SimpleNamespace(is_alive=lambda: True, exitcode=None)
    with pytest.raises(VideoError, match="hung"):
        stream._get(queue.Queue(), alive)
