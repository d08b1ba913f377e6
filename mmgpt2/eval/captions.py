"""Captioning metrics through pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L, CIDEr (not reimplemented)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from mmgpt2.errors import Mmgpt2Error
from mmgpt2.eval.java import require_java

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
    return score_caption_groups({"": (predictions, references)}, metrics)[""]


def score_caption_groups(
    groups: Mapping[str, tuple[Mapping[str, str], Mapping[str, Sequence[str]]]],
    metrics: Sequence[str] = METRICS,
) -> dict[str, dict[str, float]]:
    """`score_captions` for several separate corpora (e.g. one per user) with one Java start-up.

    Each group is scored as its own corpus (CIDEr's document frequencies come from that group's
    references only), but the PTB tokenizer runs once for all groups and METEOR keeps one JVM:
    Java start-up, not scoring, dominates many small corpora.

    Example:
        >>> score_caption_groups({"ada": (preds_a, refs_a), "bo": (preds_b, refs_b)})["ada"]["CIDEr"]
    """
    require_java()
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    flat_res, flat_gts = {}, {}
    for name, (predictions, references) in groups.items():
        missing = [k for k in predictions if k not in references]
        if missing:
            raise Mmgpt2Error(f"{len(missing)} predictions have no references, e.g. id {missing[0]!r}")
        if not predictions:
            raise Mmgpt2Error(f"no predictions to score{f' in group {name!r}' if name else ''}")
        for i in predictions:
            flat_res[(name, i)] = [{"caption": predictions[i] or ""}]
            flat_gts[(name, i)] = [{"caption": r} for r in references[i]]
    tok = PTBTokenizer()
    res_all = tok.tokenize(flat_res)
    gts_all = tok.tokenize(flat_gts)
    meteor = Meteor() if "METEOR" in metrics else None
    out: dict[str, dict[str, float]] = {}
    for name, (predictions, _) in groups.items():
        res = {i: res_all[(name, i)] for i in predictions}
        gts = {i: gts_all[(name, i)] for i in predictions}
        res = {
            i: c if c and c[0].strip() else ["<empty>"] for i, c in res.items()
        }  # scorers reject empty lists
        scores: dict[str, float] = {}
        if any(m.startswith("BLEU") for m in metrics):
            bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
            scores.update({f"BLEU-{n + 1}": float(bleu[n]) for n in range(4)})
        if meteor is not None:
            scores["METEOR"] = float(meteor.compute_score(gts, res)[0])
        if "ROUGE-L" in metrics:
            scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
        if "CIDEr" in metrics:
            scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
        out[name] = {k: v for k, v in scores.items() if k in metrics}
    del meteor  # its __del__ stops the JVM
    return out


def load_predictions(path: str | os.PathLike) -> dict[str, str]:
    """Predictions as `{id: caption}` from JSON (`mmgpt2 caption --json` output, a dict, or COCO results)."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict):
        return {str(k): str(v) for k, v in data.items()}
    out = {}
    for n, row in enumerate(data):
        key = row.get("image_id", row.get("image", row.get("id")))
        if key is None or "caption" not in row:
            raise Mmgpt2Error(f"{path}: entry {n} needs an image/image_id and a caption")
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
    from mmgpt2.data.records import read_jsonl

    refs = {}
    for rec in read_jsonl(path):
        refs[rec.image] = rec.captions
        refs[os.path.basename(rec.image)] = rec.captions  # predictions may name files either way
    return refs
