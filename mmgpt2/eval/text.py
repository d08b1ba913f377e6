"""Sentence preparation shared by the caption evaluators: the reference tools' exact steps.

densevid_eval and SODA replace every non-ASCII character by a space, then run pycocoevalcap's
`PTBTokenizer` (Stanford PTB tokenizer, lowercased, punctuation dropped); COCOEvalCap runs the
tokenizer alone. Tokenization is line by line, so tokenizing each distinct sentence once (one Java
start for a whole evaluation) gives what the references get by tokenizing in batches.

Example:
    >>> ptb_tokenize([remove_nonascii("A café, then Zoë!")])  # doctest: +SKIP
    {'A caf , then Zo !': 'a caf then zo'}
"""

from __future__ import annotations

from collections.abc import Iterable

from mmgpt2.eval.java import require_java


def remove_nonascii(text: str) -> str:
    """Each character outside ASCII becomes one space (densevid_eval's and SODA's rule)."""
    return "".join(c if ord(c) < 128 else " " for c in text)


def ptb_tokenize(sentences: Iterable[str]) -> dict[str, str]:
    """``{sentence: tokenized}`` for each distinct sentence, from one PTBTokenizer run.

    A carriage return would split a sentence into two lines for the Java tokenizer and shift every
    later sentence (pycocoevalcap replaces only ``\\n``), so it becomes a space first.
    """
    require_java()
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    distinct = list(dict.fromkeys(sentences))
    if not distinct:
        return {}
    batch = {i: [{"caption": s.replace("\r", " ")}] for i, s in enumerate(distinct)}
    tokens = PTBTokenizer().tokenize(batch)
    if len(tokens) != len(distinct):  # never silently misalign sentences and tokens
        raise RuntimeError(f"PTBTokenizer returned {len(tokens)} lines for {len(distinct)} sentences")
    return {s: tokens[i][0] for i, s in enumerate(distinct)}
