"""Turning optimised events into the answer: merge same-caption neighbours, temporal NMS."""

from __future__ import annotations

from mmgpt2.apps.video.moments import segment_tiou
from mmgpt2.apps.video.zerota.config import Event


def postprocess(events: list[Event], nms_tiou: float = 0.6, merge_same_caption: bool = True) -> list[Event]:
    """Merge touching/overlapping events with the same caption, drop near-duplicates (temporal NMS),
    and return the rest best-first.

    Example:
        >>> postprocess([Event("a red circle", 0, 4, 0.3), Event("a red circle", 4, 9, 0.2)])
        [Event(sentence='a red circle', start=0, end=9, score=0.3)]
    """
    events = sorted(events, key=lambda e: e.start)
    if merge_same_caption:
        merged: list[Event] = []
        for e in events:
            last = merged[-1] if merged else None
            if (
                last is not None
                and last.sentence == e.sentence
                and e.start <= last.end + 1e-6 + 0.05 * (e.end - e.start)
            ):
                merged[-1] = Event(e.sentence, last.start, max(last.end, e.end), max(last.score, e.score))
            else:
                merged.append(e)
        events = merged
    kept: list[Event] = []
    for e in sorted(events, key=lambda e: -e.score):
        if all(segment_tiou((e.start, e.end), (k.start, k.end)) <= nms_tiou for k in kept):
            kept.append(e)
    return kept
