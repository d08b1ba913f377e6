"""Encode each image once into a sharded safetensors cache (ClipCap re-encodes per caption).

Layout of a cache folder::

    index.json                      {"encoder": spec, "weights": fingerprint, "images": {path: [shard, row]}, "shards": [...]}
    features-00000.safetensors      "pooled" (N, D) float16 [, "tokens" (N, T, Dt) float16]
    failed.jsonl                    {"image": path, "error": reason} for each file skipped by the last run

Extraction is resumable: finished shards are kept and their images are not encoded again. Files
that failed are tried again on every run (a fixed or newly downloaded file must never stay hidden
behind an old failure); `failed.jsonl` always lists exactly the files that fail now.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from mmgpt2.checkpoint import atomic_write, atomic_write_json
from mmgpt2.encoders import VisionEncoder
from mmgpt2.errors import Mmgpt2Error
from mmgpt2.images import load_image


def extract_features(
    image_paths: Sequence[str],
    encoder: VisionEncoder,
    out_dir: str | os.PathLike,
    tokens: bool = False,
    batch_size: int = 64,
    shard_size: int = 4096,
    progress: bool = True,
) -> FeatureStore:
    """Encode every distinct image once; bad images are reported by path and skipped.

    Example:
        >>> import tempfile
        >>> from mmgpt2.encoders import load_encoder
        >>> images = ["assets/examples/shapes_0.png", "assets/examples/shapes_1.png"]
        >>> with tempfile.TemporaryDirectory() as out:
        ...     store = extract_features(images, load_encoder("embedded:shapes-clip"), out)
        ...     store.pooled("assets/examples/shapes_0.png").shape
        torch.Size([128])
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index_path = out / "index.json"
    index = read_index(index_path) if index_path.is_file() else {"images": {}, "shards": []}
    if index.get("encoder") not in (None, encoder.spec):
        raise Mmgpt2Error(f"{out}: cache was built with encoder {index['encoder']!r}, not {encoder.spec!r}")
    weights = encoder.weights_fingerprint()
    if index["images"] and index.get("weights") not in (None, weights):
        raise Mmgpt2Error(
            f"{out}: cache was built with other weights for {encoder.spec!r} (fingerprint "
            f"{index['weights']} vs {weights}: the model was retrained); extract into a new folder"
        )
    index["weights"] = weights
    if index["images"] and tokens and not index.get("tokens"):
        raise Mmgpt2Error(
            f"{out}: cache was built without patch tokens; extract into a new folder with tokens=True"
        )
    index["encoder"] = encoder.spec
    index["tokens"] = bool(index.get("tokens", tokens) if index["images"] else tokens)
    failed_path = out / "failed.jsonl"
    failed: dict[str, str] = {}  # this run's failures only: earlier ones are retried below
    todo = [p for p in dict.fromkeys(str(p) for p in image_paths) if p not in index["images"]]

    bar = tqdm(total=len(todo), desc="encoding images", unit="img", disable=not progress)
    for start in range(0, len(todo), shard_size):
        chunk = todo[start : start + shard_size]
        kept, pooled, toks = [], [], []
        for b in range(0, len(chunk), batch_size):
            images = []
            for path in chunk[b : b + batch_size]:
                try:
                    images.append(load_image(path))
                    kept.append(path)
                except ValueError as err:
                    failed[path] = str(err)
                    tqdm.write(f"skipped {err}")
            if images:
                p, t = encoder.encode_image(encoder.preprocess_batch(images), return_tokens=True)
                pooled.append(p.half().cpu())
                if tokens:
                    toks.append(t.half().cpu())
            bar.update(len(chunk[b : b + batch_size]))
        _write_failed(failed_path, failed)
        if not kept:
            continue
        name = f"features-{len(index['shards']):05d}.safetensors"
        tensors = {"pooled": torch.cat(pooled)}
        if tokens:
            tensors["tokens"] = torch.cat(toks)
        atomic_write(out / name, lambda p, t=tensors: save_file(t, str(p)))
        index["shards"].append(name)
        index["images"].update({path: [name, row] for row, path in enumerate(kept)})
        atomic_write_json(index_path, index)  # after the shard: the index never points at a missing file
    bar.close()
    _write_failed(failed_path, failed)
    if not index_path.is_file():
        atomic_write_json(index_path, index)
    return FeatureStore(out)


REBUILD = "delete the cache folder (or pick a new one) to encode the images again"


def read_index(path: Path) -> dict:
    """A cache's ``index.json``; a damaged one is an `Mmgpt2Error` naming the file."""
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise Mmgpt2Error(f"{path}: not valid JSON ({err}); {REBUILD}") from None
    if not (
        isinstance(index, dict)
        and isinstance(index.get("images"), dict)
        and isinstance(index.get("shards"), list)
    ):
        raise Mmgpt2Error(f"{path}: not a feature cache index (needs 'images' and 'shards'); {REBUILD}")
    return index


def _load_shard(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise Mmgpt2Error(f"{path}: unreadable feature shard ({err}); {REBUILD}") from None


def _write_failed(path: Path, failed: dict[str, str]) -> None:
    """Rewrite the failure list (atomically); no failures left means no file."""
    if failed:
        text = "".join(json.dumps({"image": k, "error": v}) + "\n" for k, v in failed.items())
        atomic_write(path, lambda p: Path(p).write_text(text, encoding="utf-8"))
    elif path.is_file():
        path.unlink()


class FeatureStore:
    """Read access to a feature cache; all shards are loaded into memory once (float32)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        index_path = self.folder / "index.json"
        if not index_path.is_file():
            raise FileNotFoundError(f"{self.folder}: no index.json; run `mmgpt2 extract-features` first")
        self.index = read_index(index_path)
        self.encoder_spec: str = self.index.get("encoder", "")
        self._shards = {name: _load_shard(self.folder / name) for name in self.index["shards"]}

    def __contains__(self, image: str) -> bool:
        return str(image) in self.index["images"]

    def __len__(self) -> int:
        return len(self.index["images"])

    @property
    def has_tokens(self) -> bool:
        return bool(self.index.get("tokens"))

    def _get(self, image: str, key: str) -> torch.Tensor:
        try:
            shard, row = self.index["images"][str(image)]
        except KeyError:
            raise KeyError(
                f"{image}: not in feature cache {self.folder} (skipped as unreadable, or not extracted)"
            ) from None
        return self._shards[shard][key][row].float()

    def pooled(self, image: str) -> torch.Tensor:
        return self._get(image, "pooled")

    def tokens(self, image: str) -> torch.Tensor:
        return self._get(image, "tokens")
