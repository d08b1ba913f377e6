"""The videos world: real mp4 clips of shapes scenes at known times, with ActivityNet ground truth."""

from __future__ import annotations

import json

import pytest

from mmgpt2.apps.video.reader import SamplingConfig, read_frames
from mmgpt2.worlds import WORLDS, shapes, videos


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    gt_path = videos.write(out, n=2, seed=3, duration=(6.0, 8.0), scenes=(2, 3), fps=4)
    return out, json.loads(gt_path.read_text())


def test_ground_truth_is_activitynet_format_with_tiling_events(world):
    out, gt = world
    assert sorted(gt) == ["00000", "00001"]
    for vid, entry in gt.items():
        assert (out / f"{vid}.mp4").is_file()
        ts = entry["timestamps"]
        assert 2 <= len(ts) == len(entry["sentences"]) == len(entry["scenes"]) <= 3
        assert ts[0][0] == 0 and ts[-1][1] == pytest.approx(entry["duration"])
        assert all(a[1] == b[0] for a, b in zip(ts, ts[1:]))  # scenes follow each other
        assert all(e - s >= 0.2 * entry["duration"] - 0.01 for s, e in ts)
        for sentence, scene in zip(entry["sentences"], entry["scenes"]):
            assert shapes.attribute_accuracy(sentence, shapes.scene_from_record(scene))


def test_clip_duration_and_content_change_at_the_cuts(world):
    out, gt = world
    entry = gt["00000"]
    frames, times, info = read_frames(out / "00000.mp4", SamplingConfig(fps=4, size=64))
    assert info.duration == pytest.approx(entry["duration"], abs=0.3)
    (s0, e0), (s1, e1) = entry["timestamps"][:2]
    first = frames[(times > s0 + 0.3) & (times < e0 - 0.3)].astype(float)
    second = frames[(times > s1 + 0.3) & (times < e1 - 0.3)].astype(float)
    within = abs(first[0] - first[-1]).mean()  # drift + noise inside a scene
    across = abs(first[-1] - second[0]).mean()  # a cut to another scene
    assert 0 < within < across


def test_world_is_registered_and_seeded(tmp_path):
    assert "videos" in WORLDS
    a = videos.write(tmp_path / "a", n=1, seed=5, duration=(3.0, 3.0), scenes=(2, 2), fps=2)
    b = videos.write(tmp_path / "b", n=1, seed=5, duration=(3.0, 3.0), scenes=(2, 2), fps=2)
    assert json.loads(a.read_text()) == json.loads(b.read_text())
