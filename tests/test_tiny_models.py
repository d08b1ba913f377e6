"""The embedded tiny models: trainers round-trip, shipped models load offline and caption correctly."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import tiny_models  # recipes/tiny_models.py: build tooling, not in the wheel
import torch
from transformers import AutoTokenizer

from mmgpt2.worlds import shapes

ROOT = Path(__file__).resolve().parents[1]


def test_tokenizer_round_trips_and_reloads_with_autotokenizer(tmp_path):
    from transformers import AutoTokenizer

    texts = shapes.caption_corpus(50, seed=0)
    tiny_models.train_tokenizer(texts, vocab_size=300, out_dir=tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert tok.eos_token == tiny_models.EOS
    ids = tok.encode(texts[0], add_special_tokens=False)
    assert tok.decode(ids) == texts[0]
    assert len(ids) < len(texts[0].split()) * 3  # merges learned: words are not spelled byte by byte


def test_tokenizer_rejects_a_vocab_smaller_than_the_byte_alphabet(tmp_path):
    with pytest.raises(ValueError, match="vocab_size=100"):
        tiny_models.train_tokenizer(["a red circle"], vocab_size=100, out_dir=tmp_path / "tok")


def test_embedded_models_load_offline(monkeypatch):
    from mmgpt2.encoders import load_encoder
    from mmgpt2.lm import load_lm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = load_encoder("embedded:shapes-clip")
    lm = load_lm("embedded:shapes-gpt2")
    image = shapes.render(shapes.make_scene(random.Random(0)))
    pooled, tokens = enc.encode_image(enc.preprocess_batch([image]), return_tokens=True)
    assert pooled.shape == (1, enc.embed_dim) and tokens.shape[-1] == enc.token_dim
    assert enc.encode_text(["a small red circle at the top"]).shape == (1, enc.embed_dim)
    assert lm.dtype == torch.float32 and lm.eos_token_id == lm.tokenizer.eos_token_id
    for folder in ("shapes-clip", "shapes-gpt2"):
        assert tiny_models.folder_size_mb(ROOT / "assets" / "models" / folder) < 12


@pytest.mark.assets
def test_shipped_clip_retrieves_exact_one_object_captions():
    # Chance is 1 in 240 candidates; the shipped model retrieves 100% of 300 held-out scenes.
    rng = random.Random(10_001)
    scenes = [shapes.make_scene(rng, n_objects=1) for _ in range(40)]
    truth = [shapes.captions(s)[0] for s in scenes]
    candidates = shapes.canonical_captions(1)
    acc = tiny_models.clip_retrieval_accuracy(
        ROOT / "assets" / "models" / "shapes-clip", [shapes.render(s) for s in scenes], truth, candidates
    )
    assert acc >= 0.95


@pytest.mark.assets
def test_shipped_tiny_gpt2_writes_world_sentences():
    from mmgpt2.lm import load_lm

    lm = load_lm("embedded:shapes-gpt2")
    ids = torch.tensor([[lm.eos_token_id]])
    out = lm.model.generate(
        ids, max_new_tokens=20, do_sample=False, eos_token_id=lm.eos_token_id, pad_token_id=lm.eos_token_id
    )
    text = lm.decode(out[0].tolist())
    assert any(s in text for s in shapes.SHAPES) and any(c in text for c in shapes.COLORS), text


def test_prefix_slot_pretraining_runs_and_saves_a_loadable_model(tmp_path):
    from mmgpt2.lm import load_lm

    texts = shapes.caption_corpus(40, seed=0)
    tiny_models.train_tokenizer(texts, vocab_size=300, out_dir=tmp_path / "tok")
    out = tiny_models.train_tiny_gpt2(
        texts,
        tmp_path / "tok",
        tmp_path / "lm",
        n_layer=1,
        n_embd=32,
        n_head=2,
        steps=3,
        batch_size=4,
        prefix_slot=4,
        pairs=[(texts[0], texts[1])],
    )
    lm = load_lm(f"hf:{out}")
    # the folder holds the model that was asked for, with its own tokenizer, and it reads a prefix
    assert (lm.hidden_size, lm.model.config.n_layer) == (32, 1)
    assert lm.tokenize([texts[0]])[0] == AutoTokenizer.from_pretrained(tmp_path / "tok").encode(texts[0])
    assert torch.isfinite(lm.loss(torch.zeros(1, 4, 32, dtype=lm.dtype), [texts[0]]))


@pytest.mark.assets
def test_shipped_chest_gpt2_copies_the_top_triplet_behind_an_image_sized_prefix():
    """The frozen LM must read a retrieved triplet through whatever prefix comes first: before
    prefix-slot pretraining, 8 prefix vectors cut copying from 94% to 45%."""
    from mmgpt2.apps.medical.prompt import build_prompt
    from mmgpt2.lm import load_lm
    from mmgpt2.worlds import chest

    lm = load_lm("embedded:chest-gpt2")
    rng = random.Random(5)
    cases = [c for c in (chest.sample_case(rng) for _ in range(80)) if c.kind][:60]
    prompts = [build_prompt(chest.distractor_triplets(c, rng, 7, miss_rate=0), c.diagnosis) for c in cases]
    table = lm.model.get_input_embeddings().weight
    g = torch.Generator().manual_seed(0)
    eos = table[lm.eos_token_id].expand(len(cases), 1, -1)
    for name, prefix in (
        (
            "EOS + 8 random vectors",
            torch.cat([eos, torch.randn(len(cases), 8, lm.hidden_size, generator=g) * table.std()], 1),
        ),
        ("8 random token embeddings", table[torch.randint(0, len(table), (len(cases), 8), generator=g)]),
    ):
        with torch.no_grad():
            out = lm.generate(prefix.detach(), prompt=prompts, max_new_tokens=20)
        copied = sum(c.finding in o for c, o in zip(cases, out)) / len(cases)
        assert copied >= 0.9, (name, copied, out[:3])


@pytest.mark.assets
def test_shapes_tiny_captions_fresh_scenes_with_every_attribute_right():
    # A frozen LM that ignores its prefix writes one caption for every image (the first build did).
    from mmgpt2.apps.captioning.model import PrefixCaptioner

    cap = PrefixCaptioner.from_pretrained("shapes-tiny")
    rng = random.Random(20_002)  # never used by the recipe
    scenes = [shapes.make_scene(rng, n_objects=1) for _ in range(25)]
    preds = cap.caption([shapes.render(s) for s in scenes])
    exact = sum(shapes.attribute_accuracy(p, s) for p, s in zip(preds, scenes, strict=True)) / len(scenes)
    assert len(set(preds)) >= 15, preds
    assert exact >= 0.8, (exact, preds)


@pytest.mark.slow
def test_caption_cli_handles_natural_huge_and_grayscale_images(tmp_path, capsys):
    import numpy as np
    from PIL import Image
    from skimage import data

    from mmgpt2.cli.main import main

    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (4000, 3000, 3), dtype=np.uint8)).save(
        tmp_path / "huge.jpg"
    )
    Image.fromarray(data.camera()).save(tmp_path / "gray.png")  # mode "L"
    paths = [str(tmp_path / n) for n in ("astronaut.png", "huge.jpg", "gray.png")]
    assert main(["caption", *paths]) == 0
    out = capsys.readouterr().out
    assert all(Path(p).name in out for p in paths), out


@pytest.mark.slow
def test_recipe_smoke_mode_runs_every_stage_end_to_end():
    env = {**os.environ, "MMGPT2_QUIET": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "build_worlds.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for marker in (
        "shapes-clip:",
        "shapes-gpt2:",
        "captioner mlp:",
        "captioner transformer:",
        "shipped the",
        "examples:",
    ):
        assert marker in proc.stdout, proc.stdout
