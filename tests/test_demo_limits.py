"""The demo's limits and controls, as plain functions (no server, no browser)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mmgpt2.demo.examples import example_video
from mmgpt2.demo.limits import DemoInputError, DemoLimits, check_upload, check_video, run_with_time_cap
from mmgpt2.demo.models import TASKS, ModelRegistry
from mmgpt2.demo.tabs import caption as caption_tab
from mmgpt2.demo.tabs import personalized as personalized_tab


def test_uploads_over_the_size_cap_are_refused_with_the_file_name(tmp_path):
    big = tmp_path / "huge.png"
    big.write_bytes(b"\0" * (2 * 1024 * 1024))
    with pytest.raises(DemoInputError, match=r"huge\.png: 2\.0 MB is over this demo's 1 MB upload limit"):
        check_upload(big, "image", DemoLimits(max_upload_mb=1))


def test_videos_over_the_duration_cap_are_refused(tmp_path):
    with pytest.raises(DemoInputError, match=r"12 s long; this demo takes videos up to 5 s"):
        check_video(example_video(), DemoLimits(max_video_seconds=5))
    assert check_video(example_video(), DemoLimits(max_video_seconds=30)).is_file()
    not_video = tmp_path / "clip.mp4"
    not_video.write_bytes(b"plain text pretending to be a video")
    with pytest.raises(DemoInputError, match=r"clip\.mp4: not a video this demo can read"):
        check_video(not_video, DemoLimits())


def test_the_time_cap_answers_in_time_and_keeps_the_model_locked():
    lock = threading.Lock()
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(DemoInputError, match="longer than this demo's 0.2 s limit"):
        run_with_time_cap(lambda: release.wait(10), 0.2, lock, what="caption")
    assert time.monotonic() - started < 2
    assert lock.locked()  # the overrunning run still owns the model
    release.set()
    assert run_with_time_cap(lambda: "next", 5, lock) == "next"


def test_decoding_controls_map_to_generate_arguments():
    assert caption_tab.generation_kwargs("greedy", 3, 12, 0.9, 1.0, None) == {"max_new_tokens": 12}
    assert caption_tab.generation_kwargs("sampling", 3, 12, 0.8, 0.7, 5) == {
        "max_new_tokens": 12,
        "do_sample": True,
        "top_p": 0.8,
        "temperature": 0.7,
        "seed": 5,
    }
    with pytest.raises(ValueError, match="decoding method 'magic'"):
        caption_tab.generation_kwargs("magic", 3, 12, 0.9, 1.0, None)


def test_pasted_history_wins_over_the_picked_user_and_is_capped():
    assert personalized_tab.resolve_user("ada", "  \n", DemoLimits()) == "ada"
    assert personalized_tab.resolve_user(personalized_tab.NO_USER, "", DemoLimits()) is None
    assert personalized_tab.resolve_user("ada", "red dot!\nblue sky", DemoLimits()) == [
        "red dot!",
        "blue sky",
    ]
    with pytest.raises(DemoInputError, match="pasted history is 50 characters"):
        personalized_tab.resolve_user(None, "x" * 50, DemoLimits(max_history_chars=10))


def test_demo_command_binds_loopback_and_never_shares_by_default():
    from mmgpt2.cli.main import build_parser

    args = build_parser().parse_args(["demo"])
    assert (args.host, args.share, args.port) == ("127.0.0.1", "never", 7860)
    assert args.func.__module__ == "mmgpt2.cli.demo"


def test_model_folders_join_the_tab_of_their_type_and_unknown_names_fail_clearly(tmp_path):
    import shutil

    from mmgpt2.demo.models import ModelNotInstalled

    folder = tmp_path / "my-video-model"
    folder.mkdir()
    shutil.copy(video_model_config(), folder / "config.json")
    models = ModelRegistry(extra=[str(folder)])
    assert str(folder) in models.choices("video")
    assert str(folder) not in models.choices("caption")
    with pytest.raises(
        ModelNotInstalled, match="model 'no-such-model' is not installed; known: .*my-video-model"
    ):
        models.get("no-such-model")
    assert "not installed" in models.missing_message("medical")


def video_model_config() -> Path:
    from mmgpt2.paths import models_dir

    return models_dir() / TASKS["video"][1] / "config.json"
