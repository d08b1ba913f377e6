"""Turning report text into `(head, relation, tail)` triplets.

Two extractors share one call signature, ``extractor(report_text) -> list[(head, relation, tail)]``:

- `RadGraphExtractor` (when the `radgraph` package is installed): RadGraph's entity/relation model;
  `suggestive_of` relations between present observations become triplets, as in KG-LLaVA.
- `PatternExtractor` (always available): a documented rule set for the phrasing radiologists use
  to link a finding to what it suggests. A sentence is split at the first linking cue
  (``suggestive of``, ``suggesting``, ``consistent with``, ``in keeping with``, ``concerning for``,
  ``compatible with``, ``which may represent``, ``likely representing``); the part before is the
  finding (opening phrases such as "There is" / "Frontal view shows" are dropped), the part after
  is the diagnosis (trailing punctuation dropped). Negated sentences ("No ...", "without ...",
  "no evidence of ...") give no triplet, since an absent finding suggests nothing.

Example:
    >>> PatternExtractor()("There is a small left pleural effusion, suggestive of heart failure. No pneumothorax.")
    [('small left pleural effusion', 'suggestive_of', 'heart failure')]
"""

from __future__ import annotations

import re
from collections.abc import Callable

Extractor = Callable[[str], list[tuple[str, str, str]]]

_CUES = (
    "suggestive of",
    "suggesting",
    "consistent with",
    "in keeping with",
    "concerning for",
    "compatible with",
    "which may represent",
    "may represent",
    "likely representing",
)
_CUE_RE = re.compile(r"\s*,?\s*\b(" + "|".join(re.escape(c) for c in _CUES) + r")\b\s*", re.IGNORECASE)
_OPENERS = re.compile(
    r"^(there (is|are)|frontal( and lateral)? views? (show|shows|demonstrates?)|the (radiograph|image|study) "
    r"(shows|demonstrates)|(this|the) (image|x-ray) shows|again seen is|again noted is|new|redemonstrated)\s+",
    re.IGNORECASE,
)
_ARTICLES = re.compile(r"^(a|an|the)\s+", re.IGNORECASE)
_NEGATION = re.compile(r"^\s*(no|without|negative for)\b|\bno (evidence|sign) of\b", re.IGNORECASE)


def split_sentences(text: str) -> list[str]:
    """Sentences of a report: split at '.', '!', '?', ';' or a newline followed by space."""
    return [s.strip() for s in re.split(r"(?<=[.!?;])\s+|\n+", text) if s.strip()]


class PatternExtractor:
    """Rule-based `finding suggestive_of diagnosis` extraction (see the module docstring)."""

    relation = "suggestive_of"

    def __call__(self, text: str) -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = []
        for sentence in split_sentences(text):
            if _NEGATION.search(sentence):
                continue
            parts = _CUE_RE.split(sentence, maxsplit=1)
            if len(parts) < 3:
                continue
            head = _ARTICLES.sub("", _OPENERS.sub("", parts[0].strip(" ,"))).strip(" ,")
            tail = re.split(r"[.;!?]|,\s", parts[2], maxsplit=1)[0].strip(" ,")
            tail = _ARTICLES.sub("", tail)
            if head and tail:
                out.append((head.lower(), self.relation, tail.lower()))
        return out


class RadGraphExtractor:
    """RadGraph (`pip install radgraph`; downloads its model on first use) `suggestive_of` triplets."""

    relation = "suggestive_of"

    def __init__(self, model: str = "radgraph"):
        from radgraph import RadGraph  # optional dependency

        self.model = RadGraph(model_type=model)

    def __call__(self, text: str) -> list[tuple[str, str, str]]:
        annotations = self.model([text])
        out: list[tuple[str, str, str]] = []
        for doc in annotations.values():
            entities = doc.get("entities", {})
            for ent in entities.values():
                if "absent" in ent.get("label", ""):
                    continue
                for relation, other in ent.get("relations", []):
                    if relation == "suggestive_of" and other in entities:
                        out.append((ent["tokens"].lower(), relation, entities[other]["tokens"].lower()))
        return out


def default_extractor() -> Extractor:
    """RadGraph when it is installed and loads, else the pattern extractor."""
    try:
        return RadGraphExtractor()
    except Exception:  # not installed, or its model cannot be fetched offline
        return PatternExtractor()
