"""Med-XPT's prompt: the retrieved triplets, then the question, after the image prefix."""

from __future__ import annotations

from collections.abc import Sequence

KG_INTRO = "The image-specific triplets from the knowledge graph are:"


#: How a diagnosis labelled uncertain is named in the question (MIMIC-NLE's ``img_labels`` middle state).
UNCERTAIN = "possible"


def diagnosis_phrase(diagnoses: Sequence[tuple[str, bool]]) -> str:
    """Diagnoses as one phrase for the question; uncertain ones say so, as KG-LLaVA's prompts keep it.

    Example:
        >>> diagnosis_phrase([("Edema", False), ("Pneumonia", True)])
        'edema and possible pneumonia'
    """
    names = [f"{UNCERTAIN} {d.lower()}" if uncertain else d.lower() for d, uncertain in diagnoses]
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else (names[0] if names else "")


def build_prompt(triplets: Sequence[str] | None, diagnosis: str | None) -> str:
    """The text after the image prefix: retrieved triplets (if any), then the question.

    Example:
        >>> build_prompt(["effusion suggestive of heart failure"], "Pleural Effusion")
        'The image-specific triplets from the knowledge graph are: effusion suggestive of heart failure. Question: why does this chest x-ray suggest pleural effusion? Answer:'
    """
    parts = []
    if triplets:
        parts.append(f"{KG_INTRO} " + "; ".join(triplets) + ".")
    if diagnosis:
        parts.append(f"Question: why does this chest x-ray suggest {diagnosis.strip().lower()}? Answer:")
    else:
        parts.append("Question: what does this chest x-ray show? Answer:")
    return " ".join(parts)
