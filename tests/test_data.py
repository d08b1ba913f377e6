"""Caption readers and the feature cache: each image encoded once, bad files skipped and reported."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TinyEncoder
from PIL import Image

from mmgpt2.data import FeatureCaptionDataset, FeatureStore, extract_features, read_coco_karpathy, read_jsonl


def write_images(folder, n):
    paths = []
    for i in range(n):
        p = folder / f"im{i}.png"
        Image.new("RGB", (16, 16), (i * 40 % 255, 10, 10)).save(p)
        paths.append(p)
    return paths


def test_jsonl_merges_captions_of_one_image_and_resolves_paths(tmp_path):
    write_images(tmp_path, 2)
    lines = [
        {"image": "im0.png", "caption": "a"},
        {"image": "im0.png", "caption": "b"},
        {"image": "im1.png", "captions": ["c", "d"]},
    ]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    records = read_jsonl(tmp_path / "c.jsonl")
    assert [(r.image, r.captions) for r in records] == [
        (str(tmp_path / "im0.png"), ["a", "b"]),
        (str(tmp_path / "im1.png"), ["c", "d"]),
    ]


def test_jsonl_errors_name_file_and_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"image": "a.png", "caption": "x"}\n{"image": oops}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid JSON"):
        read_jsonl(tmp_path / "bad.jsonl")


def test_karpathy_train_split_includes_restval(tmp_path):
    data = {
        "images": [
            {
                "filepath": "train2014",
                "filename": "a.jpg",
                "split": "train",
                "cocoid": 1,
                "sentences": [{"raw": "A cat.", "tokens": ["a", "cat"]}],
            },
            {
                "filepath": "val2014",
                "filename": "b.jpg",
                "split": "restval",
                "cocoid": 2,
                "sentences": [{"raw": "A dog.", "tokens": ["a", "dog"]}],
            },
            {
                "filepath": "val2014",
                "filename": "c.jpg",
                "split": "test",
                "cocoid": 3,
                "sentences": [{"raw": "A cow.", "tokens": ["a", "cow"]}],
            },
        ]
    }
    (tmp_path / "dataset_coco.json").write_text(json.dumps(data))
    train = read_coco_karpathy(tmp_path / "dataset_coco.json", "/coco", "train")
    test = read_coco_karpathy(tmp_path / "dataset_coco.json", "/coco", "test")
    assert [r.id for r in train] == ["1", "2"] and [r.id for r in test] == ["3"]
    assert train[1].image == "/coco/val2014/b.jpg" and test[0].captions == ["A cow."]


class CountingEncoder(TinyEncoder):
    def __init__(self):
        super().__init__()
        self.images_seen = 0

    def _encode_image(self, pixels):
        self.images_seen += pixels.shape[0]
        return super()._encode_image(pixels)


def test_each_image_is_encoded_once_and_bad_ones_are_skipped_and_listed(tmp_path):
    paths = write_images(tmp_path, 4)
    paths[2].write_bytes(b"not a png")
    enc = CountingEncoder()
    # five captions per image, as in COCO: the image list repeats, the encoder must not
    store = extract_features(
        [str(p) for p in paths for _ in range(5)],
        enc,
        tmp_path / "cache",
        tokens=True,
        shard_size=2,
        progress=False,
    )
    assert enc.images_seen == 3 and len(store) == 3
    assert str(paths[2]) not in store
    failed = [json.loads(x) for x in (tmp_path / "cache" / "failed.jsonl").read_text().splitlines()]
    assert failed[0]["image"] == str(paths[2]) and "im2.png" in failed[0]["error"]
    assert store.pooled(str(paths[0])).shape == (16,) and store.tokens(str(paths[3])).shape == (16, 12)
    with torch.no_grad():
        direct = enc.encode_image(enc.preprocess_batch([Image.open(paths[3]).convert("RGB")]))[0]
    assert torch.allclose(store.pooled(str(paths[3])), direct, atol=1e-2)  # stored in float16


def test_extraction_resumes_without_re_encoding(tmp_path):
    paths = [str(p) for p in write_images(tmp_path, 3)]
    extract_features(paths[:2], CountingEncoder(), tmp_path / "cache", progress=False)
    enc = CountingEncoder()
    store = extract_features(paths, enc, tmp_path / "cache", progress=False)
    assert enc.images_seen == 1 and len(store) == 3
    assert len(FeatureStore(tmp_path / "cache")) == 3


def test_dataset_pairs_each_caption_and_drops_empty_ones(tmp_path):
    from mmgpt2.data import CaptionRecord

    paths = [str(p) for p in write_images(tmp_path, 2)]
    store = extract_features(paths, TinyEncoder(), tmp_path / "cache", progress=False)
    records = [
        CaptionRecord(paths[0], ["a red box", "  ", "red square"]),
        CaptionRecord(paths[1], ["dark box"]),
        CaptionRecord(str(tmp_path / "gone.png"), ["x"]),
    ]
    with pytest.warns(UserWarning, match="dropped 1 images not in the feature cache and 1 empty captions"):
        ds = FeatureCaptionDataset(records, store)
    assert [ds[i]["captions"] for i in range(len(ds))] == ["a red box", "red square", "dark box"]


def test_cache_refuses_features_of_a_retrained_encoder_behind_the_same_spec(tmp_path):
    # A rebuilt embedded model keeps its spec ("embedded:shapes-clip"); reusing its old features
    # would silently train a mapper on another model's space.
    paths = [str(p) for p in write_images(tmp_path, 2)]
    extract_features(paths[:1], TinyEncoder(), tmp_path / "cache", progress=False)
    retrained = TinyEncoder()
    with torch.no_grad():
        retrained.proj.weight.add_(0.1)
    assert retrained.weights_fingerprint() != TinyEncoder().weights_fingerprint()
    with pytest.raises(ValueError, match="other weights for 'test:tiny-random'.*retrained"):
        extract_features(paths, retrained, tmp_path / "cache", progress=False)
    store = extract_features(paths, TinyEncoder(), tmp_path / "cache", progress=False)
    assert store.pooled(paths[1]).shape == (16,)


def test_a_captions_string_is_one_caption_and_other_types_are_refused(tmp_path):
    from mmgpt2.data.records import read_jsonl
    from mmgpt2.errors import Mmgpt2Error

    path = tmp_path / "c.jsonl"
    path.write_text('{"image": "a.png", "captions": "a red circle"}\n', encoding="utf-8")
    assert [r.captions for r in read_jsonl(path)] == [["a red circle"]]
    path.write_text('{"image": "a.png", "captions": [1, 2]}\n', encoding="utf-8")
    with pytest.raises(Mmgpt2Error, match=r'c\.jsonl:1: "captions" must be a list of strings'):
        read_jsonl(path)
