"""The knowledge-graph datastore: build, save/load, query, exclusion, privacy, bad folders."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from mmgpt2.apps.medical import KGError, KnowledgeGraph, PatternExtractor, Triplet
from mmgpt2.encoders import VisionEncoder


class HashTextEncoder(VisionEncoder):
    """Text -> a fixed pseudo-random unit vector per word, summed: similar texts, similar vectors.

    Images: the mean pixel row selects a word, so a test can make an image "look like" a text.
    """

    def __init__(self, dim: int = 32):
        super().__init__()
        self.spec, self.embed_dim, self.token_dim = "test:hash-text", dim, dim
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.freeze()

    def word(self, w: str) -> torch.Tensor:
        seed = int(hashlib.sha1(w.encode()).hexdigest()[:8], 16)
        return torch.randn(self.embed_dim, generator=torch.Generator().manual_seed(seed))

    def _encode_text(self, texts):
        return torch.stack([sum(self.word(w) for w in t.split()) for t in texts])


ROWS = [
    {
        "head": "left pleural effusion",
        "relation": "suggestive_of",
        "tail": "heart failure",
        "source_id": "s1",
    },
    {
        "head": "left pleural effusion",
        "relation": "suggestive_of",
        "tail": "heart failure",
        "source_id": "s2",
    },
    {"head": "right upper lobe opacity", "relation": "suggestive_of", "tail": "pneumonia", "source_id": "s2"},
    {"head": "apical pneumothorax", "relation": "suggestive_of", "tail": "pneumothorax", "source_id": "s3"},
    {
        "head": "enlarged cardiac silhouette",
        "relation": "suggestive_of",
        "tail": "cardiomegaly",
        "source_id": "s4",
    },
]


@pytest.fixture
def enc():
    return HashTextEncoder()


@pytest.fixture
def kg(enc):
    return KnowledgeGraph.from_triplets(ROWS, enc, progress=False)


def test_identical_triplets_merge_and_keep_every_source(kg):
    assert len(kg) == 4
    effusion = next(t for t in kg.triplets if t.head == "left pleural effusion")
    assert effusion.source_ids == ["s1", "s2"]


def test_query_ranks_the_matching_triplet_first(kg, enc):
    q = enc.encode_text(["apical pneumothorax suggestive of pneumothorax"])[0]
    hits = kg.query(q, k=3)
    assert hits[0]["head"] == "apical pneumothorax"
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert len(hits) == 3


def test_exclude_source_drops_triplets_found_only_in_that_study(kg, enc):
    q = enc.encode_text(["apical pneumothorax suggestive of pneumothorax"])[0]
    heads = [h["head"] for h in kg.query(q, k=4, exclude_source="s3")]
    assert "apical pneumothorax" not in heads and len(heads) == 3
    # s2's effusion triplet is also reported by s1, so excluding s2 keeps it; its opacity goes.
    heads = [h["head"] for h in kg.query(q, k=4, exclude_source="s2")]
    assert "left pleural effusion" in heads and "right upper lobe opacity" not in heads


def test_batch_query_takes_one_exclusion_per_row(kg, enc):
    q = enc.encode_text(["apical pneumothorax", "apical pneumothorax"])
    a, b = kg.query(q, k=1, exclude_source=[None, "s3"])
    assert a[0]["head"] == "apical pneumothorax" and b[0]["head"] != "apical pneumothorax"


def test_save_load_round_trip_gives_the_same_answers(kg, enc, tmp_path):
    kg.save(tmp_path / "kg")
    back = KnowledgeGraph.load(tmp_path / "kg")
    q = enc.encode_text(["left effusion heart failure", "lobe opacity"])
    assert back.query(q, k=4) == kg.query(q, k=4)
    assert back.encoder_spec == enc.spec and back.dim == enc.embed_dim


def test_saved_datastore_holds_only_triplets_no_pixels_no_report_text(enc, tmp_path):
    reports = {
        "s10": "There is a small left pleural effusion, suggestive of heart failure. Patient name John Smith, bed 12.",
        "s11": "Frontal view shows right upper lobe opacity, consistent with pneumonia. No pneumothorax.",
    }
    kg = KnowledgeGraph.from_reports(reports, enc, extractor=PatternExtractor(), progress=False)
    folder = kg.save(tmp_path / "kg")
    assert sorted(p.name for p in folder.iterdir()) == ["index.faiss", "kg.json", "triplets.jsonl"]
    blob = b"".join(p.read_bytes() for p in folder.iterdir())
    for leaked in (b"John Smith", b"bed 12", b"Frontal view", b"No pneumothorax", b"There is"):
        assert leaked not in blob
    rows = [json.loads(x) for x in (folder / "triplets.jsonl").read_text().splitlines()]
    assert {tuple(sorted(r)) for r in rows} == {("head", "relation", "source_ids", "tail")}
    assert {r["head"] for r in rows} == {"small left pleural effusion", "right upper lobe opacity"}
    # The index is exactly one text vector per triplet: no room for image data beside it.
    back = KnowledgeGraph.load(folder)
    assert back.index.ntotal == 2 and back.index.d == enc.embed_dim
    vectors = back.index.reconstruct_n(0, 2)
    expected = enc.encode_text([t.text for t in back.triplets]).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "index.faiss").write_bytes(b"not a faiss index"), "corrupt FAISS index"),
        (lambda f: (f / "kg.json").write_text("{broken"), "corrupt"),
        (lambda f: (f / "triplets.jsonl").unlink(), "missing triplets.jsonl"),
        (
            lambda f: (f / "triplets.jsonl").write_text('{"head": "x", "relation": "r", "tail": "y"}\n'),
            "index holds 4 vectors",
        ),
        (lambda f: (f / "triplets.jsonl").write_text("garbage\n"), "not valid JSON"),
    ],
)
def test_corrupt_folder_gives_a_clear_error(kg, tmp_path, damage, message):
    folder = kg.save(tmp_path / "kg")
    damage(folder)
    with pytest.raises(KGError, match=message) as err:
        KnowledgeGraph.load(folder)
    assert str(folder) in str(err.value)


def test_missing_folder_says_how_to_build_one(tmp_path):
    with pytest.raises(KGError, match="mmgpt2 kg build"):
        KnowledgeGraph.load(tmp_path / "nope")


def test_empty_graph_answers_nothing_and_round_trips(enc, tmp_path):
    kg = KnowledgeGraph.from_triplets([], enc, progress=False)
    assert len(kg) == 0 and kg.query(torch.randn(enc.embed_dim), k=7) == []
    back = KnowledgeGraph.load(kg.save(tmp_path / "empty"))
    assert len(back) == 0 and back.query(torch.randn(2, enc.embed_dim), k=7) == [[], []]


def test_query_with_wrong_width_names_the_encoder(kg):
    with pytest.raises(KGError, match="test:hash-text"):
        kg.query(torch.randn(7), k=3)


def test_bad_triplet_rows_are_rejected_with_their_number(enc):
    with pytest.raises(KGError, match="triplet 1"):
        KnowledgeGraph.from_triplets([ROWS[0], {"head": "x", "tail": "y"}], enc, progress=False)


def test_pattern_extractor_skips_negated_sentences():
    ex = PatternExtractor()
    assert ex("No pleural effusion suggestive of heart failure. No evidence of pneumothorax.") == []
    assert ex("The radiograph demonstrates patchy opacity in keeping with atelectasis.") == [
        ("patchy opacity", "suggestive_of", "atelectasis")
    ]


def _clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim)).astype(np.float32)
    return centres[rng.integers(0, 50, n)] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)


def test_ivf_index_finds_the_same_neighbours_as_exact_search_and_round_trips(tmp_path):
    vectors = _clustered(4000)
    triplets = [Triplet(f"h{i}", "suggestive_of", f"t{i}", [f"s{i}"]) for i in range(len(vectors))]
    exact = KnowledgeGraph(triplets, vectors, "random", index="flat")
    ivf = KnowledgeGraph(triplets, vectors, "random", index="ivf")
    assert (exact.index_kind, ivf.index_kind) == ("flat", "ivf")
    queries = _clustered(20, seed=1)
    overlap = [
        len({h["head"] for h in a} & {h["head"] for h in b}) / 7
        for a, b in zip(exact.query(queries, k=7), ivf.query(queries, k=7))
    ]
    assert np.mean(overlap) >= 0.9
    ivf.save(tmp_path / "kg")
    assert json.loads((tmp_path / "kg" / "kg.json").read_text())["index"] == "ivf"
    loaded = KnowledgeGraph.load(tmp_path / "kg")
    assert loaded.index_kind == "ivf" and loaded.index.nprobe == ivf.index.nprobe
    assert loaded.query(queries[0], k=7) == ivf.query(queries[0], k=7)


def test_auto_index_is_exact_for_small_graphs_and_bad_kind_is_named():
    vectors = _clustered(100)
    triplets = [Triplet(f"h{i}", "r", f"t{i}") for i in range(100)]
    assert KnowledgeGraph(triplets, vectors, "random").index_kind == "flat"
    with pytest.raises(KGError, match="index='hnsw'"):
        KnowledgeGraph(triplets, vectors, "random", index="hnsw")
