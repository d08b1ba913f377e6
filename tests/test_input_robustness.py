"""One regression test per cause of a hostile input going wrong (issue 16), at the level a user
meets it: images as a viewer shows them, batches that stay bounded, truncated videos, model
names that are paths, histories that are not text, the demo's image input."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from PIL import Image

from mmgpt2.apps.personalized.store import read_history
from mmgpt2.apps.video.features import VideoDecodeWarning, video_features
from mmgpt2.apps.video.limits import MAX_EVENTS, bounded_events
from mmgpt2.apps.video.reader import SamplingConfig, VideoStream
from mmgpt2.errors import Mmgpt2Error
from mmgpt2.images import image_batches, load_image, to_rgb
from mmgpt2.paths import looks_like_path, resolve_model_dir


# --- images ---------------------------------------------------------------------------------------
def test_exif_orientation_is_applied_as_a_viewer_does(tmp_path):
    upright = Image.new("RGB", (40, 20), (255, 0, 0))
    upright.paste((0, 0, 255), (30, 0, 40, 20))  # blue on the right
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    shown = load_image(tmp_path / "phone.jpg")
    assert shown.size == (40, 20)
    assert shown.getpixel((35, 10))[2] > 200 and shown.getpixel((5, 10))[0] > 200


@pytest.mark.parametrize("mode", ["PA", "La", "RGBa", "RGBA", "LA"])
def test_fully_transparent_pixels_are_white_in_every_alpha_mode(mode):
    assert to_rgb(Image.new(mode, (4, 4))).getpixel((0, 0)) == (255, 255, 255)


def test_a_transparency_key_is_honoured(tmp_path):
    image = Image.new("L", (4, 4), 0)
    image.save(tmp_path / "key.png", transparency=0)
    assert load_image(tmp_path / "key.png").getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L", "I;16N"])
def test_every_16_bit_layout_is_stretched_not_clipped(mode):
    image = Image.new(mode, (2, 1), 1000)
    image.putpixel((1, 0), 3000)
    rgb = to_rgb(image)
    assert rgb.getpixel((0, 0)) == (0, 0, 0) and rgb.getpixel((1, 0)) == (255, 255, 255)


def test_image_batches_decode_at_most_one_batch_ahead(tmp_path, monkeypatch):
    import mmgpt2.images as images

    for i in range(5):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    decoded = []
    real = images.load_image
    monkeypatch.setattr(images, "load_image", lambda p: decoded.append(p) or real(p))
    paths = [tmp_path / "0.png", tmp_path / "gone.png", *(tmp_path / f"{i}.png" for i in range(1, 5))]
    errors: list[str] = []
    batches = image_batches(paths, 2, errors.append)
    assert [p for p, _ in next(batches)] == [str(paths[0]), str(paths[2])]
    assert len(decoded) == 3  # the first batch and the bad file before it: nothing further
    assert [len(b) for b in batches] == [2, 1] and errors == [f"{paths[1]}: no such file"]


def test_caption_cli_prints_each_batch_before_decoding_the_next(tmp_path, monkeypatch, capsys):
    """Memory is bounded by --batch-size: 6 images, batches of 2, each captioned before more are decoded."""
    import mmgpt2.images as images
    from mmgpt2.cli import caption as caption_cli
    from mmgpt2.cli.main import main

    decoded: list[str] = []
    real = images.load_image
    monkeypatch.setattr(images, "load_image", lambda p: decoded.append(str(p)) or real(p))

    class Recorder:
        def caption(self, batch, batch_size, **kwargs):
            seen.append((len(batch), len(decoded)))
            return [f"caption {len(decoded)}"] * len(batch)

    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(caption_cli, "load_captioner", lambda name, device=None: Recorder())
    for i in range(6):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    assert main(["caption", "--batch-size", "2", *(str(tmp_path / f"{i}.png") for i in range(6))]) == 0
    assert seen == [(2, 2), (2, 4), (2, 6)]
    assert len(capsys.readouterr().out.splitlines()) == 6


# --- videos ---------------------------------------------------------------------------------------
def _write_faststart_mp4(path, n_frames: int, fps: int, size: int = 32) -> None:
    """An mp4 whose index (moov) comes first, so a cut file still opens and simply ends early."""
    import av

    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(
                np.full((size, size, 3), (9 * i) % 256, np.uint8), format="rgb24"
            )
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def truncated_video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cut")
    whole = folder / "whole.mp4"
    _write_faststart_mp4(whole, n_frames=80, fps=8)  # 10 s
    data = whole.read_bytes()
    cut = folder / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    return cut


def test_a_truncated_video_warns_and_covers_only_what_decoded(truncated_video, tiny_encoder):
    with pytest.warns(VideoDecodeWarning, match="cut.mp4"):
        feats = video_features(truncated_video, tiny_encoder, SamplingConfig(fps=2, size=32), cache_dir=None)
    assert feats.warnings
    last = float(feats.times[-1])
    assert last < 9.0  # frames stop before the container's 10 s
    assert last <= feats.duration <= last + 0.5  # events cannot be placed past the damage


def test_the_truncation_warning_survives_the_feature_cache(truncated_video, tiny_encoder, tmp_path):
    sampling = SamplingConfig(fps=2, size=32)
    with pytest.warns(VideoDecodeWarning):
        first = video_features(truncated_video, tiny_encoder, sampling, cache_dir=tmp_path)
    with pytest.warns(VideoDecodeWarning):
        cached = video_features(truncated_video, tiny_encoder, sampling, cache_dir=tmp_path)
    assert cached.duration == pytest.approx(first.duration) and cached.warnings == first.warnings


def test_a_one_frame_video_is_one_sampled_frame_so_one_event(tmp_path):
    from test_video_reader import write_mp4

    from mmgpt2.apps.video.reader import read_frames

    write_mp4(tmp_path / "still.mp4", n_frames=1, rate=1)
    frames, times, _ = read_frames(tmp_path / "still.mp4", SamplingConfig(fps=4, size=32))
    assert len(frames) == len(times) == 1  # not the same frame four times
    assert bounded_events(3, n_frames=len(times)) == 1


def test_events_are_capped_and_never_more_than_the_sampled_frames():
    assert bounded_events(3, n_frames=45) == 3
    assert bounded_events(MAX_EVENTS, n_frames=1) == 1
    with pytest.raises(Mmgpt2Error, match=f"from 1 to {MAX_EVENTS}"):
        bounded_events(100, n_frames=400)


def test_a_worker_that_cannot_reimport_main_says_so(tmp_path, monkeypatch):
    stream = VideoStream.__new__(VideoStream)
    stream.path, stream.info = tmp_path / "clip.mp4", None
    monkeypatch.setitem(sys.modules, "__main__", types.SimpleNamespace(__file__="<stdin>", __spec__=None))
    assert "could not start" in stream._death_message(1) and "<stdin>" in stream._death_message(1)


# --- model names, histories -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, is_path",
    [
        ("./m", True),
        ("/abs/m", True),
        ("a/b/c", True),
        ("assets/none", True),
        ("org/model", False),
        ("gpt2", False),
    ],
)
def test_names_that_can_only_be_paths_are_never_hub_ids(name, is_path):
    assert looks_like_path(name) is is_path


def test_a_missing_model_path_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        resolve_model_dir(tmp_path / "gone")


@pytest.mark.parametrize(
    "data, expected",
    [
        ("wow so pretty #art\n".encode("utf-16"), ["wow so pretty #art"]),
        ("café #food\n".encode("cp1252"), ["caf\ufffd #food"]),  # text, with the stray byte replaced
        ("\ufeffsunset #sky\n".encode(), ["sunset #sky"]),
    ],
)
def test_text_histories_in_other_encodings_are_read(tmp_path, data, expected):
    (tmp_path / "h.txt").write_bytes(data)
    assert read_history(tmp_path / "h.txt") == expected


def test_binary_data_as_history_is_refused(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(np.random.default_rng(1).bytes(5000))
    with pytest.raises(Mmgpt2Error, match=r"photo\.jpg: does not look like text"):
        read_history(tmp_path / "photo.jpg")


# --- demo -----------------------------------------------------------------------------------------
def test_the_demo_image_input_names_a_decompression_bomb(tmp_path):
    import gradio as gr
    from gradio.data_classes import FileData
    from test_hostile_inputs import png_claiming

    from mmgpt2.demo.components import checked_image

    bomb = png_claiming(tmp_path / "bomb.png", 100_000, 100_000)
    with gr.Blocks():
        image = checked_image(label="Image")
    with pytest.raises(gr.Error, match=r"bomb\.png: refused as a possible decompression bomb"):
        image.preprocess(FileData(path=str(bomb), orig_name="bomb.png"))


def test_the_demo_video_tab_tells_when_a_video_is_cut(truncated_video, tmp_path):
    import threading

    from mmgpt2.apps.video.model import DenseVideoCaptioner
    from mmgpt2.demo.limits import DemoLimits
    from mmgpt2.demo.tabs.video import dense_caption

    model = DenseVideoCaptioner.build(
        "embedded:shapes-clip",
        "embedded:shapes-gpt2",
        sampling={"fps": 2.0, "size": 32},
        steps=0,
        samples_per_event=1,
        final_samples=1,
        max_new_tokens=6,
        lookahead=False,
        refine_passes=0,
        projection_vocab=500,
    )
    model.cache_dir = None
    models = types.SimpleNamespace(get=lambda name, task: model, lock=lambda name: threading.Lock())
    with pytest.warns(UserWarning, match=r"cut\.mp4: decoding stopped"):  # gr.Warning outside a request
        _, rows = dense_caption(models, DemoLimits(), str(truncated_video), "m", events=2, steps=None)
    assert rows and max(end for _, end, _, _ in rows) < 9.0
