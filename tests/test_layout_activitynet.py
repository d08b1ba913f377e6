"""ActivityNet Captions in its real layout, end to end through the ZeroTA recipe.

Annotations (``val_1.json``) are keyed ``v_<youtube id>`` with ``duration``, ``timestamps`` and
``sentences`` (sentences start with a space, as in the released files); videos are saved by common
downloaders as ``v_<id>.<ext>`` or ``<id>.<ext>``. The clips are generated here (shapes world).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mmgpt2.worlds import videos

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))

# 11-character YouTube ids, as in ActivityNet
IDS = ["QOlSCBRmfWY", "ehGHCYKzyZ8", "nwznKOuZM7w", "-5KAycAQlC4"]


@pytest.fixture(scope="module")
def anet(tmp_path_factory) -> Path:
    """val_1.json for four videos; on disk: v_<id>.mp4, <id>.mp4 (no v_), one missing, one under two names."""
    root = tmp_path_factory.mktemp("anet")
    made = root / "made"
    truth = json.loads(videos.write(made, n=3, seed=5, duration=(6.0, 6.0), scenes=(2, 2), fps=4).read_text())
    val = {}
    for i, yt in enumerate(IDS):
        entry = truth[f"{min(i, 2):05d}"]
        val[f"v_{yt}"] = {
            "duration": entry["duration"],
            "timestamps": entry["timestamps"],
            "sentences": [" " + s.capitalize() + "." for s in entry["sentences"]],
        }
    (root / "videos" / "val").mkdir(parents=True)
    shutil.copy(made / "00000.mp4", root / "videos" / "val" / f"v_{IDS[0]}.mp4")  # with v_, in a subfolder
    shutil.copy(made / "00001.mp4", root / "videos" / f"{IDS[1]}.mp4")  # without v_ (youtube-dl style)
    shutil.copy(made / "00002.mp4", root / "videos" / f"{IDS[2]}.mkv")  # the same video twice
    shutil.copy(made / "00002.mp4", root / "videos" / f"v_{IDS[2]}.webm")
    # IDS[3] is annotated but was never downloaded
    (root / "val_1.json").write_text(json.dumps(val))
    return root


def test_videos_are_matched_to_annotation_ids_whatever_their_names(anet):
    from zerota_activitynet import find_videos

    found, missing, duplicates = find_videos(anet / "videos", [f"v_{i}" for i in IDS])
    assert found[f"v_{IDS[0]}"].name == f"v_{IDS[0]}.mp4"
    assert found[f"v_{IDS[1]}"].name == f"{IDS[1]}.mp4"
    assert found[f"v_{IDS[2]}"].name == f"v_{IDS[2]}.webm"  # the annotation's exact name wins
    assert missing == [f"v_{IDS[3]}"]
    assert sorted(Path(p).name for p in duplicates[f"v_{IDS[2]}"]) == [f"{IDS[2]}.mkv", f"v_{IDS[2]}.webm"]


@pytest.mark.slow  # METEOR's JVM start alone takes 10-30 s on 2 shared cores
def test_zerota_recipe_end_to_end_keys_results_by_annotation_id(anet, tmp_path):
    import zerota_activitynet

    torch.set_num_threads(1)
    out = tmp_path / "run"
    argv = ["--videos", str(anet / "videos"), "--gt", str(anet / "val_1.json"), "--out", str(out)]
    argv += ["--encoder", "embedded:shapes-clip", "--lm", "embedded:shapes-gpt2"]
    argv += ["--events", "2", "--steps", "2", "--fps", "2", "--limit", "4"]
    for setting in ("lookahead=false", "samples_per_event=1", "final_samples=2", "refine_passes=0"):
        argv += ["--set", setting]
    argv += ["--set", "max_new_tokens=6"]
    assert zerota_activitynet.main(argv) == 0
    doc = json.loads((out / "predictions.json").read_text())
    scores = json.loads((out / "scores.json").read_text())
    # sorted annotation ids: "-5KA..." (missing) first, then the three found ones
    assert set(doc["results"]) == {f"v_{IDS[0]}", f"v_{IDS[1]}", f"v_{IDS[2]}"}
    assert all(ev["timestamp"][1] <= 6.0 + 1e-6 for evs in doc["results"].values() for ev in evs)
    assert scores["missing_videos"] == [f"v_{IDS[3]}"]
    assert list(scores["duplicate_videos"]) == [f"v_{IDS[2]}"]
    assert scores["videos_scored"] == 3 and scores["num_videos"] == 3 and scores["failed_videos"] == {}
    assert scores["predicted_videos_not_in_gt"] == 0  # every prediction met its ground truth


def test_annotation_ids_survive_captioning_whatever_the_file_names(tmp_path):
    """Fast: a stand-in for the ZeroTA optimisation, the real id plumbing and results file."""
    from mmgpt2.apps.video.model import DenseVideoCaptioner, caption_videos_distributed
    from mmgpt2.apps.video.zerota import Event

    class Stub(DenseVideoCaptioner):
        lm = SimpleNamespace(device=torch.device("cpu"))  # a CPU captioner: one CPU process

        def __init__(self):  # no models: only the keying is under test
            pass

        def caption_video(self, path, events=None, trace=None, progress=False, **settings):
            if Path(path).suffix == ".webm":
                raise ValueError(f"{path}: cannot decode")
            return [Event(start=0.0, end=1.0, sentence=Path(path).name, score=1.0)]

    files = {f"v_{IDS[0]}": tmp_path / f"v_{IDS[0]}.mp4", f"v_{IDS[1]}": tmp_path / f"{IDS[1]}.mp4"}
    files[f"v_{IDS[2]}"] = tmp_path / f"{IDS[2]}.webm"
    doc = caption_videos_distributed(Stub(), files, tmp_path / "predictions.json")
    assert set(doc["results"]) == {f"v_{IDS[0]}", f"v_{IDS[1]}"}
    assert doc["results"][f"v_{IDS[1]}"][0]["sentence"] == f"{IDS[1]}.mp4"  # keyed by id, not by stem
    assert list(doc["external_data"]["errors"]) == [f"v_{IDS[2]}"]
    assert json.loads((tmp_path / "predictions.json").read_text()) == doc
