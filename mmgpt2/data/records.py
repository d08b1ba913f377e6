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
        >>> records = read_jsonl("data/train.jsonl")
        >>> records[0].image, records[0].captions
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


def read_coco_karpathy(
    path: str | os.PathLike, image_root: str | os.PathLike, split: str = "train"
) -> list[CaptionRecord]:
    """Read Karpathy's ``dataset_coco.json``; ``split="train"`` also takes ``restval`` as is customary.

    Example:
        >>> read_coco_karpathy("dataset_coco.json", "/data/coco", split="test")[:1]
    """
    path, root = Path(path), Path(image_root)
    data = json.loads(Path(path).read_text())
    if "images" not in data:
        raise Mmgpt2Error(f"{path}: not a Karpathy split file (no 'images' list)")
    wanted = {"train", "restval"} if split == "train" else {split}
    out = []
    for im in data["images"]:
        if im.get("split") not in wanted:
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
