"""Captioning metrics through pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L, CIDEr (not reimplemented)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .java import require_java

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def score_captions(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    metrics: Sequence[str] = METRICS,
) -> dict[str, float]:
    """Corpus scores of `predictions[id]` against `references[id]` (ids must match).

    Example:
        >>> score_captions({"1": "a red circle"}, {"1": ["a red circle", "one red circle"]})["BLEU-1"]
    """
    require_java()
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    missing = [k for k in predictions if k not in references]
    if missing:
        raise ValueError(f"{len(missing)} predictions have no references, e.g. id {missing[0]!r}")
    if not predictions:
        raise ValueError("no predictions to score")
    ids = list(predictions)
    tok = PTBTokenizer()
    res = tok.tokenize({i: [{"caption": predictions[i] or ""}] for i in ids})
    gts = tok.tokenize({i: [{"caption": r} for r in references[i]] for i in ids})
    res = {i: c if c and c[0].strip() else ["<empty>"] for i, c in res.items()}  # scorers reject empty lists
    scores: dict[str, float] = {}
    if any(m.startswith("BLEU") for m in metrics):
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores.update({f"BLEU-{n + 1}": float(bleu[n]) for n in range(4)})
    if "METEOR" in metrics:
        scores["METEOR"] = float(Meteor().compute_score(gts, res)[0])  # its __del__ stops the JVM
    if "ROUGE-L" in metrics:
        scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    if "CIDEr" in metrics:
        scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    return {k: v for k, v in scores.items() if k in metrics}


def load_predictions(path: str | os.PathLike) -> dict[str, str]:
    """Predictions as `{id: caption}` from JSON (`mmgpt2 caption --json` output, a dict, or COCO results)."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict):
        return {str(k): str(v) for k, v in data.items()}
    out = {}
    for n, row in enumerate(data):
        key = row.get("image_id", row.get("image", row.get("id")))
        if key is None or "caption" not in row:
            raise ValueError(f"{path}: entry {n} needs an image/image_id and a caption")
        out[str(key)] = row["caption"]
    return out


def load_references(path: str | os.PathLike) -> dict[str, list[str]]:
    """References as `{id: [captions]}` from JSON `{id: [..]}` or our JSON lines (`image` + `caption(s)`)."""
    path = Path(path)
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "annotations" in data:  # COCO captions format
            refs: dict[str, list[str]] = {}
            for a in data["annotations"]:
                refs.setdefault(str(a["image_id"]), []).append(a["caption"])
            return refs
        return {str(k): list(v) for k, v in data.items()}
    from ..data.records import read_jsonl

    refs = {}
    for rec in read_jsonl(path):
        refs[rec.image] = rec.captions
        refs[os.path.basename(rec.image)] = rec.captions  # predictions may name files either way
    return refs
