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
