"""How many events one video may ask for: a fixed cap, and never more than its sampled frames.

ZeroTA optimises one soft moment and one caption prefix per event over the sampled frames, so
its memory and time grow faster than linearly with the number of events (measured by
`benchmarks/zerota_events_memory.py`), and an event needs at least one frame of its own to be told apart.

Example:
    >>> bounded_events(3, n_frames=45)
    3
    >>> bounded_events(5, n_frames=1)
    1
"""

from __future__ import annotations

from mmgpt2.errors import Mmgpt2Error

#: The most events a caller may ask for per video.
MAX_EVENTS = 10


def bounded_events(requested: int, n_frames: int) -> int:
    """`requested` events, refused above `MAX_EVENTS` and cut to the number of sampled frames."""
    if requested < 1 or requested > MAX_EVENTS:
        raise Mmgpt2Error(f"events={requested}: must be from 1 to {MAX_EVENTS} per video")
    return max(1, min(requested, n_frames))
