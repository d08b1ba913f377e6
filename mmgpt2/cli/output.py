"""Results printed as soon as they exist, so memory does not grow with the inputs and a later
failure loses nothing already done.

Example:
    >>> with JsonListWriter() as out:
    ...     out.write({"image": "a.png", "caption": "a red circle"})
    [
      {"image": "a.png", "caption": "a red circle"}
    ]
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO


class JsonListWriter:
    """Stream one JSON list to `stream`, an item at a time; leaving the ``with`` block (even on an
    error) closes the list, so the output stays valid JSON."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.count = 0

    def write(self, item: Any) -> None:
        text = json.dumps(item, ensure_ascii=False)
        self.stream.write(("[\n  " if self.count == 0 else ",\n  ") + text)
        self.stream.flush()
        self.count += 1

    def close(self) -> None:
        self.stream.write("[]\n" if self.count == 0 else "\n]\n")
        self.stream.flush()

    def __enter__(self) -> JsonListWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
