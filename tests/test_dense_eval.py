"""Dense video captioning scores: the ActivityNet protocol and SODA_c."""

from __future__ import annotations

import json

import pytest

from mmgpt2.eval.dense import evaluate_dense, soda_c_video, tiou

GT = {
    "v1": {
        "duration": 30,
        "timestamps": [[0, 10], [10, 30]],
        "sentences": ["a red circle on the left", "a blue square at the top"],
    },
    "v2": {"duration": 20, "timestamps": [[0, 20]], "sentences": ["a large green cross in the center"]},
}


def preds(results):
    return {"version": "VERSION 1.0", "results": results, "external_data": {}}


PERFECT = preds(
    {
        vid: [{"sentence": s, "timestamp": t} for s, t in zip(g["sentences"], g["timestamps"])]
        for vid, g in GT.items()
    }
)


@pytest.fixture(scope="module")
def perfect_scores():
    return evaluate_dense(PERFECT, GT)


def test_tiou_of_segments():
    assert tiou([0, 10], [0, 10]) == 1.0
    assert tiou([0, 10], [5, 15]) == pytest.approx(5 / 15)
    assert tiou([0, 5], [5, 10]) == 0.0


def test_perfect_predictions_score_one_everywhere(perfect_scores):
    for key in ("Precision", "Recall", "F1", "METEOR", "SODA_c"):
        assert perfect_scores[key] == pytest.approx(1.0, abs=1e-6), key
    assert perfect_scores["Bleu_4"] > 0.9
    assert set(perfect_scores["per_tiou"]) == {"0.3", "0.5", "0.7", "0.9"}


def test_videos_without_predictions_count_zero(perfect_scores):
    only_v1 = preds({"v1": PERFECT["results"]["v1"]})
    scores = evaluate_dense(only_v1, GT)
    assert scores["Recall"] == pytest.approx(0.5)
    assert scores["Precision"] == pytest.approx(0.5)
    assert scores["METEOR"] == pytest.approx(perfect_scores["METEOR"] / 2, abs=1e-6)
    assert scores["SODA_c"] == pytest.approx(0.5, abs=1e-6)


def test_localisation_depends_on_the_tiou_threshold():
    # IoU 0.6 with the only event: a hit at 0.3 and 0.5, a miss at 0.7 and 0.9.
    shifted = preds({"v2": [{"sentence": "a large green cross in the center", "timestamp": [0, 12]}]})
    scores = evaluate_dense(shifted, {"v2": GT["v2"]}, soda=False)
    per = scores["per_tiou"]
    assert per["0.3"]["F1"] == per["0.5"]["F1"] == pytest.approx(1.0)
    assert per["0.7"]["F1"] == per["0.9"]["F1"] == 0.0
    assert scores["F1"] == pytest.approx(0.5)
    # A missed segment's caption is paired with an unmatchable reference: METEOR 0 at 0.7 / 0.9.
    assert per["0.9"]["METEOR"] == 0.0 < per["0.5"]["METEOR"]


def test_soda_c_matching_preserves_temporal_order():
    truth = {"timestamps": [[0, 10], [10, 20]], "sentences": ["a", "b"]}
    overlapping = [{"sentence": "x", "timestamp": [0, 12]}, {"sentence": "y", "timestamp": [8, 20]}]
    in_order = soda_c_video(overlapping, truth, lambda i, j: 1.0 if i == j else 0.0)
    assert in_order == pytest.approx(10 / 12)  # both pairs (IoU 10/12 each), precision = recall
    # Captions that fit only crosswise: (0 -> 1) and (1 -> 0) each have IoU 0.1, but an
    # order-preserving matching may take only one of them (a free matching would take both: 0.2).
    crossed = soda_c_video(overlapping, truth, lambda i, j: 1.0 if i != j else 0.0)
    assert crossed == pytest.approx(0.05)
    # One prediction can be matched once: precision 1 x score, recall halved.
    one = soda_c_video([{"sentence": "a", "timestamp": [0, 10]}], truth, lambda i, j: 1.0)
    assert one == pytest.approx(2 * 1.0 * 0.5 / 1.5)


def test_malformed_predictions_are_named(tmp_path):
    with pytest.raises(ValueError, match="results"):
        evaluate_dense({"res": {}}, GT)
    with pytest.raises(ValueError, match=r"results\['v1'\]\[0\]"):
        evaluate_dense(preds({"v1": [{"sentence": "x"}]}), GT)


def run_cli(argv: list[str]) -> int:
    """Our sub-commands through argparse and `mmgpt2.cli.main`'s error handling."""
    import argparse

    from mmgpt2.cli import video

    parser = argparse.ArgumentParser(prog="mmgpt2")
    video.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError):
        return 2


def test_cli_eval_dense_prints_json(tmp_path, capsys):
    (tmp_path / "p.json").write_text(json.dumps(PERFECT))
    (tmp_path / "g.json").write_text(json.dumps(GT))
    assert (
        run_cli(
            ["eval-dense", "--pred", str(tmp_path / "p.json"), "--gt", str(tmp_path / "g.json"), "--json"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["F1"] == pytest.approx(1.0) and out["num_videos"] == 2
    assert (
        run_cli(["eval-dense", "--pred", str(tmp_path / "missing.json"), "--gt", str(tmp_path / "g.json")])
        == 2
    )
