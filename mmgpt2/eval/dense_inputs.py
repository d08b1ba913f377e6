"""Reading and checking ActivityNet Captions files, with errors that name the file and the entry.

Ground truth: ``{video_id: {"duration", "timestamps": [[start, end], ...], "sentences": [...]}}``
(extra keys ignored). Predictions: ``{"version", "results": {video_id: [{"sentence", "timestamp":
[start, end]}, ...]}, "external_data"}``. Times are seconds: finite numbers with 0 <= start <= end
(an event past the video's duration is allowed, as in the reference evaluators). The reference
tools accept impossible values (NaN, start > end, strings) and return wrong numbers or crash;
here they are refused, one line naming the file and the entry.

Example:
    >>> preds = check_predictions(json.load(open("pred.json")), "pred.json")  # doctest: +SKIP
    >>> preds["v_QOlSCBRmfWY"][0]  # doctest: +SKIP
    Event(start=0.83, end=19.86, sentence='A young woman is seen standing in a room.')
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, NamedTuple

from mmgpt2.errors import Mmgpt2Error


class Event(NamedTuple):
    start: float
    end: float
    sentence: str


class DenseInputError(Mmgpt2Error):
    """A ground-truth or prediction file that is not ActivityNet Captions format."""


def load_json(path: str | os.PathLike) -> Any:
    """Parsed JSON of `path`; a missing or broken file is named in the error."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DenseInputError(f"{path}: is a folder, not a JSON file") from None
    except UnicodeDecodeError as err:
        raise DenseInputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise DenseInputError(f"{path}: not valid JSON ({err})") from None


def _segment(value: Any, where: str) -> tuple[float, float]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in value)
    ):
        raise DenseInputError(f"{where}: timestamp {value!r} is not [start, end] in seconds (two numbers)")
    start, end = float(value[0]), float(value[1])
    if not (math.isfinite(start) and math.isfinite(end)):
        raise DenseInputError(f"{where}: timestamp {value!r} is not finite")
    if start < 0 or start > end:
        raise DenseInputError(
            f"{where}: timestamp {value!r} needs 0 <= start <= end; fix or clip it to [0, duration]"
        )
    return start, end


def check_predictions(doc: Any, source: str) -> dict[str, list[Event]]:
    """``{video_id: [Event, ...]}`` from a predictions document, in the file's order."""
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, dict):
        raise DenseInputError(
            f"{source}: predictions need a 'results' object {{video_id: [{{sentence, timestamp}}]}}"
        )
    out: dict[str, list[Event]] = {}
    for vid, events in results.items():
        if not isinstance(events, list):
            raise DenseInputError(
                f"{source}: results[{vid!r}] is {type(events).__name__}, not a list of {{sentence, timestamp}}"
            )
        checked = []
        for i, ev in enumerate(events):
            where = f"{source}: results[{vid!r}][{i}]"
            if not isinstance(ev, dict) or "timestamp" not in ev or "sentence" not in ev:
                raise DenseInputError(f"{where} needs 'sentence' and 'timestamp': [start, end]")
            if not isinstance(ev["sentence"], str):
                raise DenseInputError(f"{where}: sentence {ev['sentence']!r} is not a string")
            checked.append(Event(*_segment(ev["timestamp"], where), ev["sentence"]))
        out[vid] = checked
    return out


def check_ground_truth(doc: Any, source: str) -> dict[str, list[Event]]:
    """``{video_id: [Event, ...]}`` from a ground-truth document (every video needs an event)."""
    if not isinstance(doc, dict) or not doc:
        raise DenseInputError(
            f"{source}: ground truth must be a non-empty {{video_id: {{timestamps, sentences}}}} object"
        )
    out: dict[str, list[Event]] = {}
    for vid, entry in doc.items():
        where = f"{source}: {vid!r}"
        if not isinstance(entry, dict):
            raise DenseInputError(f"{where} is {type(entry).__name__}, not {{timestamps, sentences}}")
        stamps, sentences = entry.get("timestamps"), entry.get("sentences")
        if not isinstance(stamps, list) or not isinstance(sentences, list) or len(stamps) != len(sentences):
            raise DenseInputError(f"{where} needs 'timestamps' and 'sentences' lists of equal length")
        if not stamps:
            raise DenseInputError(f"{where} has no events; remove the video or annotate it")
        events = []
        for i, (ts, s) in enumerate(zip(stamps, sentences)):
            if not isinstance(s, str):
                raise DenseInputError(f"{where}: sentences[{i}] {s!r} is not a string")
            events.append(Event(*_segment(ts, f"{where}: timestamps[{i}]"), s))
        out[vid] = events
    return out
