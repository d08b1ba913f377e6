"""The one CLIP-guided decoder (`mmgpt2.lm.guided`): what it promises, and that both its users call it."""

from __future__ import annotations

import random

import pytest
import torch

from mmgpt2.apps.captioning.zero_shot import ZeroShotCaptioner
from mmgpt2.lm import guided
from mmgpt2.lm.decoding import decode
from mmgpt2.worlds import shapes


@pytest.fixture(scope="module")
def zero_shot():
    torch.set_num_threads(1)
    return ZeroShotCaptioner.from_parts_of("shapes-tiny", max_new_tokens=12)


@pytest.fixture(scope="module")
def scenes(zero_shot):
    rng = random.Random(5)
    picked = [shapes.make_scene(rng, n_objects=1 + i % 2) for i in range(4)]
    return zero_shot.encode_images([shapes.render(s) for s in picked])[0]


def inputs_after_eos(lm):
    context = lm.embed(torch.tensor([lm.eos_token_id]))[None]
    return lambda rows, ids: guided.lm_inputs(lm, context.expand(len(rows), -1, -1), ids)


def caption_logprob(lm, make, ids) -> torch.Tensor:
    return guided.caption_logprobs(lm, make, list(range(len(ids))), ids)


def test_where_the_lm_is_sure_clip_is_never_asked_and_the_caption_is_greedy(zero_shot, scenes, monkeypatch):
    """min_prob 1 leaves only the LM's first proposal: no ending is written, nothing embedded."""
    lm, make = zero_shot.lm, inputs_after_eos(zero_shot.lm)
    texts = guided.TextEmbeddings(zero_shot.encoder, lm.device)
    monkeypatch.setattr(texts, "_encode", lambda t: pytest.fail(f"CLIP embedded {t[:2]}"))
    settings = guided.GuidedSettings(min_prob=1.0, max_new_tokens=10, refine_passes=0)
    ids = guided.guided_decode(lm, texts, make, scenes, settings)
    assert ids == decode(lm, make(range(len(scenes)), [[] for _ in scenes]), max_new_tokens=10)


def test_refine_never_makes_a_caption_less_likely_without_clip(zero_shot, scenes):
    lm, make = zero_shot.lm, inputs_after_eos(zero_shot.lm)
    texts = guided.TextEmbeddings(zero_shot.encoder, lm.device)
    start = [lm.tokenize([t])[0] for t in ["a large red square is on the right", "a small circle above"] * 2]
    refined = guided.refine(lm, texts, make, scenes, start, clip_weight=0.0, passes=2)
    before, after = caption_logprob(lm, make, start), caption_logprob(lm, make, refined)
    assert bool((after >= before - 1e-4).all()) and refined != start  # it did edit, and only upwards


def test_refine_with_clip_alone_never_lowers_the_match(zero_shot, scenes):
    lm, make = zero_shot.lm, inputs_after_eos(zero_shot.lm)
    texts = guided.TextEmbeddings(zero_shot.encoder, lm.device)
    start = [lm.tokenize([t])[0] for t in ["a large purple cross at the top"] * len(scenes)]
    refined = guided.refine(lm, texts, make, scenes, start, clip_weight=1e6, passes=1)
    target = torch.nn.functional.normalize(scenes.float(), dim=-1)

    def sims(ids):
        return (texts([lm.decode(x) for x in ids]) * target).sum(-1)

    assert bool((sims(refined) >= sims(start) - 1e-5).all()) and refined != start


class ScriptedClip:
    """A stand-in for CLIP's text side: cosine 1 for `goal`, 0.5 for `start`, 0.2 for a text with
    one of the goal's two new words, 0 otherwise. One-word edits from `start` only lose; the
    two-word edit wins."""

    def __init__(self, start: str, goal: str, words: tuple[str, str]):
        self.start, self.goal, self.words = start, goal, words

    def cosine(self, text: str) -> float:
        if text == self.goal:
            return 1.0
        if text == self.start:
            return 0.5
        return 0.2 if any(w in text.split() for w in self.words) else 0.0

    def __call__(self, texts):
        c = torch.tensor([self.cosine(t) for t in texts])
        return torch.stack([c, (1 - c**2).sqrt()], dim=-1)  # unit vectors; the target is (1, 0)


@pytest.mark.parametrize("pairs", [0, 2])
def test_two_word_edits_get_past_what_no_one_word_edit_improves(zero_shot, pairs):
    lm, make = zero_shot.lm, inputs_after_eos(zero_shot.lm)
    start, goal = "a large purple cross at the top", "a large red circle at the top"
    clip = ScriptedClip(start, goal, ("red", "circle"))
    settings = guided.GuidedSettings(refine_passes=2, refine_pairs=pairs, min_prob=0.0, top_k=40)
    refined = guided.refine(
        lm, clip, make, torch.tensor([[1.0, 0.0]]), lm.tokenize([start]), settings, clip_weight=1e6
    )
    assert lm.decode(refined[0]).strip() == (goal if pairs else start)


def test_zerota_and_the_zero_shot_captioner_both_decode_with_the_shared_decoder(
    zero_shot, scenes, monkeypatch
):
    from mmgpt2.apps.video.zerota import ZeroTA, ZeroTAConfig
    from mmgpt2.apps.video.zerota import guided as zerota_guided

    calls = []
    shared = guided.guided_decode

    def spy(*args, **kwargs):
        calls.append(args[0])
        return shared(*args, **kwargs)

    monkeypatch.setattr(guided, "guided_decode", spy)
    monkeypatch.setattr(zerota_guided, "guided_decode", spy)
    zero_shot.caption_features(scenes[:1], max_new_tokens=4)
    config = ZeroTAConfig(events=2, max_new_tokens=4, lookahead_rollouts=1)
    contexts = torch.randn(2, 5, zero_shot.lm.hidden_size)
    ZeroTA(zero_shot.encoder, zero_shot.lm, config).guided_decode(contexts, scenes[:2])
    assert calls == [zero_shot.lm, zero_shot.lm]


def test_the_text_cache_embeds_each_text_once(zero_shot, monkeypatch):
    texts = guided.TextEmbeddings(zero_shot.encoder, "cpu")
    seen = []
    original = texts._encode
    monkeypatch.setattr(texts, "_encode", lambda t: seen.extend(t) or original(t))
    first = texts(["a red circle", "a blue square", "a red circle"])
    again = texts(["a blue square"])
    assert seen == ["a red circle", "a blue square"] and torch.equal(again[0], first[1])
    assert torch.allclose(first.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_a_zero_shot_folder_saved_with_decoding_passes_still_loads(zero_shot, tmp_path):
    import json

    from mmgpt2.pipeline import load_pipeline

    folder = zero_shot.save_pretrained(tmp_path / "zs")
    config = json.loads((folder / "config.json").read_text())
    config["guided"]["passes"] = 3  # what folders saved before refine existed hold
    (folder / "config.json").write_text(json.dumps(config))
    assert load_pipeline(folder).guided == zero_shot.guided
