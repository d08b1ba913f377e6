"""`mmgpt2 train-captioner --datastore`: retrieval-augmented training from the command line.

A module-wide shapes world (8 scenes in its real layout: PNGs + captions.jsonl), its feature cache
and a datastore of each scene's first caption (`mmgpt2 datastore build --first-only`, one caption
per image) keep every run to a few steps of the embedded models.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import error_line, run_cli
from safetensors.torch import load_file

from mmgpt2.apps.captioning.datastore import CaptionDatastore
from mmgpt2.apps.captioning.retrieval import RetrievalCaptionDataset, RetrievalCaptioner
from mmgpt2.data import FeatureStore, read_jsonl
from mmgpt2.pipeline import load_pipeline

SMALL = ["--mapper", "mlp", "--prefix-length", "4", "--hidden-dim", "32", "--batch-size", "4"]
SMALL += ["--lr", "1e-3", "--warmup-steps", "1", "--seed", "7"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("train_rag")
    captions = folder / "w" / "captions.jsonl"
    assert run_cli(["world", "shapes", "--n", "8", "--seed", "3", "--out", str(folder / "w")]) == 0
    encoder = ["--encoder", "embedded:shapes-clip"]
    assert run_cli(["extract-features", str(captions), *encoder, "--out", str(folder / "feats")]) == 0
    build = ["datastore", "build", str(captions), *encoder, "--first-only", "--out", str(folder / "ds")]
    assert run_cli(build) == 0
    return folder


def train_args(world: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train-captioner",
        "--train",
        str(world / "w" / "captions.jsonl"),
        "--features",
        str(world / "feats"),
        "--features-only-cached",
        "--out",
        str(out),
        *SMALL,
        *extra,
    ]


def first_captions(world: Path) -> dict[str, str]:
    """Image path -> its first caption: what the module's datastore holds for it."""
    return {r.image: r.captions[0] for r in read_jsonl(world / "w" / "captions.jsonl")}


def test_datastore_build_then_train_then_caption_with_the_kept_datastore(world, capsys, monkeypatch):
    out = world / "run-k2"
    assert (
        run_cli(train_args(world, out, "--datastore", str(world / "ds"), "--k", "2", "--max-steps", "3")) == 0
    )
    assert "8 of 8 training images have captions there" in capsys.readouterr().out
    final = out / "final"
    config = json.loads((final / "config.json").read_text())
    assert config["type"] == "retrieval_captioner" and config["k"] == 2
    model = load_pipeline(final)
    assert isinstance(model, RetrievalCaptioner)
    assert model.datastore.texts == CaptionDatastore.load(world / "ds").texts  # kept, no flag needed

    image = str(world / "w" / "00000.png")
    assert run_cli(["caption", image, "--model", str(final), "--max-new-tokens", "6"]) == 0
    path, caption = capsys.readouterr().out.strip().split("\t")
    assert path == image and caption.strip()

    # `caption --datastore OTHER` still swaps it: every retrieval then answers from OTHER.
    other = world / "other.jsonl"
    other.write_text(json.dumps({"image": "w/00001.png", "caption": "a tiny pink moon far away"}) + "\n")
    encoder = ["--encoder", "embedded:shapes-clip"]
    assert run_cli(["datastore", "build", str(other), *encoder, "--out", str(world / "ds-other")]) == 0
    seen: list[list[list[str]]] = []
    original = RetrievalCaptioner.retrieve

    def spy(self, *args, **kwargs):
        seen.append(original(self, *args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(RetrievalCaptioner, "retrieve", spy)
    command = ["caption", image, "--model", str(final), "--datastore", str(world / "ds-other")]
    assert run_cli([*command, "--max-new-tokens", "3"]) == 0
    assert seen == [[["a tiny pink moon far away"]]]


def test_cli_training_never_retrieves_an_images_own_captions(world, monkeypatch):
    datasets: list[RetrievalCaptionDataset] = []
    served: list[tuple[str, list[str]]] = []  # (image, retrieved) of every example training read
    init, getitem = RetrievalCaptionDataset.__init__, RetrievalCaptionDataset.__getitem__

    def spy_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        datasets.append(self)

    def spy_getitem(self, i):
        item = getitem(self, i)
        served.append((self.items[i][0], item["retrieved"]))
        return item

    monkeypatch.setattr(RetrievalCaptionDataset, "__init__", spy_init)
    monkeypatch.setattr(RetrievalCaptionDataset, "__getitem__", spy_getitem)
    # k = 7 of the datastore's 8 captions (one per image): each image must get exactly the others'.
    args = train_args(
        world, world / "run-own", "--datastore", str(world / "ds"), "--k", "7", "--max-steps", "2"
    )
    assert run_cli(args) == 0

    own = first_captions(world)
    assert len(set(own.values())) == 8 and len(datasets) == 1
    for image, caption in own.items():
        assert set(datasets[0].retrieved[image]) == set(own.values()) - {caption}
    assert len(served) >= 8 and all(caption not in own[image] for image, hits in served for caption in hits)
    # not vacuous: without the exclusion every image's nearest caption is its own
    store, datastore = FeatureStore(world / "feats"), CaptionDatastore.load(world / "ds")
    nearest = datastore.query(torch.stack([store.pooled(image) for image in own]), k=1)
    assert [hits[0] for hits in nearest] == list(own.values())


def test_a_crashed_retrieval_run_resumes_to_the_unbroken_weights_and_keeps_its_datastore(
    world, capsys, monkeypatch
):
    steps = ["--datastore", str(world / "ds"), "--max-steps", "5", "--save-every", "1"]
    assert run_cli(train_args(world, world / "unbroken", *steps)) == 0

    crashed = world / "crashed"
    getitem, calls = RetrievalCaptionDataset.__getitem__, []

    def crash_in_step_four(self, i):
        calls.append(i)
        if len(calls) > 13:  # batches of 4: mid-run, after a checkpoint or two (accelerate reads ahead)
            raise RuntimeError("simulated crash")
        return getitem(self, i)

    monkeypatch.setattr(RetrievalCaptionDataset, "__getitem__", crash_in_step_four)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_cli(train_args(world, crashed, *steps))
    monkeypatch.undo()
    assert not (crashed / "final").exists()
    assert 1 <= json.loads((crashed / "checkpoint" / "trainer_state.json").read_text())["step"] < 5
    capsys.readouterr()

    # another k retrieves other captions: not the same run, and the checkpoint is kept
    assert run_cli(train_args(world, crashed, *steps, "--k", "2", "--resume")) == 2
    assert "training data changed" in error_line(capsys.readouterr().err, "train-captioner")

    assert run_cli(train_args(world, crashed, *steps, "--resume")) == 0
    assert "resumed from" in capsys.readouterr().out
    a, b = (
        load_file(str(world / "unbroken" / "final" / "model.safetensors")),
        load_file(str(crashed / "final" / "model.safetensors")),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    model = load_pipeline(crashed / "final")
    assert model.k == 4  # the class default, SmallCap's
    assert model.datastore.texts == CaptionDatastore.load(world / "ds").texts


@pytest.mark.parametrize("case", ["not-a-datastore", "other-encoder", "with-text-only"])
def test_a_datastore_that_cannot_be_used_fails_in_one_line_before_any_work(world, capsys, case):
    folder = {"not-a-datastore": world / "feats", "with-text-only": world / "ds"}.get(case)
    if case == "other-encoder":
        folder = world / "ds-chest"
        command = ["datastore", "build", str(world / "w" / "captions.jsonl"), "--out", str(folder)]
        assert run_cli([*command, "--encoder", "embedded:chest-clip"]) == 0
        capsys.readouterr()
    out = world / f"refused-{case}"
    extra = ["--text-only"] if case == "with-text-only" else []
    assert run_cli(train_args(world, out, "--datastore", str(folder), "--max-steps", "1", *extra)) == 2
    err = error_line(capsys.readouterr().err, "train-captioner")
    assert err.startswith(f"error: --datastore {folder}")
    fix = {
        "not-a-datastore": "not a caption datastore folder",
        "other-encoder": "'embedded:chest-clip', not --encoder 'embedded:shapes-clip'",
        "with-text-only": "drop --text-only",
    }[case]
    assert fix in err
    if case != "with-text-only":
        assert "mmgpt2 datastore build" in err  # what to do
    assert not out.exists()  # nothing trained, nothing written


def test_retrieval_flags_without_a_datastore_are_refused(world, capsys):
    for flag in ("--k", "--prompt-tokens"):
        assert run_cli(train_args(world, world / "no-ds", flag, "1")) == 2
        assert error_line(capsys.readouterr().err, "train-captioner").startswith(f"error: {flag} 1: ")
    assert not (world / "no-ds").exists()
