"""`MedicalExplainer`: prompt, loss masking, KG use and fallbacks, save/load, odd inputs."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import helpers
import pytest
import torch
from helpers import TinyEncoder
from PIL import Image

from mmgpt2.apps.medical import KG_INTRO, KnowledgeGraph, MedicalExplainer, build_prompt
from mmgpt2.lm import FrozenLM
from mmgpt2.lm.frozen_lm import IGNORE_INDEX
from mmgpt2.worlds import chest


def tiny_lm() -> FrozenLM:
    return helpers.tiny_lm(tokenizer="fallback", n_layer=1, n_positions=1024, initializer_range=0.02)


TRIPLETS = [
    {
        "head": "left pleural effusion",
        "relation": "suggestive_of",
        "tail": "pleural effusion",
        "source_id": "a",
    },
    {"head": "right lobe opacity", "relation": "suggestive_of", "tail": "pneumonia", "source_id": "b"},
]


@pytest.fixture(scope="module")
def parts():
    return TinyEncoder(text=True, spec="test:tiny-text-image"), tiny_lm()


@pytest.fixture
def model(parts):
    enc, lm = parts
    kg = KnowledgeGraph.from_triplets(TRIPLETS, enc, progress=False)
    return MedicalExplainer.build(
        enc, lm, prefix_length=3, num_layers=1, num_heads=2, kg=kg, kg_k=2, generation={"max_new_tokens": 4}
    )


def gray_xray(seed: int = 0) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray((torch.rand(48, 48, generator=g) * 255).byte().numpy(), "L")


def test_prompt_lists_triplets_then_asks_about_the_diagnosis():
    p = build_prompt(["a suggestive of b", "c suggestive of d"], "Pleural Effusion")
    assert p == (
        f"{KG_INTRO} a suggestive of b; c suggestive of d. "
        "Question: why does this chest x-ray suggest pleural effusion? Answer:"
    )
    assert KG_INTRO not in build_prompt([], "Edema")


def test_loss_covers_only_explanation_tokens(model):
    lm = model.lm
    prompt = build_prompt(["left pleural effusion suggestive of pleural effusion"], "Pleural Effusion")
    expl = " fluid at the left base"
    prompt_ids, target_ids = lm.tokenize([prompt]), lm.tokenize([expl], add_eos=True)
    prefix = model.prefix(torch.randn(1, 16), torch.randn(1, 16, 12))
    labels = lm.build_inputs(prefix, prompt_ids, target_ids)["labels"][0]
    k, p = prefix.shape[1], len(prompt_ids[0])
    assert (labels[: k + p] == IGNORE_INDEX).all()
    assert labels[k + p :].tolist() == target_ids[0]
    # and the training loss is exactly the NLL of those tokens: changing the prompt text moves it,
    # but a batch that only differs in explanation length is still a finite mean over targets.
    batch = {
        "pooled": torch.randn(2, 16),
        "tokens": torch.randn(2, 16, 12),
        "prompts": [prompt, prompt],
        "explanations": ["fluid at the left base", "fluid"],
    }
    loss = model.training_loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.mapper.queries.grad is not None
    assert all(p.grad is None for p in model.lm.parameters())


def test_explain_returns_explanation_and_scored_triplets(model):
    out = model.explain([gray_xray()], diagnosis="Pleural Effusion")
    pooled, tokens = model.encode_images([gray_xray()])
    assert out == model.explain_features(pooled, tokens, ["Pleural Effusion"])
    assert out[0]["diagnosis"] == "Pleural Effusion"
    assert len(out[0]["triplets"]) == 2
    assert set(out[0]["triplets"][0]) == {"head", "relation", "tail", "score"}
    assert out[0]["triplets"][0]["score"] >= out[0]["triplets"][1]["score"]


def test_no_kg_flag_uses_no_triplets(model):
    assert model.explain([gray_xray()], use_kg=False)[0]["triplets"] == []


def test_empty_kg_falls_back_to_no_kg_with_a_warning(model, parts):
    empty = KnowledgeGraph.from_triplets([], parts[0], progress=False)
    with pytest.warns(UserWarning, match="knowledge graph is empty"):
        out = model.explain([gray_xray()], diagnosis="Edema", kg=empty)
    assert out[0]["triplets"] == []
    assert (
        out[0]["explanation"]
        == model.explain([gray_xray()], diagnosis="Edema", use_kg=False)[0]["explanation"]
    )


def test_a_colour_photo_still_gets_an_explanation(model):
    photo = Image.new("RGB", (120, 80), (30, 160, 40))
    photo.paste((220, 40, 40), (10, 10, 60, 60))
    out = model.explain([photo, gray_xray(1)], diagnosis=["Pneumonia", None])
    assert [o["diagnosis"] for o in out] == ["Pneumonia", None]
    # each image is explained as it would be alone: the photo neither fails nor disturbs its batch
    alone = [model.explain([photo], diagnosis="Pneumonia")[0], model.explain([gray_xray(1)])[0]]
    assert [o["explanation"] for o in out] == [a["explanation"] for a in alone]
    assert [[t["head"] for t in o["triplets"]] for o in out] == [
        [t["head"] for t in a["triplets"]] for a in alone
    ]


def test_save_load_round_trip_keeps_weights_config_and_kg(model, parts, tmp_path):
    folder = model.save_pretrained(tmp_path / "expl")
    assert (folder / "kg" / "index.faiss").is_file()
    back = MedicalExplainer.from_pretrained(folder, encoder=parts[0], lm=parts[1])
    assert back.mapper.config == model.mapper.config and back.kg_k == 2
    for k, v in model.trainable_state_dict().items():
        assert torch.equal(v, back.trainable_state_dict()[k]), k
    assert len(back.kg) == 2
    img = [gray_xray(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert back.explain(img, diagnosis="Edema") == model.explain(img, diagnosis="Edema")


def test_lead_eos_puts_the_eos_embedding_before_the_prefix_and_survives_save_load(parts, tmp_path):
    enc, lm = parts
    m = MedicalExplainer.build(enc, lm, prefix_length=3, num_layers=1, num_heads=2, lead_eos=True)
    pooled, tokens = m.encode_images([gray_xray(), gray_xray(1)])
    prefix = m.prefix(pooled, tokens)
    eos = lm.embed(torch.tensor([lm.eos_token_id]))[0]
    assert prefix.shape == (2, 4, lm.hidden_size)
    assert torch.equal(prefix[:, 0], eos.expand(2, -1)) and torch.equal(
        prefix[:, 1:], m.mapper(pooled, tokens)
    )
    m.explain([gray_xray()], diagnosis="Edema")  # generation takes the longer prefix too
    back = MedicalExplainer.from_pretrained(m.save_pretrained(tmp_path / "e"), encoder=enc, lm=lm)
    assert back.lead_eos is True
    plain = MedicalExplainer.build(enc, lm, prefix_length=3, num_layers=1, num_heads=2)
    assert plain.lead_eos is False and plain.prefix(pooled, tokens).shape[1] == 3


def test_frozen_parts_are_not_saved(model):
    assert not any(k.startswith(("encoder.", "lm.")) for k in model.trainable_state_dict())


def test_projector_width_mismatch_is_explained(parts):
    enc, lm = parts
    m = MedicalExplainer.build(enc, lm, prefix_length=2, num_layers=1, num_heads=2)
    enc.embed_dim = 99
    try:
        with pytest.raises(ValueError, match="expects 16-d features"):
            MedicalExplainer(enc, lm, m.mapper)
    finally:
        enc.embed_dim = 16


def test_chest_world_writes_records_and_grayscale_images_deterministically(tmp_path):
    import numpy as np

    from mmgpt2.worlds import WORLDS

    path = WORLDS["chest"].write(tmp_path / "a", n=6, seed=3)
    chest.write(tmp_path / "b", n=6, seed=3)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert path.name == "records.jsonl" and len(rows) == 6
    assert (tmp_path / "b" / "records.jsonl").read_text() == path.read_text()
    for r in rows:
        assert {"image", "diagnosis", "findings", "explanation"} <= set(r)
        im = Image.open(tmp_path / "a" / r["image"])
        assert im.mode == "L"
        for t in r["triplets"]:
            assert (
                t["relation"] == "suggestive_of"
                and t["head"] in r["findings"]
                and t["tail"] == r["diagnosis"].lower()
            )

    # findings look different: an effusion brightens its lung base, an enlarged heart widens the centre
    def mean_box(case, box):
        return np.asarray(chest.render_case(case, random.Random(0)), np.float32)[
            box[1] : box[3], box[0] : box[2]
        ].mean()

    normal = chest.ChestCase(None)
    base = (60, 70, 80, 80)  # the left lung base (image right)
    assert mean_box(chest.ChestCase("effusion", "left", None, "large"), base) > mean_box(normal, base) + 30
    heart = (70, 55, 78, 75)
    assert (
        mean_box(chest.ChestCase("cardiomegaly", None, None, "large"), heart) > mean_box(normal, heart) + 30
    )


@pytest.mark.slow
def test_chest_recipe_quick_mode_runs_every_stage_without_touching_the_shipped_models(tmp_path):
    root = Path(__file__).resolve().parents[1]
    shipped = root / "assets" / "models" / "chest-tiny" / "model.safetensors"
    before = shipped.stat().st_mtime_ns
    proc = subprocess.run(
        [sys.executable, str(root / "recipes" / "build_chest.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "MMGPT2_QUIET": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for stage in ("chest-gpt2", "chest-clip", "chest-tiny", "chest-tiny-nokg", "unseen-kg", "unseen-nokg"):
        assert f"[done] {stage} in" in proc.stdout, proc.stdout
    built = tmp_path / "build" / "chest-quick" / "assets" / "models" / "chest-tiny"
    assert (
        json.loads((built / "config.json").read_text())["lead_eos"] is True
        and (built / "kg" / "index.faiss").is_file()
    )
    assert (tmp_path / "build" / "chest" / "unseen-kg" / "kg").is_dir() and not (
        tmp_path / "build" / "chest" / "unseen-nokg" / "kg"
    ).exists()
    assert shipped.stat().st_mtime_ns == before


@pytest.mark.parametrize("question", ["diagnosis", "open"])
@pytest.mark.assets
def test_shipped_chest_tiny_names_the_finding_of_fresh_images(question):
    model = MedicalExplainer.from_pretrained("chest-tiny")
    rng = random.Random(31337)
    cases = [c for c in (chest.sample_case(rng) for _ in range(40)) if c.kind][:30]
    images = [chest.render_case(c, rng).convert("RGB") for c in cases]
    out = model.explain(images, diagnosis=[c.diagnosis for c in cases] if question == "diagnosis" else None)
    named = [c.finding in o["explanation"] for c, o in zip(cases, out)]
    assert sum(named) / len(cases) >= 0.8, [(c.finding, o["explanation"]) for c, o in zip(cases, out)][:5]
