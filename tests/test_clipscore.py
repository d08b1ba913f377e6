"""CLIPScore / RefCLIPScore follow Hessel et al. 2021 (w = 2.5, clipped cosines, harmonic mean)."""

from __future__ import annotations

import math

import pytest
import torch

from mmgpt2.eval.clipscore import clip_score, dense_clip_score, event_embedding

WORDS = {"red": [1.0, 0.0, 0.0], "blue": [0.0, 1.0, 0.0], "green": [0.0, 0.0, 1.0], "dark": [-1.0, 0.0, 0.0]}


class WordEncoder:
    """A text tower that sums fixed word vectors: cosines are known by hand."""

    spec = "test:words"
    embed_dim = 3

    def __init__(self):
        self.seen: list[str] = []

    def encode_text(self, texts):
        self.seen += texts
        return torch.tensor(
            [[sum(WORDS.get(w, [0.0] * 3)[k] for w in t.split()) for k in range(3)] for t in texts]
        )


def test_clipscore_is_w_times_the_clipped_cosine():
    images = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    out = clip_score(WordEncoder(), images, ["red", "red", "dark"])
    per = [item["CLIPScore"] for item in out["per_item"]]
    assert per == pytest.approx([2.5, 2.5 / math.sqrt(2), 0.0])  # a negative cosine counts 0
    assert out["CLIPScore"] == pytest.approx(sum(per) / 3)
    assert "RefCLIPScore" not in out


def test_captions_and_references_get_the_prompt():
    enc = WordEncoder()
    clip_score(enc, torch.eye(3)[:1], ["red"], references=[["blue"]])
    assert enc.seen == ["A photo depicts red", "A photo depicts blue"]
    enc = WordEncoder()
    clip_score(enc, torch.eye(3)[:1], ["red"], prompt="")
    assert enc.seen == ["red"]


def test_refclipscore_is_the_harmonic_mean_with_the_best_unscaled_reference_cosine():
    images = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    refs = [["blue", "red green", "green"], ["dark"]]
    out = clip_score(WordEncoder(), images, ["red", "red"], references=refs)
    best = 1 / math.sqrt(2)  # cos(red, red+green); the text side is not multiplied by w
    assert out["per_item"][0]["RefCLIPScore"] == pytest.approx(2 * 2.5 * best / (2.5 + best))
    assert out["per_item"][1]["RefCLIPScore"] == 0.0  # only a negative cosine: clipped to 0
    assert out["RefCLIPScore"] == pytest.approx(out["per_item"][0]["RefCLIPScore"] / 2)


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="2 images but 1 captions"):
        clip_score(WordEncoder(), torch.eye(3)[:2], ["red"])
    with pytest.raises(ValueError, match=r"do not fit encoder 'test:words'"):
        clip_score(WordEncoder(), torch.ones(1, 5), ["red"])


def test_event_embedding_pools_the_frames_inside_the_event():
    feats = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]])
    times = torch.tensor([0.0, 1.0, 2.0])
    assert event_embedding(feats, times, 0.0, 1.0) == pytest.approx(
        torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2)
    )
    # Shorter than the frame spacing: the nearest frame to the event's middle.
    assert event_embedding(feats, times, 1.8, 1.9) == pytest.approx(torch.tensor([0.0, 0.0, 1.0]))


def test_dense_clipscore_scores_each_event_over_its_frames():
    frames = {"v": (torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), torch.tensor([1.0, 5.0]))}
    preds = {
        "v": [{"sentence": "red", "timestamp": [0, 2]}, {"sentence": "red", "timestamp": [4, 6]}],
        "w": [{"sentence": "blue", "timestamp": [0, 1]}],
    }
    truth = {"v": {"timestamps": [[0, 3], [10, 12]], "sentences": ["red", "green"]}}
    out = dense_clip_score(WordEncoder(), frames, preds, truth)
    assert out["events"] == 2 and out["videos_without_frames"] == ["w"]
    assert out["CLIPScore"] == pytest.approx(2.5 / 2)  # the red frame, then the blue one
    # Event 1 overlaps the "red" event (HM(2.5, 1)); event 2 overlaps nothing (0).
    assert out["RefCLIPScore"] == pytest.approx((2 * 2.5 / 3.5) / 2)
    assert out["per_video"]["v"]["CLIPScore"] == pytest.approx(out["CLIPScore"])


@pytest.mark.slow
def test_clipscore_with_an_embedded_encoder_prefers_the_right_caption():
    from mmgpt2.encoders import load_encoder

    torch.set_num_threads(1)
    enc = load_encoder("embedded:shapes-clip")
    image = "assets/examples/shapes_1.png"  # an orange square on the right
    out = clip_score(
        enc, [image, image], ["a large orange square on the right", "a small blue circle on the left"]
    )
    right, wrong = (item["CLIPScore"] for item in out["per_item"])
    assert 0.0 <= wrong < right <= 2.5
