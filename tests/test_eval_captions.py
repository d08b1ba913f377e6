"""Caption metrics come from pycocoevalcap; without Java the error says what to install."""

from __future__ import annotations

import shutil

import pytest

from mmgpt2.eval import JavaMissingError, score_captions

REFS = {
    "1": ["a small red circle at the top", "a red circle, small, at the top"],
    "2": ["a large blue square on the left"],
}


def test_exact_predictions_score_higher_than_wrong_ones():
    good = score_captions(
        {"1": "a small red circle at the top", "2": "a large blue square on the left"}, REFS
    )
    bad = score_captions({"1": "a large green star", "2": "two yellow triangles"}, REFS)
    assert set(good) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"}
    assert good["BLEU-4"] > 0.95 and good["METEOR"] > 0.9
    for metric in good:
        assert good[metric] > bad[metric], metric


def test_missing_java_gives_a_clear_error(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(JavaMissingError, match="need Java.*openjdk"):
        score_captions({"1": "x"}, REFS)


def test_predictions_without_references_are_named():
    with pytest.raises(ValueError, match="id '9'"):
        score_captions({"9": "x"}, REFS)


def test_grouped_scoring_equals_scoring_each_group_alone():
    from mmgpt2.eval import score_caption_groups

    groups = {
        "ada": (
            {"1": "a red circle", "2": "a blue square"},
            {"1": ["a red circle"], "2": ["a blue square on top"]},
        ),
        "bo": ({"1": "one big cat", "2": "a red circle"}, {"1": ["a big cat"], "2": ["a green cross"]}),
    }
    together = score_caption_groups(groups)
    assert set(together) == {"ada", "bo"}
    for name, (preds, refs) in groups.items():
        alone = score_captions(preds, refs)
        assert together[name] == pytest.approx(alone)
    assert together["ada"]["CIDEr"] != pytest.approx(together["bo"]["CIDEr"])


class _NoSpice:  # SPICE needs Stanford models downloaded; it is not one of our metrics
    def compute_score(self, gts, res):
        return 0.0, []

    def method(self):
        return "SPICE"


class _CocoLike:
    def __init__(self, anns):
        self.imgToAnns = anns

    def getImgIds(self):
        return list(self.imgToAnns)


def test_scores_equal_cocoevalcap_digit_for_digit(monkeypatch):
    import pycocoevalcap.eval as coco_eval

    from mmgpt2.eval.captions import COCO_NAMES
    from mmgpt2.eval.scorers import meteor

    refs = {
        "1": ["A small red circle, at the top.", "a red circle"],
        "2": ["Zoë rides a bike — très vite!", "a girl rides a bike"],
        "3": ["two green crosses on the left"],
        "4": ["a large blue square"],
    }
    preds = {"1": "a small red circle", "2": "a girl on a bike…", "3": "", "4": "a large blue square"}
    monkeypatch.setattr(coco_eval, "Spice", _NoSpice)
    monkeypatch.setattr(coco_eval, "Meteor", meteor)  # the same METEOR jar, without a second JVM start
    evaluator = coco_eval.COCOEvalCap(
        _CocoLike({k: [{"caption": c} for c in v] for k, v in refs.items()}),
        _CocoLike({k: [{"caption": v}] for k, v in preds.items()}),
    )
    evaluator.params["image_id"] = list(preds)
    evaluator.evaluate()
    ours = score_captions(preds, refs)
    for metric, name in COCO_NAMES.items():
        assert ours[metric] == evaluator.eval[name], metric


def test_non_string_predictions_and_empty_references_are_refused_by_id():
    with pytest.raises(ValueError, match="prediction for id '1' is None"):
        score_captions({"1": None}, REFS)
    with pytest.raises(ValueError, match="references for id '1' must be a non-empty list"):
        score_captions({"1": "x"}, {"1": []})
