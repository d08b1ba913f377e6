"""Soft moment masks and event post-processing (pure tensor maths: no models needed)."""

from __future__ import annotations

import pytest
import torch

from mmgpt2.apps.video.moments import (
    SoftMoments,
    coverage_gap,
    moment_embeddings,
    pairwise_soft_tiou,
    sharpness_at,
)
from mmgpt2.apps.video.zerota.config import Event, ZeroTAConfig
from mmgpt2.apps.video.zerota.postprocess import postprocess


def test_masks_start_as_an_even_tiling_and_are_one_inside_zero_outside():
    moments = SoftMoments(3)
    assert torch.allclose(
        moments.segments(), torch.tensor([[0, 1 / 3], [1 / 3, 2 / 3], [2 / 3, 1]]), atol=1e-4
    )
    t = torch.tensor([1 / 6, 0.5, 5 / 6])
    masks = moments(t, sharpness=200.0)
    assert torch.allclose(masks, torch.eye(3), atol=1e-3)


def test_gradient_reaches_centre_and_width_through_the_moment_embedding():
    moments = SoftMoments(2)
    t = torch.linspace(0, 1, 40)
    frames = torch.zeros(40, 2)
    frames[:, 0] = (t < 0.7).float()  # the scene changes at 0.7, not at the initial 0.5 boundary
    frames[:, 1] = (t >= 0.7).float()
    emb = moment_embeddings(moments(t, 20.0), frames)
    loss = -emb[0, 0]  # make event 0 purer in feature 0
    loss.backward()
    assert moments.center_logit.grad is not None and moments.center_logit.grad[0] != 0
    assert moments.width_logit.grad[0] != 0


def test_soft_tiou_is_high_for_equal_masks_and_low_for_disjoint_ones():
    t = torch.linspace(0, 1, 100)
    same = SoftMoments(2, centers=torch.tensor([0.5, 0.5]), widths=torch.tensor([0.4, 0.4]))(t, 100.0)
    apart = SoftMoments(2, centers=torch.tensor([0.2, 0.8]), widths=torch.tensor([0.3, 0.3]))(t, 100.0)
    assert pairwise_soft_tiou(same) > 0.9
    assert pairwise_soft_tiou(apart) < 0.01
    assert pairwise_soft_tiou(same[:1]) == 0


def test_coverage_gap_counts_uncovered_time():
    t = torch.linspace(0, 1, 100)
    tiled = SoftMoments(2)(t, 200.0)
    half = SoftMoments(1, centers=torch.tensor([0.25]), widths=torch.tensor([0.5]))(t, 200.0)
    assert coverage_gap(tiled) < 0.05 < 0.4 < coverage_gap(half)


def test_sharpness_schedule_goes_from_start_to_end():
    assert sharpness_at(0, 10, 10.0, 100.0) == pytest.approx(10.0)
    assert sharpness_at(9, 10, 10.0, 100.0) == pytest.approx(100.0)
    assert 10 < sharpness_at(5, 10, 10.0, 100.0) < 100


def test_postprocess_merges_adjacent_same_captions_and_drops_duplicates():
    events = [
        Event("a red circle", 0.0, 10.0, 0.5),
        Event("a red circle", 10.0, 20.0, 0.6),  # same scene split in two: merged
        Event("a blue square", 20.0, 30.0, 0.4),
        Event("a blue cross", 21.0, 30.0, 0.3),  # near-duplicate of the square's segment: dropped by NMS
    ]
    out = postprocess(events, nms_tiou=0.6)
    assert [(e.sentence, e.start, e.end) for e in out] == [
        ("a red circle", 0.0, 20.0),
        ("a blue square", 20.0, 30.0),
    ]
    assert out[0].score == 0.6  # best first


def test_config_rejects_unknown_or_bad_settings():
    with pytest.raises(ValueError, match="unknown key .evnts."):
        ZeroTAConfig.from_dict({"evnts": 3})
    with pytest.raises(ValueError):
        ZeroTAConfig(events=0)
