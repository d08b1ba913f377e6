"""eval-dense follows densevid_eval (2018/2021) and SODA_c as the reference tools compute them.

Every expected number here is worked out by hand from the documented behaviour of the reference
evaluators (see `mmgpt2/eval/dense.py` and `mmgpt2/eval/soda.py`), not copied from them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmgpt2.eval.dense import _garbage_maker, caption_items, evaluate_dense, localisation, tiou
from mmgpt2.eval.dense_inputs import Event
from mmgpt2.eval.soda import order_preserving_match, soda_c_video


def preds(results):
    return {"version": "VERSION 1.0", "results": results, "external_data": {"used": False}}


def gt(*events, duration=60.0):
    return {
        "duration": duration,
        "timestamps": [list(t) for t, _ in events],
        "sentences": [s for _, s in events],
    }


def pred(start, end, sentence):
    return {"sentence": sentence, "timestamp": [start, end]}


# ---- no Java: tIoU, localisation, items, SODA matching ----


def test_tiou_is_the_references_formula():
    assert tiou([0, 10], [5, 15]) == pytest.approx(5 / 15)
    assert tiou([0, 5], [5, 10]) == 0.0
    # The reference divides by union + 1e-8: an exact 0.5 lands just below 0.5.
    assert tiou([0, 10], [0, 5]) < 0.5
    assert tiou([0, 10], [0, 10]) == pytest.approx(1.0)


def test_localisation_takes_the_best_file_for_precision_and_recall_independently():
    mine = [Event(0, 10, "x"), Event(50, 60, "y")]
    file_a = [Event(0, 10, "a"), Event(20, 30, "b")]  # precision 1/2, recall 1/2
    file_b = [Event(0, 10, "a")]  # precision 1/2, recall 1
    file_c = [Event(0, 10, "a"), Event(50, 60, "b"), Event(70, 80, "c")]  # precision 1, recall 2/3
    assert localisation(mine, [file_a, file_b], 0.5) == (0.5, 1.0)
    assert localisation(mine, [file_a, file_c], 0.5) == pytest.approx((1.0, 2 / 3))
    assert localisation([], [file_a], 0.5) == (0.0, 0.0)


def test_localisation_depends_on_the_threshold():
    # tIoU 0.6: covered at 0.3 and 0.5, not at 0.7 or 0.9.
    mine, events = [Event(0, 12, "x")], [[Event(0, 20, "a")]]
    assert [localisation(mine, events, t) for t in (0.3, 0.5, 0.7, 0.9)] == [(1, 1), (1, 1), (0, 0), (0, 0)]


def test_a_prediction_matching_two_events_is_two_items_and_a_miss_is_one_garbage_item():
    events = [[Event(0, 10, "a red circle"), Event(0, 9, "a blue square")], [Event(1, 10, "a green cross")]]
    mine = [Event(0, 10, "a red circle"), Event(40, 50, "a star")]
    items = caption_items(mine, events, 0.5, lambda: "GARBAGE")
    assert items == [
        ("a red circle", "a red circle"),
        ("a red circle", "a blue square"),
        ("a red circle", "a green cross"),  # the second file's event is an item too
        ("a star", "GARBAGE"),
    ]


def test_the_2021_garbage_is_random_lowercase_and_seedable():
    first, again = _garbage_maker("2021", 7), _garbage_maker("2021", 7)
    strings = [first() for _ in range(50)]
    assert strings == [again() for _ in range(50)]
    assert all(s.isalpha() and s.islower() and 10 <= len(s) <= 20 for s in strings)
    assert len(set(strings)) == 50
    assert _garbage_maker("2018", None)() == "abc123!@#"


def test_soda_matching_preserves_temporal_order():
    # Crossing pairs: only one of them can be taken.
    assert order_preserving_match(np.array([[0.0, 1.0], [1.0, 0.0]])) == 1.0
    assert order_preserving_match(np.array([[0.5, 0.0], [0.0, 0.5]])) == 1.0
    iou = np.array([[1.0], [1.0]])  # two events, one prediction: matched once
    precision, recall, f = soda_c_video(iou, np.ones((2, 1)))
    assert (precision, recall) == (1.0, 0.5) and f == pytest.approx(2 / 3)


# ---- through the Java scorers (PTB tokenizer, METEOR) ----


def test_a_prediction_matching_two_events_counts_twice():
    truth = {"v": gt(([0, 10], "a red circle"), ([0, 10], "a blue square"))}
    scores = evaluate_dense(preds({"v": [pred(0, 10, "a red circle")]}), truth, tious=(0.5,), soda=False)
    assert scores["Precision"] == scores["Recall"] == 1.0
    # Two items: "a red circle" vs itself (3 of 3 words) and vs "a blue square" (1 of 3): BLEU-1 4/6.
    # Pooling both references into one item would give 1.0.
    assert scores["Bleu_1"] == pytest.approx(4 / 6, abs=1e-6)


def test_cider_idf_comes_from_each_video_alone():
    # One item in a video: every n-gram has document frequency 1 among 1 reference, so its IDF
    # weight log(1) - log(1) is 0 and CIDEr is 0 even for a perfect caption.
    one = {"v": gt(([0, 10], "a red circle on the left"))}
    perfect_one = preds({"v": [pred(0, 10, "a red circle on the left")]})
    assert evaluate_dense(perfect_one, one, tious=(0.5,), soda=False)["CIDEr"] == 0.0
    # Two items sharing only "a" (IDF 0): each caption's 1-, 2- and 3-gram vectors equal its
    # reference's (cosine 1) and it has no 4-gram (0), so CIDEr-D = 10 x (1 + 1 + 1 + 0) / 4.
    two = {"v": gt(([0, 10], "a red circle"), ([20, 30], "a blue square"))}
    perfect_two = preds({"v": [pred(0, 10, "a red circle"), pred(20, 30, "a blue square")]})
    alone = evaluate_dense(perfect_two, two, tious=(0.5,), soda=False)["CIDEr"]
    assert alone == pytest.approx(7.5, abs=1e-6)
    # Adding another video does not change this video's CIDEr: the mean is (7.5 + 0) / 2.
    both = evaluate_dense(
        preds({**perfect_two["results"], "w": perfect_one["results"]["v"]}),
        {"v": two["v"], "w": one["v"]},
        tious=(0.5,),
        soda=False,
    )
    assert both["CIDEr"] == pytest.approx(3.75, abs=1e-6)


def test_non_ascii_characters_become_spaces_before_tokenizing():
    truth = {"v": gt(([0, 10], "Zoë rides a bike"))}
    scores = evaluate_dense(preds({"v": [pred(0, 10, "Zoe rides a bike")]}), truth, tious=(0.5,), soda=False)
    # "zo rides a bike" vs "zoe rides a bike": 3 of 4 words.
    assert scores["Bleu_1"] == pytest.approx(0.75, abs=1e-6)


def test_videos_without_predictions_count_zero_and_the_counts_are_reported():
    truth = {"v": gt(([0, 10], "a red circle")), "w": gt(([0, 10], "a blue square"))}
    mine = preds({"v": [pred(0, 10, "a red circle")], "elsewhere": [pred(0, 5, "a star")]})
    scores = evaluate_dense(mine, truth, tious=(0.5,))
    assert scores["Precision"] == scores["Recall"] == 0.5
    assert scores["num_videos"] == 2
    assert scores["videos_without_predictions"] == 1
    assert scores["predicted_videos_not_in_gt"] == 1
    # SODA_c leaves the unpredicted video out; --soda-missing zero counts it as 0.
    strict = evaluate_dense(mine, truth, tious=(0.5,), soda_missing="zero")
    assert scores["SODA_c"] > 0.99
    assert strict["SODA_c"] == pytest.approx(scores["SODA_c"] / 2)


def test_soda_scores_each_ground_truth_file_then_averages_or_pools_them():
    file_a = {"v": gt(([0, 10], "a red circle"))}
    file_b = {"v": gt(([0, 10], "two green stars"))}  # no word in common with the prediction
    mine = preds({"v": [pred(0, 10, "a red circle")]})
    per_file = evaluate_dense(mine, [file_a, file_b], tious=(0.5,))
    merged = evaluate_dense(mine, [file_a, file_b], tious=(0.5,), soda_references="merged")
    m = per_file["SODA_c_per_file"][0]  # METEOR of identical sentences (just under 1)
    assert m > 0.95 and per_file["SODA_c_per_file"][1] == 0.0
    assert per_file["SODA_c"] == pytest.approx(m / 2)
    # Pooled: one prediction, two events, one match: P = m, R = m / 2, F = 2m / 3.
    assert merged["SODA_c"] == pytest.approx(2 * m / 3)


def test_only_the_first_1000_predictions_are_read():
    truth = {"v": gt(([0, 10], "a red circle"))}
    mine = preds({"v": [pred(0, 10, "a red circle"), pred(30, 40, "a star"), pred(50, 60, "a moon")]})
    assert evaluate_dense(mine, truth, tious=(0.5,), soda=False)["Precision"] == pytest.approx(1 / 3)
    assert evaluate_dense(mine, truth, tious=(0.5,), soda=False, max_proposals=1)["Precision"] == 1.0


def test_the_2021_protocol_changes_only_the_garbage_reference():
    truth = {"v": gt(([0, 10], "a man is playing a guitar on a stage"))}
    mine = preds({"v": [pred(0, 10, "a man plays the guitar"), pred(40, 50, "a man is dancing on a stage")]})
    old = evaluate_dense(mine, truth, tious=(0.5,), soda=False)
    new = evaluate_dense(mine, truth, tious=(0.5,), soda=False, protocol="2021", seed=1)
    again = evaluate_dense(mine, truth, tious=(0.5,), soda=False, protocol="2021", seed=1)
    assert new == again
    assert old["Precision"] == new["Precision"] and old["Recall"] == new["Recall"]
    # "abc123!@#" is one reference word, a random string another: METEOR's corpus statistics
    # count the garbage reference's length, so the two versions differ.
    assert old["METEOR"] != new["METEOR"]


def test_perfect_predictions_and_the_table(tmp_path):
    from mmgpt2.eval.dense import format_table

    truth = {"v": gt(([0, 10], "a red circle on the left"), ([10, 30], "a blue square at the top"))}
    mine = preds({"v": [pred(0, 10, "a red circle on the left"), pred(10, 30, "a blue square at the top")]})
    scores = evaluate_dense(mine, truth)
    for key in ("Precision", "Recall", "F1", "Bleu_4"):
        assert scores[key] == pytest.approx(1.0, abs=1e-6), key
    assert set(scores["per_tiou"]) == {"0.3", "0.5", "0.7", "0.9"}
    table = format_table(scores)
    assert "1 ground-truth videos, 0 without predictions; 0 predicted videos not in the ground truth" in table
    json.dumps(scores)  # JSON-serialisable for --json
