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

Both read a report through `report_sentences` first. MIMIC-CXR reports are plain text hard-wrapped
near 78 columns (each line starting with a space) in sections headed by capitals and a colon
(``EXAMINATION:``, ``INDICATION:``, ``COMPARISON:``, ``FINDINGS:``, ``IMPRESSION:``; not every
report has every section). Only FINDINGS and IMPRESSION describe the image, so a report with
section headers gives those two sections (or, when it has neither, its last paragraph, as
MIT-LCP's ``section_parser`` does); the lines are unwrapped and split into sentences, so no
header and no phrase cut at a line end reaches a triplet. Text without headers is taken whole.

Example:
    >>> PatternExtractor()("There is a small left pleural effusion, suggestive of heart failure. No pneumothorax.")
    [('small left pleural effusion', 'suggestive_of', 'heart failure')]
    >>> report_sentences(" FINDINGS: Small left pleural\\n effusion.\\n \\n IMPRESSION:  Heart failure.")
    ['Small left pleural effusion.', 'Heart failure.']
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
#: Hedges after a diagnosis that are not part of it ("pneumonia in the appropriate clinical setting").
_TAIL_HEDGE = re.compile(
    r"\s+(in the (appropriate|right|proper|correct) clinical (setting|context)|if clinically indicated|"
    r"given the clinical history)$",
    re.IGNORECASE,
)
_NEGATION = re.compile(r"^\s*(no|without|negative for)\b|\bno (evidence|sign) of\b", re.IGNORECASE)


#: A section header at the start of a line: capitals (and spaces, slashes, brackets) then a colon.
_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z ()/,&-]*[A-Z)]):", re.MULTILINE)
#: Header names (lower case) whose sections describe the image, mapped to one name.
IMAGE_SECTIONS = {
    "findings": "findings",
    "finding": "findings",
    "impression": "impression",
    "impressions": "impression",
    "conclusion": "impression",
    "findings and impression": "impression",
    "findings/impression": "impression",
    "impression/findings": "impression",
}
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=\S)")
_LIST_NUMBER = re.compile(r"^\(?\d{1,2}[.)]\s*")


def report_sections(text: str) -> dict[str, str]:
    """``{section name (lower case): its text}`` of a report with capitalised headers.

    Text before the first header is ``"preamble"`` (MIMIC-CXR's ``FINAL REPORT`` line); a repeated
    header's texts are joined. No headers gives ``{}``.

    Example:
        >>> report_sections(" INDICATION:  Cough.\\n FINDINGS:  Clear lungs.")
        {'preamble': '', 'indication': 'Cough.', 'findings': 'Clear lungs.'}
    """
    matches = list(_HEADER.finditer(text))
    if not matches:
        return {}
    out = {"preamble": text[: matches[0].start()].strip()}
    for m, nxt in zip(matches, [*matches[1:], None]):
        name = " ".join(m.group(1).lower().split())
        body = text[m.end() : nxt.start() if nxt else len(text)].strip()
        out[name] = f"{out[name]}\n\n{body}".strip() if name in out else body
    return out


def image_text(text: str) -> str:
    """The part of a report that describes the image (see the module docstring)."""
    sections = report_sections(text)
    if not sections:
        return text
    wanted = [body for name, body in sections.items() if name in IMAGE_SECTIONS and body]
    if wanted:
        return "\n\n".join(wanted)
    paragraphs = [p for p in _BLANK_LINE.split(text) if p.strip()]
    last = paragraphs[-1] if paragraphs else ""
    return "" if _HEADER.match(last) and not _HEADER.sub("", last).strip() else _HEADER.sub("", last)


def split_sentences(text: str) -> list[str]:
    """Sentences of plain text: paragraphs at blank lines, lines unwrapped, split after '.', '!', '?', ';'.

    A leading list number ("1. ") is dropped.

    Example:
        >>> split_sentences("Mild pulmonary\\n edema.  Small effusion;\\n \\n 2. No pneumothorax.")
        ['Mild pulmonary edema.', 'Small effusion;', 'No pneumothorax.']
    """
    out = []
    for paragraph in _BLANK_LINE.split(text):
        flat = " ".join(paragraph.split())  # unwrap: a line end inside a paragraph is a space
        for sentence in _SENTENCE_END.split(flat):
            sentence = _LIST_NUMBER.sub("", sentence).strip()
            if sentence and not re.fullmatch(r"[\W\d_]*", sentence):
                out.append(sentence)
    return out


def report_sentences(text: str) -> list[str]:
    """The sentences of a report that describe the image: `image_text`, then `split_sentences`."""
    return split_sentences(image_text(text))


class PatternExtractor:
    """Rule-based `finding suggestive_of diagnosis` extraction (see the module docstring)."""

    relation = "suggestive_of"

    def __call__(self, text: str) -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = []
        for sentence in report_sentences(text):
            if _NEGATION.search(sentence):
                continue
            parts = _CUE_RE.split(sentence, maxsplit=1)
            if len(parts) < 3:
                continue
            head = _ARTICLES.sub("", _OPENERS.sub("", parts[0].strip(" ,"))).strip(" ,")
            tail = re.split(r"[.;!?]|,\s", parts[2], maxsplit=1)[0].strip(" ,")
            tail = _TAIL_HEDGE.sub("", _ARTICLES.sub("", tail)).strip(" ,")
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
        annotations = self.model([" ".join(report_sentences(text))])
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
