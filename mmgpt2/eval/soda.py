"""SODA_c (Fujita et al., ECCV 2020), reproducing the reference `soda.py` as PDVC calls it.

Per video, predictions and ground-truth events are each sorted by start time (ties keep their file
order); the score of pairing event i with prediction j is tIoU(i, j) x METEOR(i, j), where METEOR
takes the event's sentence as the hypothesis and the prediction as the reference (the argument
order of the reference code; METEOR is not symmetric). Dynamic programming finds the
order-preserving one-to-one matching with the largest sum S; precision = S / #predictions, recall =
S / #events, and the video's SODA_c is their F-measure. Sentences go through `remove_nonascii` and
the PTB tokenizer first.

Which videos and which ground truth:
- the mean is over the videos that are in the ground truth *and* have predictions (videos without
  predictions are left out and counted); ``missing="zero"`` gives the strict mean over every
  ground-truth video instead, 0 for those without predictions;
- ``references="per-file"`` (PDVC's `eval_soda`, what papers report): each ground-truth file is
  scored on its own and the per-file SODA_c values are averaged; ``references="merged"`` (`soda.py -r
  G1 G2`): the events of all files are pooled per video, then scored once.

Example:
    >>> soda_c({"v": [Event(0, 5, "a red circle")]}, [{"v": [Event(0, 5, "a red circle")]}])["SODA_c"]  # doctest: +SKIP
    0.99999...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mmgpt2.errors import Mmgpt2Error
from mmgpt2.eval.dense_inputs import Event

MODES = ("per-file", "merged")
MISSING = ("skip", "zero")


def order_preserving_match(scores: np.ndarray) -> float:
    """Largest sum of `scores[i, j]` over one-to-one pairs whose i and j both increase.

    Example:
        >>> order_preserving_match(np.array([[0.0, 1.0], [1.0, 0.0]]))  # crossing pairs: only one
        1.0
    """
    rows, cols = scores.shape
    best = np.zeros((rows + 1, cols + 1))
    for i in range(rows):
        for j in range(cols):
            best[i + 1, j + 1] = max(best[i, j + 1], best[i + 1, j], best[i, j] + scores[i, j])
    return float(best[rows, cols])


def soda_c_video(iou: np.ndarray, meteor: np.ndarray) -> tuple[float, float, float]:
    """(precision, recall, F) of one video from its (#events, #predictions) tIoU and METEOR matrices."""
    total = order_preserving_match(iou * meteor)
    n_events, n_preds = iou.shape
    precision, recall = total / n_preds, total / n_events
    return (
        precision,
        recall,
        (2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0),
    )


def _by_start(events: Sequence[Event]) -> list[Event]:
    return sorted(events, key=lambda e: e.start)  # stable: equal starts keep their order


def soda_c(
    predictions: Mapping[str, Sequence[Event]],
    ground_truths: Sequence[Mapping[str, Sequence[Event]]],
    references: str = "per-file",
    missing: str = "skip",
    tokens: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """SODA_c of `predictions` against one or more ground-truth files (see the module docstring).

    `tokens` maps raw sentences to their tokenized form (computed here when not given). Returns
    ``{"SODA_c", "per_file": [...], "videos_scored", "videos_without_predictions"}`` (distinct videos).
    """
    from mmgpt2.eval.dense import tiou
    from mmgpt2.eval.scorers import meteor_segments
    from mmgpt2.eval.text import ptb_tokenize, remove_nonascii

    if references not in MODES:
        raise Mmgpt2Error(f"SODA references {references!r}: choose one of {', '.join(MODES)}")
    if missing not in MISSING:
        raise Mmgpt2Error(f"SODA missing-video rule {missing!r}: choose one of {', '.join(MISSING)}")
    if references == "merged":
        pooled: dict[str, list[Event]] = {}
        for gt in ground_truths:
            for vid, events in gt.items():
                pooled.setdefault(vid, []).extend(events)
        ground_truths = [pooled]
    preds = {vid: _by_start(evs) for vid, evs in predictions.items() if evs}
    if tokens is None:
        sentences = [e.sentence for evs in preds.values() for e in evs]
        sentences += [e.sentence for gt in ground_truths for evs in gt.values() for e in evs]
        tokens = ptb_tokenize(remove_nonascii(s) for s in sentences)

    def tok(s: str) -> str:
        return tokens[remove_nonascii(s)]

    # Every (event, prediction) METEOR of every video and file in one call: segment scores do not
    # depend on what else is scored with them.
    pairs = {}
    for gt in ground_truths:
        for vid, events in gt.items():
            for e in events:
                for p in preds.get(vid, ()):
                    pairs[(tok(e.sentence), tok(p.sentence))] = None
    meteor_of = dict(zip(pairs, meteor_segments([h for h, _ in pairs], [[r] for _, r in pairs])))

    per_file, scored, without = [], set(), set()
    for gt in ground_truths:
        per_video = []
        for vid in sorted(gt):
            if vid not in preds:
                without.add(vid)
                if missing == "zero":
                    per_video.append(0.0)
                continue
            events, mine = _by_start(gt[vid]), preds[vid]
            iou = np.array([[tiou((e.start, e.end), (p.start, p.end)) for p in mine] for e in events])
            met = np.array([[meteor_of[(tok(e.sentence), tok(p.sentence))] for p in mine] for e in events])
            per_video.append(soda_c_video(iou, met)[2])
            scored.add(vid)
        per_file.append(float(np.mean(per_video)) if per_video else 0.0)
    return {
        "SODA_c": float(np.mean(per_file)),
        "per_file": per_file,
        "videos_scored": len(scored),
        "videos_without_predictions": len(without),
    }
