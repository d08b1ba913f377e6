"""ZeroTA end to end on the embedded shapes models: features, optimisation, captioner, CLI, timeline.

Few steps and tiny clips keep this fast; quality is measured in benchmarks/zerota.py, not here.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from mmgpt2.apps.video import features as features_mod
from mmgpt2.apps.video.model import DenseVideoCaptioner
from mmgpt2.apps.video.reader import SamplingConfig, VideoStream
from mmgpt2.apps.video.zerota import ZeroTA, ZeroTAConfig, ZeroTATrace
from mmgpt2.apps.video.zerota.prefix import ZeroTAPrefix
from mmgpt2.encoders import load_encoder
from mmgpt2.lm import load_lm
from mmgpt2.worlds import videos

FAST = {"steps": 4, "samples_per_event": 2, "final_samples": 3, "max_new_tokens": 10}


@pytest.fixture(scope="module")
def models():
    torch.set_num_threads(1)
    return load_encoder("embedded:shapes-clip"), load_lm("embedded:shapes-gpt2")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    out = tmp_path_factory.mktemp("zerota")
    gt = json.loads(videos.write(out, n=1, seed=11, duration=(8.0, 8.0), scenes=(2, 2), fps=4).read_text())
    return out / "00000.mp4", gt["00000"]


@pytest.fixture(scope="module")
def feats(models, clip, tmp_path_factory):
    sampling = SamplingConfig(fps=2, size=64)
    return features_mod.video_features(
        clip[0], models[0], sampling, cache_dir=tmp_path_factory.mktemp("cache")
    )


def test_frame_features_have_times_and_the_encoder_width(feats, models, clip):
    assert feats.features.shape == (16, models[0].embed_dim)
    assert feats.times.shape == (16,) and float(feats.times[-1]) < feats.duration
    assert feats.duration == pytest.approx(clip[1]["duration"], abs=0.2)


def test_features_are_cached_by_file_content_not_name(models, clip, tmp_path, monkeypatch):
    sampling, cache = SamplingConfig(fps=1, size=64), tmp_path / "cache"
    first = features_mod.video_features(clip[0], models[0], sampling, cache_dir=cache)
    copy = tmp_path / "renamed.mp4"
    shutil.copy(clip[0], copy)

    def no_decoding(self):
        raise AssertionError("decoded although the content is cached")

    monkeypatch.setattr(VideoStream, "__iter__", no_decoding)
    again = features_mod.video_features(copy, models[0], sampling, cache_dir=cache)
    assert torch.equal(first.features, again.features) and torch.equal(first.times, again.times)
    with open(copy, "ab") as f:  # different bytes: a different key, so it must decode again
        f.write(b"\0")
    with pytest.raises(AssertionError, match="decoded although"):
        features_mod.video_features(copy, models[0], sampling, cache_dir=cache)


def test_zerota_finds_events_in_seconds_inside_the_video(models, feats):
    trace = ZeroTATrace()
    events = ZeroTA(*models, ZeroTAConfig(events=2, **FAST)).run(
        feats.features, feats.times, feats.duration, trace
    )
    assert 1 <= len(events) <= 2
    for e in events:
        assert 0 <= e.start < e.end <= feats.duration + 1e-6
        assert len(e.sentence.split()) >= 2 and -1 <= e.score <= 1
    assert [e.score for e in events] == sorted((e.score for e in events), reverse=True)
    # Every loss ran, and the optimisation moved the masks away from their initial tiling.
    assert {"distill", "language", "iou", "coverage"} <= set(trace.losses[0])
    assert all(torch.isfinite(torch.tensor(list(step.values()))).all() for step in trace.losses)
    assert trace.final_segments != trace.initial_segments


def test_vision_loss_gradient_reaches_masks_and_prefix(models, feats, monkeypatch):
    """One step's gradients, through the same code path as `run` (steps=1, no post-processing)."""
    encoder, lm = models
    grads = {}
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        for group in self.param_groups:
            for p in group["params"]:
                grads[id(p)] = None if p.grad is None else float(p.grad.abs().sum())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    ZeroTA(encoder, lm, ZeroTAConfig(events=2, **{**FAST, "steps": 1})).run(
        feats.features, feats.times, feats.duration
    )
    # centre logits, width logits, soft prompt, projection weight and bias: all receive gradient
    assert len(grads) == 5 and all(g is not None and g > 0 for g in grads.values())


def test_features_from_another_encoder_are_refused(models):
    with pytest.raises(ValueError, match="another encoder"):
        ZeroTA(*models).run(torch.zeros(5, 7), torch.arange(5.0), 5.0)


def test_captioner_saves_only_a_config_and_loads_back(models, tmp_path):
    from mmgpt2.pipeline import load_pipeline

    dvc = DenseVideoCaptioner.build(*models, sampling={"fps": 1.0, "size": 64}, events=4, steps=7)
    folder = dvc.save_pretrained(tmp_path / "dvc")
    config = json.loads((folder / "config.json").read_text())
    assert config["type"] == "dense_video_captioner" and config["encoder"] == "embedded:shapes-clip"
    assert config["zerota"]["events"] == 4 and config["sampling"]["fps"] == 1.0
    loaded = load_pipeline(folder)
    assert isinstance(loaded, DenseVideoCaptioner)
    assert loaded.zerota == dvc.zerota and loaded.sampling == dvc.sampling


def test_embedded_model_loads_offline_on_the_embedded_shapes_models(models):
    """The shipped captioner runs on the very weights of the embedded shapes CLIP and GPT-2."""
    dvc = DenseVideoCaptioner.from_pretrained("shapes-video-zerota")
    encoder, lm = models
    assert dvc.encoder.weights_fingerprint() == encoder.weights_fingerprint()
    assert dvc.lm.weights_fingerprint() == lm.weights_fingerprint()
    assert dvc.zerota == ZeroTAConfig.from_dict(dvc.zerota.to_dict())  # its settings pass the strict schema


def test_cli_dense_caption_prints_activitynet_json_and_draws_a_timeline(models, clip, tmp_path, capsys):
    from helpers import run_cli

    dvc = DenseVideoCaptioner.build(*models, sampling={"fps": 2.0, "size": 64}, **FAST)
    folder = dvc.save_pretrained(tmp_path / "dvc")
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video")
    png = tmp_path / "timeline.png"
    argv = [
        "dense-caption",
        str(clip[0]),
        str(bad),
        "--model",
        str(folder),
        "--events",
        "2",
        "--json",
        "--timeline",
        str(png),
    ]
    assert run_cli(argv) == 1  # one of the two videos was skipped
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert set(doc) == {"version", "results", "external_data"}
    events = doc["results"]["00000"]
    assert events and all(set(e) >= {"sentence", "timestamp"} and len(e["timestamp"]) == 2 for e in events)
    assert "broken" in doc["external_data"]["errors"] and "broken.mp4" in captured.err
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("lookahead", [False, True])
def test_lookahead_lets_clip_judge_finished_captions_not_fragments(models, feats, monkeypatch, lookahead):
    """At the first token, CLIP sees one-token fragments without lookahead and whole captions with it."""
    encoder, lm = models
    config = ZeroTAConfig(events=2, max_new_tokens=10, lookahead=lookahead)
    zerota = ZeroTA(encoder, lm, config)
    moments = feats.features[:2]
    contexts = ZeroTAPrefix(encoder, lm, config)(moments)  # before the spy: it embeds the vocabulary
    seen: list[list[str]] = []
    original = encoder.encode_text
    monkeypatch.setattr(encoder, "encode_text", lambda texts: seen.append(list(texts)) or original(texts))
    captions = zerota.guided_decode(contexts, moments)
    assert len(captions) == 2 and len(seen) >= 1
    median_words = sorted(len(t.split()) for t in seen[0])[len(seen[0]) // 2]
    assert (median_words >= 3) if lookahead else (median_words <= 1), seen[0]


def test_each_extra_rollout_gives_clip_one_more_ending_per_proposal(models, feats, monkeypatch):
    encoder, lm = models
    moments = feats.features[:2]
    counts = {}
    original = encoder.encode_text
    for rollouts in (1, 3):
        config = ZeroTAConfig(
            events=2,
            max_new_tokens=6,
            lookahead=True,
            lookahead_rollouts=rollouts,
            text_cache=False,
            guided_min_prob=0.0,  # every proposal judged, even where the LM is sure
        )
        contexts = ZeroTAPrefix(encoder, lm, config)(moments)  # before the spy: it embeds the vocabulary
        seen: list[int] = []
        monkeypatch.setattr(
            encoder, "encode_text", lambda texts, seen=seen: seen.append(len(texts)) or original(texts)
        )
        ZeroTA(encoder, lm, config).guided_decode(contexts, moments)
        counts[rollouts] = seen[0]
    assert counts[3] == 3 * counts[1] == 3 * 2 * ZeroTAConfig().guided_top_k


def test_projection_is_fitted_once_per_pair_of_weights(models, monkeypatch):
    from mmgpt2.apps.video.zerota import prefix as prefix_mod

    encoder, lm = models
    fits = []
    original = prefix_mod.vocabulary_projection
    monkeypatch.setattr(prefix_mod, "vocabulary_projection", lambda *a: fits.append(a[2:]) or original(*a))
    cache = prefix_mod.ProjectionCache()
    first = cache.get(encoder, lm, 500, 0.05)
    assert cache.get(encoder, lm, 500, 0.05) is not None and len(fits) == 1
    # Same spec, different weights: a retrained model must not reuse the old projection.
    monkeypatch.setattr(type(lm), "weights_fingerprint", lambda self: "retrained")
    second = cache.get(encoder, lm, 500, 0.05)
    assert len(fits) == 2 and len(cache) == 2 and torch.equal(first.weight, second.weight)


def test_masked_nll_is_the_lm_loss_of_each_caption(models):
    from mmgpt2.apps.video.zerota.scoring import masked_nll

    _, lm = models
    prefix = torch.randn(2, 3, lm.hidden_size)
    texts = ["a red circle", "a small blue square above a green triangle"]
    batch = lm.build_inputs(prefix, None, lm.tokenize(texts, add_eos=True))
    labels = batch.pop("labels")
    with torch.no_grad():
        nll = masked_nll(lm(**batch), labels)
        each = [lm.loss(prefix[i : i + 1], [t]) for i, t in enumerate(texts)]
    assert torch.allclose(nll, torch.stack(each), atol=1e-5)


def test_zerota_config_is_strict_and_bounded():
    from mmgpt2.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown key 'evnts'"):
        ZeroTAConfig.from_dict({"evnts": 3})
    with pytest.raises(ConfigError, match="max_new_tokens=0: must be >= 1"):
        ZeroTAConfig.from_dict({"max_new_tokens": 0})
    with pytest.raises(ConfigError, match="sharpness"):
        ZeroTAConfig.from_dict({"sharpness": [15.0]})
    assert ZeroTAConfig.from_dict({"sharpness": [10, 90]}).sharpness == (10, 90)


def test_shared_rollouts_write_what_separate_decoding_writes(models, feats):
    """Greedy lookahead from the proposing pass's KV cache equals decoding each rollout afresh."""
    encoder, lm = models
    moments = feats.features[[1, 8]]
    captions = {}
    for shared in (False, True):
        config = ZeroTAConfig(events=2, max_new_tokens=8, lookahead_rollouts=1, shared_rollouts=shared)
        contexts = ZeroTAPrefix(encoder, lm, config)(moments)
        captions[shared] = ZeroTA(encoder, lm, config).guided_decode(contexts, moments)
    assert captions[True] == captions[False] and all(captions[True])


def test_optimisation_stops_once_captions_and_segments_settle():
    from mmgpt2.apps.video.zerota.optimise import _Settling

    settling = _Settling(patience=2)
    seg = torch.tensor([[0.0, 0.5], [0.5, 1.0]])
    assert not settling.update(["a", "b"], seg)  # nothing to compare with yet
    assert not settling.update(["a", "b"], seg + 0.005)  # calm once
    assert not settling.update(["a", "c"], seg)  # a caption changed: start again
    assert not settling.update(["a", "c"], seg + 0.05)  # a segment moved
    assert not settling.update(["a", "c"], seg + 0.05)
    assert settling.update(["a", "c"], seg + 0.05)  # calm twice in a row


def test_zerocap_style_baseline_writes_a_caption_after_its_prompt(models, feats):
    from mmgpt2.lm.zerocap import ZeroCapSettings, zerocap_caption

    encoder, lm = models
    settings = ZeroCapSettings(steps_per_token=1, max_tokens=4, top_k=16)
    text = zerocap_caption(encoder, lm, feats.features[:4].mean(0), settings)
    assert text.startswith("a picture of") and 4 <= len(text.split()) <= 3 + 4


@pytest.mark.parametrize("n", [1, 2])
def test_each_events_best_candidates_are_refined_together(models, feats, monkeypatch, n):
    """`refine_candidates` = n: one refine batch holds each event's n best distinct candidates."""
    encoder, lm = models
    zerota = ZeroTA(encoder, lm, ZeroTAConfig(**FAST, events=2, refine_candidates=n))
    seen: list[tuple[int, list[str]]] = []
    original = zerota.writer.refine

    def spy(contexts, moments, texts):
        seen.append((contexts.shape[0], list(texts)))
        return original(contexts, moments, texts)

    monkeypatch.setattr(zerota.writer, "refine", spy)
    zerota.run(feats.features, feats.times, feats.duration)
    assert len(seen) == 1
    rows, texts = seen[0]
    assert rows == len(texts) == 2 * n
    assert all(len(set(texts[i * n : (i + 1) * n])) == n for i in range(2))
