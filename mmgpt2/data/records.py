"""Readers that turn caption datasets into `CaptionRecord`s (one image, its reference captions)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from mmgpt2.errors import Mmgpt2Error


@dataclass
class CaptionRecord:
    image: str  # absolute or caller-relative image path
    captions: list[str]
    id: str = ""
    meta: dict = field(default_factory=dict)


def read_jsonl(path: str | os.PathLike) -> list[CaptionRecord]:
    """Read ``{"image": path, "caption": str}`` (or ``"captions": [...]``) lines.

    Image paths are resolved against the file's folder. Lines of one image are merged.

    Example:
        >>> import tempfile
        >>> from mmgpt2.worlds import shapes
        >>> records = read_jsonl(shapes.write(tempfile.mkdtemp(), n=3, seed=0))
        >>> len(records), os.path.basename(records[0].image), records[0].captions[:2]
        (3, '00000.png', ['a small blue cross above a large yellow cross', 'there is a small blue cross above a large yellow cross'])
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such captions file")
    by_image: dict[str, CaptionRecord] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise Mmgpt2Error(f"{path}:{n}: not valid JSON ({err.msg})") from err
        if not isinstance(row, dict) or "image" not in row:
            raise Mmgpt2Error(
                f'{path}:{n}: each line needs an "image" field and a "caption" or "captions" field'
            )
        captions = row.get("captions", [row["caption"]] if "caption" in row else None)
        if captions is None:
            raise Mmgpt2Error(f'{path}:{n}: no "caption" or "captions" field')
        if isinstance(captions, str):  # one caption, never split into characters
            captions = [captions]
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            raise Mmgpt2Error(f'{path}:{n}: "captions" must be a list of strings, not {captions!r:.60}')
        image = (
            str((path.parent / row["image"]).resolve()) if not os.path.isabs(row["image"]) else row["image"]
        )
        record = by_image.setdefault(
            image, CaptionRecord(image=image, captions=[], id=str(row.get("id", image)))
        )
        record.captions.extend(str(c) for c in captions)
        extra = {k: v for k, v in row.items() if k not in ("image", "caption", "captions", "id")}
        record.meta.update(extra)
    return list(by_image.values())


KARPATHY_SPLITS = ("train", "val", "test")


def read_json(path: str | os.PathLike, what: str):
    """A dataset's JSON file, or an error naming the file and what it should be."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise Mmgpt2Error(f"{path}: not valid JSON ({err.msg}); expected a {what} file") from err


def read_coco_karpathy(
    path: str | os.PathLike, image_root: str | os.PathLike, split: str = "train"
) -> list[CaptionRecord]:
    """Read Karpathy's ``dataset_coco.json``; ``split="train"`` also takes ``restval`` as is customary.

    Example:
        >>> read_coco_karpathy("dataset_coco.json", "/data/coco", split="test")[:1]  # doctest: +SKIP
    """
    path, root = Path(path), Path(image_root)
    data = read_json(path, "Karpathy split (dataset_coco.json)")
    if isinstance(data, dict) and "annotations" in data and "images" in data:
        # The official captions_{train,val}2014.json: no splits, captions apart from images.
        raise Mmgpt2Error(
            f"{path}: this is an official COCO captions file ('images' + 'annotations'), which has no "
            "Karpathy split; pass Karpathy's dataset_coco.json instead ({'images': [{'filepath', "
            "'filename', 'cocoid', 'split', 'sentences': [{'raw'}]}]}, from the karpathy splits archive "
            "caption_datasets.zip)"
        )
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise Mmgpt2Error(f"{path}: not a Karpathy split file (no 'images' list); expected dataset_coco.json")
    if split not in KARPATHY_SPLITS:
        raise Mmgpt2Error(f"split {split!r}: Karpathy's splits are {', '.join(KARPATHY_SPLITS)}")
    wanted = {"train", "restval"} if split == "train" else {split}
    out = []
    for n, im in enumerate(data["images"]):
        if not isinstance(im, dict) or not {"filename", "split", "sentences"} <= set(im):
            raise Mmgpt2Error(
                f"{path}: images[{n}] needs 'filename', 'split' and 'sentences' (Karpathy's dataset_coco.json)"
            )
        if im["split"] not in wanted:
            continue
        captions = [s.get("raw") or " ".join(s["tokens"]) for s in im["sentences"]]
        image = root / im.get("filepath", "") / im["filename"]
        out.append(
            CaptionRecord(image=str(image), captions=captions, id=str(im.get("cocoid", im["filename"])))
        )
    return out


def read_captions(
    path: str | os.PathLike, image_root: str | os.PathLike | None = None, split: str = "train"
) -> list[CaptionRecord]:
    """Dispatch on the file: Karpathy JSON (``dataset_coco.json``) or our JSON lines."""
    path = Path(path)
    if path.suffix == ".json":
        return read_coco_karpathy(path, image_root or path.parent, split)
    return read_jsonl(path)
