"""Dense video captioning scores: ActivityNet Captions' densevid_eval (2018 or 2021) and SODA_c.

This reproduces the reference evaluators' numbers (PDVC's copies of densevid_eval and fujiso/SODA),
not an idea of them. Per tIoU threshold in (0.3, 0.5, 0.7, 0.9):

- localisation: a prediction and a ground-truth event cover each other when their tIoU is strictly
  *above* the threshold; per video, precision = covered predictions / predictions and recall =
  covered events / events, each the best over the ground-truth files (chosen independently);
  both are means over the ground-truth videos (0 for a video without predictions). F1 is the
  harmonic mean of those means (the reference prints only P and R).
- captions: every (prediction, event) pair with tIoU *at or above* the threshold is its own item
  with that event's sentence as its single reference, so a prediction matching three events counts
  three times; a prediction matching nothing is one item whose reference is a garbage string. The
  2018 version uses the literal ``abc123!@#``; the 2021 version a random string of 10-20 lowercase
  letters per item (``seed`` makes it repeatable). Sentences lose their non-ASCII characters and go
  through the PTB tokenizer; BLEU-1..4, METEOR, ROUGE-L and CIDEr-D are then computed per
  ground-truth video over that video's items only (so CIDEr's IDF comes from that one video), a
  video without predictions scores 0, and the score is the mean over ground-truth videos.
- tIoU = intersection / (union + 1e-8), union = min(hull, sum of the two lengths), as the reference
  computes it (so a tIoU of exactly 0.5 falls just below the 0.5 threshold); only the first 1000
  predictions of a video are read.

Every number is also averaged over the thresholds. SODA_c is `mmgpt2.eval.soda.soda_c`.

Example:
    >>> scores = evaluate_dense(json.load(open("pred.json")), [json.load(open("val_1.json"))])  # doctest: +SKIP
    >>> scores["F1"], scores["METEOR"], scores["SODA_c"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import random
import string
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mmgpt2.errors import Mmgpt2Error
from mmgpt2.eval.dense_inputs import Event, check_ground_truth, check_predictions, load_json
from mmgpt2.eval.scorers import COCO_METRICS

TIOUS = (0.3, 0.5, 0.7, 0.9)
MAX_PROPOSALS = 1000
GARBAGE_2018 = "abc123!@#"
PROTOCOLS = ("2018", "2021")
LOCALISATION = ("Precision", "Recall", "F1")

__all__ = ["TIOUS", "evaluate_dense", "evaluate_dense_files", "format_table", "load_json", "tiou"]


def tiou(a: Sequence[float], b: Sequence[float]) -> float:
    """Temporal IoU of two ``[start, end]`` segments, as densevid_eval and SODA compute it.

    Example:
        >>> round(tiou([0, 10], [5, 15]), 6)
        0.333333
    """
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = min(max(a[1], b[1]) - min(a[0], b[0]), (a[1] - a[0]) + (b[1] - b[0]))
    return inter / (union + 1e-8)


def _is_checked(doc: Any) -> bool:
    return isinstance(doc, Mapping) and all(
        isinstance(v, list) and all(isinstance(e, Event) for e in v) for v in doc.values()
    )


def _as_events(
    predictions: Mapping, ground_truth: Mapping | Sequence[Mapping]
) -> tuple[dict[str, list[Event]], list[dict[str, list[Event]]]]:
    """Accept raw ActivityNet documents or already checked ``{video: [Event]}`` maps."""
    gts = [ground_truth] if isinstance(ground_truth, Mapping) else list(ground_truth)
    if not gts:
        raise Mmgpt2Error("no ground truth given")
    gts = [
        g if g and _is_checked(g) else check_ground_truth(g, f"ground truth {i + 1}")
        for i, g in enumerate(gts)
    ]
    if isinstance(predictions, Mapping) and "results" not in predictions and _is_checked(predictions):
        return {vid: list(evs) for vid, evs in predictions.items()}, gts
    return check_predictions(predictions, "predictions"), gts


def localisation(
    preds: Sequence[Event], truths: Sequence[Sequence[Event]], thr: float
) -> tuple[float, float]:
    """(precision, recall) of one video at `thr`: each the best over the ground-truth files."""
    best_p = best_r = 0.0
    for events in truths:
        hit_pred, hit_event = set(), set()
        for i, p in enumerate(preds):
            for j, e in enumerate(events):
                if tiou((p.start, p.end), (e.start, e.end)) > thr:
                    hit_pred.add(i)
                    hit_event.add(j)
        if preds:
            best_p = max(best_p, len(hit_pred) / len(preds))
        best_r = max(best_r, len(hit_event) / len(events))
    return best_p, best_r


def caption_items(
    preds: Sequence[Event], truths: Sequence[Sequence[Event]], thr: float, garbage
) -> list[tuple[str, str]]:
    """(prediction, single reference) items of one video at `thr`; `garbage()` gives the reference
    of a prediction that matches no event."""
    items = []
    for p in preds:
        matched = [
            (p.sentence, e.sentence)
            for events in truths
            for e in events
            if tiou((p.start, p.end), (e.start, e.end)) >= thr
        ]
        items += matched or [(p.sentence, garbage())]
    return items


def _garbage_maker(protocol: str, seed: int | None):
    if protocol == "2018":
        return lambda: GARBAGE_2018
    rng = random.Random(seed)
    return lambda: "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(10, 20)))


def evaluate_dense(
    predictions: Mapping,
    ground_truth: Mapping | Sequence[Mapping],
    tious: Sequence[float] = TIOUS,
    soda: bool = True,
    protocol: str = "2018",
    seed: int | None = None,
    soda_references: str = "per-file",
    soda_missing: str = "skip",
    max_proposals: int = MAX_PROPOSALS,
    progress: bool = False,
) -> dict[str, Any]:
    """densevid_eval scores (and SODA_c) of `predictions` against one or more ground-truth files.

    `predictions` is an ActivityNet predictions document (or ``{video: [Event]}``), `ground_truth`
    one ground-truth document or a list of them (ActivityNet's val_1 and val_2). Returns the means
    over `tious` of ``Precision``, ``Recall``, ``F1``, ``Bleu_1``..``Bleu_4``, ``METEOR``,
    ``ROUGE_L``, ``CIDEr``; ``per_tiou`` (the same per threshold); ``SODA_c``; and the counts
    ``num_videos`` (ground-truth videos), ``videos_without_predictions`` and
    ``predicted_videos_not_in_gt``.

    Example:
        >>> evaluate_dense({"results": {"v": [{"sentence": "a red circle", "timestamp": [0, 5]}]}},  # doctest: +SKIP
        ...                {"v": {"duration": 10, "timestamps": [[0, 5]], "sentences": ["a red circle"]}})["F1"]
        1.0
    """
    from mmgpt2.eval.scorers import coco_scores
    from mmgpt2.eval.text import ptb_tokenize, remove_nonascii

    if protocol not in PROTOCOLS:
        raise Mmgpt2Error(f"protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    preds, gts = _as_events(predictions, ground_truth)
    videos = sorted(set().union(*gts))
    read = {vid: evs[:max_proposals] for vid, evs in preds.items()}
    garbage = _garbage_maker(protocol, seed)
    items = {
        (thr, vid): caption_items(read.get(vid, []), [g[vid] for g in gts if vid in g], thr, garbage)
        for thr in tious
        for vid in videos
    }
    sentences = {s for its in items.values() for pair in its for s in pair}
    sentences |= {e.sentence for evs in preds.values() for e in evs}
    sentences |= {e.sentence for g in gts for evs in g.values() for e in evs}
    raw_tokens = ptb_tokenize(remove_nonascii(s) for s in sentences)
    tokens = {s: raw_tokens[remove_nonascii(s)] for s in sentences}

    per_tiou: dict[str, dict[str, float]] = {}
    bar = tqdm(total=len(tious) * len(videos), desc="scoring", unit="video", disable=not progress)
    for thr in tious:
        rows = {m: [] for m in LOCALISATION[:2] + COCO_METRICS}
        for vid in videos:
            truths = [g[vid] for g in gts if vid in g]
            precision, recall = localisation(read.get(vid, []), truths, thr)
            rows["Precision"].append(precision)
            rows["Recall"].append(recall)
            its = items[(thr, vid)]
            if its:
                refs = {k: [tokens[r]] for k, (_, r) in enumerate(its)}
                hyps = {k: [tokens[h]] for k, (h, _) in enumerate(its)}
                video_scores = coco_scores(refs, hyps)
            else:
                video_scores = dict.fromkeys(COCO_METRICS, 0.0)
            for m in COCO_METRICS:
                rows[m].append(video_scores[m])
            bar.update()
        row = {m: float(np.mean(v)) for m, v in rows.items()}
        row["F1"] = _f1(row["Precision"], row["Recall"])
        per_tiou[str(thr)] = {m: row[m] for m in LOCALISATION + COCO_METRICS}
    bar.close()
    scores: dict[str, Any] = {
        m: float(np.mean([row[m] for row in per_tiou.values()])) for m in LOCALISATION[:2] + COCO_METRICS
    }
    scores["F1"] = _f1(scores["Precision"], scores["Recall"])
    scores = {m: scores[m] for m in LOCALISATION + COCO_METRICS}
    scores["per_tiou"] = per_tiou
    if soda:
        from mmgpt2.eval.soda import soda_c

        result = soda_c(preds, gts, soda_references, soda_missing, tokens=raw_tokens)
        scores["SODA_c"] = result["SODA_c"]
        scores["SODA_c_per_file"] = result["per_file"]
    scores["protocol"] = protocol
    scores["num_videos"] = len(videos)
    with_preds = {vid for vid, evs in preds.items() if evs}
    scores["videos_without_predictions"] = len(set(videos) - with_preds)
    scores["predicted_videos_not_in_gt"] = len(set(preds) - set(videos))
    return scores


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def evaluate_dense_files(
    pred_path: str | os.PathLike, gt_paths: Sequence[str | os.PathLike], **options: Any
) -> dict[str, Any]:
    """`evaluate_dense` on files; every input error names the file and the entry.

    A predictions file none of whose videos is in the ground truth is refused: its all-zero scores
    would read as a terrible model rather than mismatched video ids.
    """
    preds = check_predictions(load_json(pred_path), str(pred_path))
    gts = [check_ground_truth(load_json(p), str(p)) for p in gt_paths]
    known = set().union(*gts)
    if preds and not known & set(preds):
        raise Mmgpt2Error(
            f"{pred_path}: none of its {len(preds)} predicted videos (e.g. {next(iter(preds))!r}) is in the "
            f"ground truth (e.g. {next(iter(sorted(known)))!r}); the video ids must match exactly"
        )
    return evaluate_dense(preds, gts, **options)


def format_table(scores: dict[str, Any]) -> str:
    """A plain-text table: the scores per threshold and their mean, SODA_c and the video counts."""
    cols = LOCALISATION + COCO_METRICS
    lines = [f"densevid_eval {scores.get('protocol', '2018')}", "tIoU  " + "".join(f"{c:>10}" for c in cols)]
    for thr, row in scores["per_tiou"].items():
        lines.append(f"{thr:<6}" + "".join(f"{row[c]:>10.4f}" for c in cols))
    lines.append("mean  " + "".join(f"{scores[c]:>10.4f}" for c in cols))
    if "SODA_c" in scores:
        lines.append(f"SODA_c {scores['SODA_c']:.4f}")
    lines.append(
        f"{scores['num_videos']} ground-truth videos, {scores['videos_without_predictions']} without "
        f"predictions; {scores['predicted_videos_not_in_gt']} predicted videos not in the ground truth (ignored)"
    )
    return "\n".join(lines)
