"""pycocoevalcap's scorers, made once per process, applied to already tokenized sentences.

METEOR is a Java program whose start loads paraphrase tables (seconds, tens of seconds on a busy
machine), so one process keeps one. BLEU, ROUGE-L and CIDEr-D are cheap Python objects.

Example:
    >>> coco_scores({"1": ["a red circle"]}, {"1": ["a red circle"]})["Bleu_1"]  # doctest: +SKIP
    0.99999...
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

from mmgpt2.eval.java import require_java

#: Names as densevid_eval prints them, in its order.
COCO_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")


@functools.lru_cache(maxsize=1)
def meteor():
    """The process's METEOR scorer (one JVM)."""
    require_java()
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def meteor_segments(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """METEOR of each hypothesis against its references, in one call (segment scores)."""
    if not hypotheses:
        return []
    gts = {i: list(refs) for i, refs in enumerate(references)}
    res = {i: [h] for i, h in enumerate(hypotheses)}
    return [float(s) for s in meteor().compute_score(gts, res)[1]]


def coco_scores(
    references: Mapping[str, Sequence[str]], hypotheses: Mapping[str, Sequence[str]], metrics=COCO_METRICS
) -> dict[str, float]:
    """Corpus scores of tokenized ``hypotheses[k] = [one sentence]`` against ``references[k]``.

    Exactly what COCOEvalCap and densevid_eval compute for one set of items: CIDEr's document
    frequencies come from these references only.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    out: dict[str, float] = {}
    if any(m.startswith("Bleu") for m in metrics):
        bleu, _ = Bleu(4).compute_score(references, hypotheses, verbose=0)
        out.update({f"Bleu_{n + 1}": float(bleu[n]) for n in range(4)})
    if "METEOR" in metrics:
        out["METEOR"] = float(meteor().compute_score(references, hypotheses)[0])
    if "ROUGE_L" in metrics:
        out["ROUGE_L"] = float(Rouge().compute_score(references, hypotheses)[0])
    if "CIDEr" in metrics:
        out["CIDEr"] = float(Cider().compute_score(references, hypotheses)[0])
    return {k: out[k] for k in metrics}
