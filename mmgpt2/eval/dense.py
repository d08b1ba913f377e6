"""Dense video captioning scores: the ActivityNet Captions protocol and SODA_c.

Inputs are the standard files: ground truth ``{video_id: {"duration", "timestamps": [[s, e], ...],
"sentences": [...]}}`` (extra keys are ignored) and predictions ``{"version", "results": {video_id:
[{"sentence", "timestamp": [s, e]}]}, "external_data"}``.

Protocol, per tIoU threshold in (0.3, 0.5, 0.7, 0.9):
- localisation: a prediction counts as correct if it overlaps some ground-truth event with tIoU at
  or above the threshold, a ground-truth event counts as found if some prediction does; precision
  and recall per video, averaged over the ground-truth videos (a video without predictions scores
  0), F1 from the averaged precision and recall;
- captions: every (prediction, ground-truth event) pair at or above the threshold is a matched pair;
  a prediction with no match is paired with an unmatchable reference (so a wrong segment costs
  caption score, as in the official evaluator). METEOR and BLEU-4 are computed per video over its
  pairs with the pycocoevalcap scorers; CIDEr-D's document frequencies come from all pairs at the
  threshold (one video's few references give no meaningful IDF) and a video's CIDEr is the mean over
  its pairs. Videos without predictions score 0; scores are averaged over ground-truth videos.
Every number is then averaged over the thresholds. Several ground-truth files (ActivityNet's val_1
and val_2) can be given: localisation takes the better one per video, captions pool references.

SODA_c (Fujita et al., ECCV 2020), implemented from the paper: per video, predictions and
ground-truth events each in temporal order; the score of pairing prediction i with event j is
tIoU(i, j) x METEOR(i, j); dynamic programming finds the order-preserving one-to-one matching that
maximises the summed score; precision = sum / #predictions, recall = sum / #events, SODA_c is
their F-measure, averaged over ground-truth videos (0 without predictions; best over ground-truth
files).

Example:
    >>> scores = evaluate_dense(json.load(open("pred.json")), json.load(open("gt.json")))
    >>> scores["F1"], scores["METEOR"], scores["SODA_c"]
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
from collections.abc import Sequence
from typing import Any

import numpy as np

from mmgpt2.errors import Mmgpt2Error

TIOUS = (0.3, 0.5, 0.7, 0.9)
NO_MATCH = "zzqxnomatchzzqx"  # a reference no caption can share a word with


def tiou(a: Sequence[float], b: Sequence[float]) -> float:
    """Temporal IoU of two ``[start, end]`` segments (0 for empty or disjoint ones)."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 and inter > 0 else 0.0


def normalize_sentence(text: str) -> str:
    """Lowercase ASCII words: the scorers compare tokens, punctuation only adds noise."""
    return " ".join(re.findall(r"[a-z0-9']+", text.encode("ascii", "ignore").decode().lower())) or "empty"


def load_json(path: str | os.PathLike) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise Mmgpt2Error(f"{path}: not valid JSON ({err})") from None


def _check_predictions(pred: dict, source: str) -> dict[str, list[dict]]:
    results = pred.get("results") if isinstance(pred, dict) else None
    if not isinstance(results, dict):
        raise Mmgpt2Error(
            f"{source}: predictions need a 'results' object {{video_id: [{{sentence, timestamp}}]}}"
        )
    for vid, events in results.items():
        for i, ev in enumerate(events):
            ts = ev.get("timestamp") if isinstance(ev, dict) else None
            if not isinstance(ts, (list, tuple)) or len(ts) != 2 or "sentence" not in ev:
                raise Mmgpt2Error(
                    f"{source}: results[{vid!r}][{i}] needs 'sentence' and 'timestamp': [start, end]"
                )
    return results


def _check_truth(gt: dict, source: str) -> dict[str, dict]:
    if not isinstance(gt, dict) or not gt:
        raise Mmgpt2Error(
            f"{source}: ground truth must be a non-empty {{video_id: {{timestamps, sentences}}}} object"
        )
    for vid, entry in gt.items():
        if not isinstance(entry, dict) or len(entry.get("timestamps", [])) != len(
            entry.get("sentences", [None])
        ):
            raise Mmgpt2Error(f"{source}: {vid!r} needs 'timestamps' and 'sentences' of equal length")
    return gt


@functools.lru_cache(maxsize=1)
def _scorers():
    """BLEU, METEOR and CIDEr scorers, made once per process: METEOR's Java start loads paraphrase
    tables and takes seconds (tens of seconds on a busy machine)."""
    if shutil.which("java") is None:
        raise RuntimeError("METEOR needs Java: install a JRE (e.g. `apt-get install default-jre`) and retry")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor

    return Bleu(4), Meteor(), Cider()


def _localisation(preds: list[dict], truth: dict, thr: float) -> tuple[float, float]:
    if not preds:
        return 0.0, 0.0
    refs = truth["timestamps"]
    hit_pred = {i for i, p in enumerate(preds) for r in refs if tiou(p["timestamp"], r) >= thr}
    hit_ref = {j for p in preds for j, r in enumerate(refs) if tiou(p["timestamp"], r) >= thr}
    return len(hit_pred) / len(preds), (len(hit_ref) / len(refs) if refs else 0.0)


def _pairs(preds: list[dict], truths: list[dict], thr: float) -> list[tuple[str, list[str]]]:
    """(prediction, references) per prediction: its matched ground-truth sentences, or NO_MATCH."""
    out = []
    for p in preds:
        refs = [
            normalize_sentence(s)
            for t in truths
            for r, s in zip(t["timestamps"], t["sentences"])
            if tiou(p["timestamp"], r) >= thr
        ]
        out.append((normalize_sentence(p["sentence"]), refs or [NO_MATCH]))
    return out


def soda_c_video(preds: list[dict], truth: dict, meteor_of) -> float:
    """SODA_c F-measure of one video; `meteor_of(i, j)` is METEOR of prediction i vs event j."""
    if not preds or not truth["timestamps"]:
        return 0.0
    p_order = sorted(range(len(preds)), key=lambda i: tuple(preds[i]["timestamp"]))
    g_order = sorted(range(len(truth["timestamps"])), key=lambda j: tuple(truth["timestamps"][j]))
    n, m = len(p_order), len(g_order)
    table = np.zeros((n + 1, m + 1))
    for a, i in enumerate(p_order, 1):
        for b, j in enumerate(g_order, 1):
            s = tiou(preds[i]["timestamp"], truth["timestamps"][j]) * meteor_of(i, j)
            table[a, b] = max(table[a - 1, b], table[a, b - 1], table[a - 1, b - 1] + s)
    total = table[n, m]
    precision, recall = total / n, total / m
    return 0.0 if total <= 0 else 2 * precision * recall / (precision + recall)


def evaluate_dense(
    predictions: dict, ground_truth: dict | Sequence[dict], tious: Sequence[float] = TIOUS, soda: bool = True
) -> dict[str, Any]:
    """Scores of ActivityNet-format `predictions` against one or more ground-truth dicts.

    Returns ``Precision``, ``Recall``, ``F1``, ``METEOR``, ``Bleu_4``, ``CIDEr`` (means over `tious`),
    ``per_tiou`` (the same per threshold), ``SODA_c`` and ``num_videos``; caption scores are in [0, 1]
    (CIDEr unbounded), as pycocoevalcap reports them.

    Example:
        >>> evaluate_dense({"results": {"v": [{"sentence": "a red circle", "timestamp": [0, 5]}]}},
        ...                {"v": {"duration": 10, "timestamps": [[0, 5]], "sentences": ["a red circle"]}})["F1"]
        1.0
    """
    gts = [ground_truth] if isinstance(ground_truth, dict) else list(ground_truth)
    gts = [_check_truth(g, f"ground truth {i}") for i, g in enumerate(gts)]
    results = _check_predictions(predictions, "predictions")
    videos = sorted(set().union(*gts))
    bleu, meteor, cider = _scorers()
    per_tiou = {}
    for thr in tious:
        prec, rec, met, b4, cid = [], [], [], [], []
        pairs_by_video = {}
        for vid in videos:
            preds = results.get(vid, [])
            truths = [g[vid] for g in gts if vid in g]
            best = max((_localisation(preds, t, thr) for t in truths), key=lambda pr: pr[0] + pr[1])
            prec.append(best[0])
            rec.append(best[1])
            if preds:
                pairs_by_video[vid] = _pairs(preds, truths, thr)
        # CIDEr: one call over every pair at this threshold, then each video's mean.
        flat = {f"{vid}#{i}": pair for vid, pairs in pairs_by_video.items() for i, pair in enumerate(pairs)}
        cider_of = {}
        if flat:
            _, scores = cider.compute_score(
                {k: v[1] for k, v in flat.items()}, {k: [v[0]] for k, v in flat.items()}
            )
            cider_of = dict(zip(flat, np.atleast_1d(scores)))
        for vid in videos:
            pairs = pairs_by_video.get(vid)
            if not pairs:
                met.append(0.0)
                b4.append(0.0)
                cid.append(0.0)
                continue
            refs = {i: r for i, (_, r) in enumerate(pairs)}
            hyps = {i: [h] for i, (h, _) in enumerate(pairs)}
            met.append(float(meteor.compute_score(refs, hyps)[0]))
            b4.append(float(bleu.compute_score(refs, hyps, verbose=0)[0][3]))
            cid.append(float(np.mean([cider_of[f"{vid}#{i}"] for i in range(len(pairs))])))
        p, r = float(np.mean(prec)), float(np.mean(rec))
        per_tiou[str(thr)] = {
            "Precision": p,
            "Recall": r,
            "F1": 2 * p * r / (p + r) if p + r > 0 else 0.0,
            "METEOR": float(np.mean(met)),
            "Bleu_4": float(np.mean(b4)),
            "CIDEr": float(np.mean(cid)),
        }
    scores: dict[str, Any] = {
        k: float(np.mean([v[k] for v in per_tiou.values()]))
        for k in ("Precision", "Recall", "F1", "METEOR", "Bleu_4", "CIDEr")
    }
    scores["per_tiou"] = per_tiou
    if soda:
        scores["SODA_c"] = _soda_c(results, gts, videos, meteor)
    scores["num_videos"] = len(videos)
    scores["ignored_predicted_videos"] = len(set(results) - set(videos))
    return scores


def _soda_c(results: dict, gts: list[dict], videos: list[str], meteor) -> float:
    # One METEOR call for every (prediction, event) pair of every video and ground-truth file.
    keys, refs, hyps = [], {}, {}
    for vid in videos:
        for g, gt in enumerate(gts):
            if vid not in gt:
                continue
            for i, p in enumerate(results.get(vid, [])):
                for j, s in enumerate(gt[vid]["sentences"]):
                    key = f"{vid}#{g}#{i}#{j}"
                    keys.append(key)
                    refs[key] = [normalize_sentence(s)]
                    hyps[key] = [normalize_sentence(p["sentence"])]
    pair_score = dict(zip(keys, meteor.compute_score(refs, hyps)[1])) if keys else {}
    per_video = []
    for vid in videos:
        per_video.append(
            max(
                (
                    soda_c_video(
                        results.get(vid, []), gt[vid], lambda i, j, v=vid, g=g: pair_score[f"{v}#{g}#{i}#{j}"]
                    )
                    for g, gt in enumerate(gts)
                    if vid in gt
                ),
                default=0.0,
            )
        )
    return float(np.mean(per_video)) if per_video else 0.0


def evaluate_dense_files(
    pred_path: str | os.PathLike, gt_paths: Sequence[str | os.PathLike]
) -> dict[str, Any]:
    """`evaluate_dense` on files, with errors that name the file."""
    pred = load_json(pred_path)
    _check_predictions(pred, str(pred_path))
    gts = []
    for path in gt_paths:
        gt = load_json(path)
        _check_truth(gt, str(path))
        gts.append(gt)
    return evaluate_dense(pred, gts)


def format_table(scores: dict[str, Any]) -> str:
    """A plain-text table of the scores (per threshold and mean)."""
    cols = ("Precision", "Recall", "F1", "METEOR", "Bleu_4", "CIDEr")
    lines = ["tIoU   " + "".join(f"{c:>10}" for c in cols)]
    for thr, row in scores["per_tiou"].items():
        lines.append(f"{thr:<7}" + "".join(f"{row[c]:>10.4f}" for c in cols))
    lines.append("mean   " + "".join(f"{scores[c]:>10.4f}" for c in cols))
    if "SODA_c" in scores:
        lines.append(f"SODA_c {scores['SODA_c']:.4f}   ({scores['num_videos']} videos)")
    return "\n".join(lines)
