"""Retrieval-augmented, text-only and training-free captioning on the embedded shapes models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgpt2.apps.captioning.datastore import CaptionDatastore, DatastoreError
from mmgpt2.apps.captioning.retrieval import RetrievalCaptionDataset, RetrievalCaptioner
from mmgpt2.apps.captioning.text_only import TextOnlyCaptioner
from mmgpt2.apps.captioning.zero_shot import ZeroShotCaptioner
from mmgpt2.cli.main import main
from mmgpt2.data import extract_features, read_jsonl
from mmgpt2.pipeline import load_pipeline
from mmgpt2.worlds import shapes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def parts():
    torch.set_num_threads(1)
    cap = RetrievalCaptioner.build(
        "embedded:shapes-clip", "embedded:shapes-gpt2", mapper="mlp", prefix_length=4, hidden_dim=32
    )
    return cap.encoder, cap.lm


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Six scenes in the shapes world's real layout (PNGs + captions.jsonl with objects)."""
    return shapes.write(tmp_path_factory.mktemp("shapes"), n=6, seed=11)


def test_datastore_builds_saves_loads_and_answers_the_same(world, parts, tmp_path):
    enc, _ = parts
    store = CaptionDatastore.from_jsonl(world, enc, progress=False)
    lines = [json.loads(x) for x in world.read_text().splitlines()]
    # every paraphrase of every scene, merged by text, sourced by the image as the file names it
    assert set(store.texts) == {c for line in lines for c in line["captions"]}
    assert {s for sources in store.store.source_ids for s in sources} == {line["image"] for line in lines}
    back = CaptionDatastore.load(store.save(tmp_path / "ds"))
    assert back.texts == store.texts and back.encoder_spec == "embedded:shapes-clip"
    query = enc.encode_text([lines[0]["captions"][0]])
    assert back.query(query, k=3) == store.query(query, k=3)
    assert back.query(query, k=1) == [[lines[0]["captions"][0]]]  # a caption retrieves itself first


def test_datastore_folder_errors_name_the_folder_and_the_fix(world, parts, tmp_path):
    folder = CaptionDatastore.from_jsonl(world, parts[0], progress=False).save(tmp_path / "ds")
    (folder / "captions.jsonl").write_text('{"text": "a red circle", "source_ids": []}\n')
    with pytest.raises(DatastoreError, match="index holds") as err:
        CaptionDatastore.load(folder)
    assert str(folder) in str(err.value)
    with pytest.raises(DatastoreError, match="mmgpt2 datastore build"):
        CaptionDatastore.load(tmp_path / "missing")


def test_training_never_retrieves_the_querys_own_captions(world, parts):
    enc, _ = parts
    records = read_jsonl(world)
    store = extract_features([r.image for r in records], enc, world.parent / "feats", progress=False)
    datastore = CaptionDatastore.from_records(records, enc, root=world.parent, progress=False)
    dataset = RetrievalCaptionDataset(records, store, datastore, k=4, root=world.parent)
    own = {r.image: set(r.captions) for r in records}
    others = {r.image: {c for o in records if o.image != r.image for c in o.captions} for r in records}
    for i in range(len(dataset)):
        image = dataset.items[i][0]
        retrieved = dataset[i]["retrieved"]
        assert len(retrieved) == 4
        # a caption only this image has is never retrieved; one another image shares may be
        assert not (set(retrieved) & (own[image] - others[image]))
    # without the exclusion, an image's nearest caption is its own
    pooled = store.pooled(records[0].image)[None]
    assert datastore.query(pooled, k=1)[0][0] in own[records[0].image]


def test_prompt_puts_the_best_caption_last_within_the_token_budget(parts):
    enc, lm = parts
    cap = RetrievalCaptioner.build(enc, lm, mapper="mlp", prefix_length=4, hidden_dim=32, prompt_tokens=20)
    hits = [
        "a large red circle at the top",
        "a small blue square on the left",
        "a large green cross in the center",
    ]
    ids = cap.prompt_ids([hits])[0]
    assert len(ids) <= 20 and ids[-1] == lm.eos_token_id
    pieces = lm.decode(ids), [lm.decode(lm.tokenize([h])[0]) for h in hits]
    assert pieces[0].endswith(pieces[1][0]) and pieces[1][2] not in pieces[0]  # best last, third did not fit
    assert cap.prompt_ids([[]]) == [[lm.eos_token_id]]


def test_datastore_swaps_without_retraining_and_round_trips(world, parts, tmp_path):
    enc, lm = parts
    red = CaptionDatastore.from_captions(["a large red circle at the top"], ["x"], enc, progress=False)
    blue = CaptionDatastore.from_captions(["a small blue cross on the left"], ["y"], enc, progress=False)
    cap = RetrievalCaptioner.build(enc, lm, mapper="mlp", prefix_length=4, hidden_dim=32, datastore=red)
    pooled = torch.randn(2, enc.embed_dim)
    assert cap.retrieve(pooled) == [["a large red circle at the top"]] * 2
    weights = {k: v.clone() for k, v in cap.trainable_state_dict().items()}
    cap.use_datastore(blue.save(tmp_path / "blue"))
    assert cap.retrieve(pooled) == [["a small blue cross on the left"]] * 2
    assert all(torch.equal(v, cap.trainable_state_dict()[k]) for k, v in weights.items())
    assert cap.retrieve(pooled, datastore=red) == [["a large red circle at the top"]] * 2
    folder = cap.save_pretrained(tmp_path / "model")
    loaded = load_pipeline(folder)
    assert isinstance(loaded, RetrievalCaptioner) and loaded.datastore.texts == blue.texts
    image = str(world.parent / "00000.png")
    assert len(loaded.caption(image, max_new_tokens=4)) == 1
    assert (
        main(
            [
                "caption",
                image,
                "--model",
                str(folder),
                "--datastore",
                str(tmp_path / "blue"),
                "--max-new-tokens",
                "3",
            ]
        )
        == 0
    )


def test_datastore_cli_builds_a_folder_the_captioner_reads(world, tmp_path, capsys):
    out = tmp_path / "ds"
    assert (
        main(["datastore", "build", str(world), "--encoder", "embedded:shapes-clip", "--out", str(out)]) == 0
    )
    assert "distinct captions" in capsys.readouterr().out
    assert len(CaptionDatastore.load(out)) == len({c for r in read_jsonl(world) for c in r.captions})
    assert (
        main(["caption", str(world.parent / "00000.png"), "--model", "shapes-tiny", "--datastore", str(out)])
        != 0
    )
    assert "does not retrieve captions" in capsys.readouterr().err


def test_text_only_training_never_opens_an_image(world, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("text-only training opened an image")

    monkeypatch.setattr("mmgpt2.images.load_image", refuse)
    monkeypatch.setattr("PIL.Image.open", refuse)
    # the images need not even exist
    for png in world.parent.glob("*.png"):
        png.rename(png.with_suffix(".gone"))
    try:
        args = ["train-captioner", "--text-only", "--train", str(world), "--out", str(tmp_path / "run")]
        args += [
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--warmup-steps",
            "1",
            "--prefix-length",
            "2",
            "--hidden-dim",
            "16",
        ]
        assert main(args) == 0
    finally:
        for gone in world.parent.glob("*.gone"):
            gone.rename(gone.with_suffix(".png"))
    monkeypatch.undo()
    model = load_pipeline(tmp_path / "run" / "final")
    assert isinstance(model, TextOnlyCaptioner) and model.app_config().noise_variance == 0.016
    image = str(world.parent / "00000.png")
    assert len(model.caption(image, max_new_tokens=3)) == 1
    assert len(model.caption(image, max_new_tokens=3, projection="decap")) == 1


def test_decap_projection_is_a_mix_of_the_memory(parts):
    enc, lm = parts
    cap = TextOnlyCaptioner.build(enc, lm, mapper="mlp", prefix_length=2, hidden_dim=16)
    texts = ["a large red circle at the top", "a small blue cross on the left"]
    cap.set_memory(texts)
    text = torch.nn.functional.normalize(enc.encode_text(texts[:1]).float(), dim=-1)
    # a caption's own text embedding projects (almost) onto itself: T = 0.01 is a near-hard choice
    assert torch.allclose(cap.project(text, "decap"), text, atol=0.05)
    image = torch.randn(3, enc.embed_dim)
    projected = cap.project(image, "decap")
    assert torch.allclose(projected.norm(dim=-1), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match="projection"):
        cap.project(image, "pca")


def test_zero_shot_captions_with_no_mapper_weights(world, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("zero-shot captioning read trained weights")

    monkeypatch.setattr("mmgpt2.pipeline.load_weights", refuse)
    cap = ZeroShotCaptioner.from_parts_of("shapes-tiny", top_k=3, lookahead_rollouts=1, max_new_tokens=6)
    assert not any(p.requires_grad for p in cap.parameters())
    caption = cap.caption(str(world.parent / "00000.png"))[0]
    assert caption and caption.split()[0] in {w for c in shapes.caption_corpus(50, 0) for w in c.split()}
    folder = cap.save_pretrained(tmp_path / "zs")
    assert not (folder / "model.safetensors").exists()
    assert load_pipeline(folder).guided.top_k == 3
    monkeypatch.undo()
    assert (
        main(
            [
                "caption",
                str(world.parent / "00000.png"),
                "--zero-shot",
                "--max-new-tokens",
                "3",
                "--top-k",
                "2",
            ]
        )
        == 0
    )


def test_shipped_knowledge_graph_answers_as_its_faiss_index_does():
    """The KG moved onto the shared TextIndex; the shipped chest-tiny/kg must answer as before."""
    import faiss

    from mmgpt2.apps.medical.kg import KnowledgeGraph

    folder = ROOT / "assets" / "models" / "chest-tiny" / "kg"
    kg = KnowledgeGraph.load(folder)
    index = faiss.read_index(str(folder / "index.faiss"))
    queries = np.random.default_rng(0).standard_normal((5, kg.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    _, rows = index.search(queries, 7)
    expected = [[kg.triplets[r].text for r in row] for row in rows]
    assert [[h["text"] for h in hits] for hits in kg.query(queries, k=7)] == expected


def test_recipe_smoke_mode_trains_every_stage_without_touching_the_shipped_models():
    import os
    import subprocess
    import sys

    shipped = [
        ROOT / "assets" / "models" / n / "model.safetensors"
        for n in ("shapes-tiny-rag", "shapes-tiny-textonly")
    ]
    before = [p.stat().st_mtime_ns for p in shipped]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "build_beyond.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MMGPT2_QUIET": "1"},
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for marker in ("data:", "shapes-tiny-rag:", "shapes-tiny-split:", "shapes-tiny-textonly:"):
        assert marker in proc.stdout, proc.stdout
    assert [p.stat().st_mtime_ns for p in shipped] == before
