"""Captioning metrics exactly as COCOEvalCap computes them: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D.

COCOEvalCap tokenizes predictions and references with the PTB tokenizer and hands them, as they
are, to pycocoevalcap's scorers over the predicted ids; this module does the same (an empty
prediction is scored as the empty string, as there). Inputs it would crash on or score wrongly
are refused by id instead: a prediction that is not a string, an id with no reference, a
reference list that is empty. A reference given as a single string is one reference.

Example:
    >>> score_captions({"1": "a red circle"}, {"1": ["a red circle", "one red circle"]})["BLEU-1"]  # doctest: +SKIP
    0.99999...
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmgpt2.errors import Mmgpt2Error
from mmgpt2.eval.java import require_java

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
#: Our metric names -> pycocoevalcap's.
COCO_NAMES = dict(zip(METRICS, ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")))


def score_captions(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    metrics: Sequence[str] = METRICS,
) -> dict[str, float]:
    """Corpus scores of `predictions[id]` against `references[id]` over the predicted ids.

    Example:
        >>> score_captions({"1": "a red circle"}, {"1": ["a red circle", "one red circle"]})["BLEU-1"]  # doctest: +SKIP
        0.99999...
    """
    return score_caption_groups({"": (predictions, references)}, metrics)[""]


def _check_group(name: str, predictions: Mapping, references: Mapping) -> None:
    where = f" in group {name!r}" if name else ""
    if not predictions:
        raise Mmgpt2Error(f"no predictions to score{where}")
    missing = [k for k in predictions if k not in references]
    if missing:
        raise Mmgpt2Error(f"{len(missing)} predictions have no references{where}, e.g. id {missing[0]!r}")
    for k, caption in predictions.items():
        if not isinstance(caption, str):
            raise Mmgpt2Error(f"prediction for id {k!r}{where} is {caption!r}, not a string")
        refs = references[k]
        if isinstance(refs, str) or not refs or not all(isinstance(r, str) for r in refs):
            raise Mmgpt2Error(
                f"references for id {k!r}{where} must be a non-empty list of strings, not {refs!r}"
            )


def score_caption_groups(
    groups: Mapping[str, tuple[Mapping[str, str], Mapping[str, Sequence[str]]]],
    metrics: Sequence[str] = METRICS,
) -> dict[str, dict[str, float]]:
    """`score_captions` for several separate corpora (e.g. one per user) with one Java start-up.

    Each group is scored as its own corpus (CIDEr's document frequencies come from that group's
    references only), but the PTB tokenizer runs once for all groups and METEOR keeps one JVM:
    Java start-up, not scoring, dominates many small corpora.

    Example:
        >>> score_caption_groups({"ada": (preds_a, refs_a), "bo": (preds_b, refs_b)})["ada"]["CIDEr"]  # doctest: +SKIP
    """
    require_java()
    from mmgpt2.eval.scorers import coco_scores
    from mmgpt2.eval.text import ptb_tokenize

    for name, (predictions, references) in groups.items():
        _check_group(name, predictions, references)
    tokens = ptb_tokenize(s for preds, refs in groups.values() for k in preds for s in (preds[k], *refs[k]))
    wanted = [COCO_NAMES[m] for m in metrics]
    out: dict[str, dict[str, float]] = {}
    for name, (predictions, references) in groups.items():
        res = {k: [tokens[predictions[k]]] for k in predictions}
        gts = {k: [tokens[r] for r in references[k]] for k in predictions}
        scores = coco_scores(gts, res, wanted)
        out[name] = {m: scores[COCO_NAMES[m]] for m in metrics}
    return out


def _read_json(path: str | os.PathLike, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {what} file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Mmgpt2Error(f"{path}: not a valid JSON {what} file ({err})") from None


def load_predictions(path: str | os.PathLike) -> dict[str, str]:
    """Predictions as ``{id: caption}`` from JSON: `mmgpt2 caption --json` output, a dict or COCO results.

    Example:
        >>> import json, os, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:  # COCO results: a list of {image_id, caption}
        ...     path = os.path.join(tmp, "preds.json")
        ...     with open(path, "w") as f:
        ...         json.dump([{"image_id": 1, "caption": "a large yellow circle"}], f)
        ...     load_predictions(path)
        {'1': 'a large yellow circle'}
    """
    data = _read_json(path, "predictions")
    if isinstance(data, dict):
        out = {str(k): v for k, v in data.items()}
    elif isinstance(data, list):
        out = {}
        for n, row in enumerate(data):
            key = row.get("image_id", row.get("image", row.get("id"))) if isinstance(row, dict) else None
            if key is None or "caption" not in row:
                raise Mmgpt2Error(f"{path}: entry {n} needs an image/image_id and a caption")
            if str(key) in out:
                raise Mmgpt2Error(f"{path}: entry {n} repeats id {key!r}; give one caption per image")
            out[str(key)] = row["caption"]
    else:
        raise Mmgpt2Error(
            f"{path}: predictions must be {{id: caption}} or a list of {{image_id, caption}}, not {type(data).__name__}"
        )
    for k, caption in out.items():
        if not isinstance(caption, str):
            raise Mmgpt2Error(f"{path}: the caption of id {k!r} is {caption!r}, not a string")
    return out


def _reference_list(value: Any, where: str) -> list[str]:
    refs = [value] if isinstance(value, str) else value  # a lone string is one reference
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
        raise Mmgpt2Error(
            f"{where}: references must be a string or a non-empty list of strings, not {value!r}"
        )
    return refs


def load_references(path: str | os.PathLike) -> dict[str, list[str]]:
    """References as ``{id: [captions]}`` from JSON ``{id: [..] or ".."}``, COCO captions JSON or our JSON lines.

    Example:
        >>> import tempfile
        >>> from mmgpt2.worlds import shapes
        >>> load_references(shapes.write(tempfile.mkdtemp(), n=3, seed=0))["00000.png"][:2]
        ['a small blue cross above a large yellow cross', 'there is a small blue cross above a large yellow cross']
    """
    path = Path(path)
    if path.suffix != ".json":
        from mmgpt2.data.records import read_jsonl

        refs = {}
        for rec in read_jsonl(path):
            captions = _reference_list(rec.captions, f"{path}: image {rec.image!r}")
            refs[rec.image] = captions
            refs[os.path.basename(rec.image)] = captions  # predictions may name files either way
        return refs
    data = _read_json(path, "references")
    if isinstance(data, dict) and "annotations" in data:  # COCO captions format
        refs = {}
        for n, a in enumerate(data["annotations"]):
            if not isinstance(a, dict) or "image_id" not in a or not isinstance(a.get("caption"), str):
                raise Mmgpt2Error(f"{path}: annotations[{n}] needs an image_id and a caption string")
            refs.setdefault(str(a["image_id"]), []).append(a["caption"])
        return refs
    if not isinstance(data, dict):
        raise Mmgpt2Error(f"{path}: references must be {{id: [captions]}} or COCO captions JSON")
    return {str(k): _reference_list(v, f"{path}: id {k!r}") for k, v in data.items()}


def coco_image_files(path: str | os.PathLike) -> dict[str, str]:
    """``{image_id: file_name}`` of a COCO captions JSON (empty for other reference files)."""
    path = Path(path)
    if path.suffix != ".json":
        return {}
    data = _read_json(path, "references")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        return {}
    return {
        str(im["id"]): im["file_name"] for im in data["images"] if isinstance(im, dict) and "file_name" in im
    }
