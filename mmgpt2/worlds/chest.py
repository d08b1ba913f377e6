"""The chest world: grayscale chest-X-ray-like images with findings you can see, and their text.

Each case has at most one finding drawn into a synthetic frontal radiograph (dark lungs, bright
mediastinum, spine, ribs, noise). Findings differ in kind, side and severity, and each looks
different: a bright blob in a lobe (opacity), a fluid level at a lung base (effusion), a wide
heart (enlarged cardiac silhouette), a dark rim with a thin pleural line at an apex
(pneumothorax), bilateral haze (edema), a small round spot (nodule), a band at a base
(atelectasis). Alongside: a short report, the diagnosis label (MIMIC-NLE class names), the
explanation a radiologist would give, and `finding suggestive_of diagnosis` triplets.

Sides follow the radiological convention: the patient's right is on the image's left.

Example:
    >>> from mmgpt2.worlds.chest import sample_case, render_case
    >>> case = sample_case(random.Random(0))
    >>> render_case(case, random.Random(0)).size
    (96, 96)
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

IMAGE_SIZE = 96
SEVERITIES = ("small", "moderate", "large")

#: finding kind -> (diagnosis it suggests, whether it has a side, whether it has a lobe)
KINDS: dict[str, tuple[str, bool, bool]] = {
    "opacity": ("Pneumonia", True, True),
    "effusion": ("Pleural Effusion", True, False),
    "cardiomegaly": ("Enlarged Cardiomediastinum", False, False),
    "pneumothorax": ("Pneumothorax", True, False),
    "edema": ("Edema", False, False),
    "nodule": ("Lung Lesion", True, False),
    "atelectasis": ("Atelectasis", True, False),
}
NORMAL = "No Finding"
#: Finding kinds held out of the explanations one pair of benchmark explainers is trained on (their
#: reports still fill the knowledge graph): explanation labels are scarce and reports plentiful,
#: and these are the findings a graph built from reports must carry on its own.
UNSEEN_KINDS = ("pneumothorax", "nodule")


@dataclass
class ChestCase:
    """One synthetic study: what is drawn and what is written about it."""

    kind: str | None  # None: a normal study
    side: str | None = None  # "right" / "left"
    lobe: str | None = None  # "upper" / "lower"
    severity: str | None = None

    @property
    def diagnosis(self) -> str:
        return KINDS[self.kind][0] if self.kind else NORMAL

    @property
    def finding(self) -> str:
        """The finding phrase, e.g. "moderate left basal pleural effusion" (the KG triplet head)."""
        s, side, lobe = self.severity, self.side, self.lobe
        return {
            None: "clear lungs",
            "opacity": f"{s} {side} {lobe} lobe opacity",
            "effusion": f"{s} {side} pleural effusion",
            "cardiomegaly": f"{s} enlargement of the cardiac silhouette",
            "pneumothorax": f"{s} {side} apical pneumothorax",
            "edema": f"{s} bilateral hazy opacities",
            "nodule": f"{s} {side} lung nodule",
            "atelectasis": f"{s} {side} basal linear atelectasis",
        }[self.kind]

    def triplets(self) -> list[tuple[str, str, str]]:
        """`(finding, suggestive_of, diagnosis)` as a report-derived KG would hold them."""
        return [] if self.kind is None else [(self.finding, "suggestive_of", self.diagnosis.lower())]

    def report(self, rng: random.Random) -> str:
        """A short free-text report (findings + impression)."""
        if self.kind is None:
            return rng.choice(
                [
                    "The lungs are clear. Heart size is normal. No pleural effusion or pneumothorax.",
                    "No acute cardiopulmonary process. The lungs are clear and the heart is normal in size.",
                ]
            )
        opener = rng.choice(["There is", "Frontal view shows", "The radiograph demonstrates"])
        tail = rng.choice(
            ["No other acute abnormality.", "The remaining lung is clear.", "Bones are unremarkable."]
        )
        return f"{opener} {self.finding}, suggestive of {self.diagnosis.lower()}. {tail}"

    def explanation(self, rng: random.Random) -> str:
        """Why the image supports the diagnosis (the target text of the explainer)."""
        if self.kind is None:
            return "the lungs are clear with no focal opacity, effusion or pneumothorax"
        verb = rng.choice(["suggesting", "consistent with", "in keeping with"])
        return f"{self.finding} {verb} {self.diagnosis.lower()}"


def all_cases() -> list[ChestCase]:
    """Every distinct case the world can draw (normal included)."""
    cases = [ChestCase(None)]
    for kind, (_, sided, lobed) in KINDS.items():
        for severity in SEVERITIES:
            for side in ("right", "left") if sided else (None,):
                for lobe in ("upper", "lower") if lobed else (None,):
                    cases.append(ChestCase(kind, side, lobe, severity))
    return cases


def triplet_line(case: ChestCase) -> str:
    """The case's triplet as the knowledge graph writes it: "<finding> suggestive of <diagnosis>"."""
    from mmgpt2.apps.medical.kg import triplet_text

    return triplet_text(*case.triplets()[0]) if case.kind else ""


def distractor_triplets(
    case: ChestCase, rng: random.Random, n: int = 7, miss_rate: float = 0.05
) -> list[str]:
    """`n` triplet lines the way retrieval returns them: usually the case's own first, then near misses.

    Near misses share the finding kind (other side or severity); the rest are random. Used to
    write the frozen GPT-2's pretraining documents in the prompt format it will be read in.
    `miss_rate` is the share of lists shuffled, as when retrieval misses: about 1 - recall@1 of the
    shipped chest-clip (0.97). A higher rate (0.3 in the first build) taught the 2-layer LM that the
    order means little, and it then wrote the most common severity instead of the retrieved one.
    """
    own = triplet_line(case) if case.kind else None
    same = [triplet_line(c) for c in all_cases() if c.kind and c.kind == case.kind and triplet_line(c) != own]
    other = [triplet_line(c) for c in all_cases() if c.kind and c.kind != case.kind]
    rng.shuffle(same)
    pool = same[: n // 2] + rng.sample(other, n)
    lines = ([own] if own else []) + pool
    lines = list(dict.fromkeys(lines))[:n]
    if own and rng.random() < miss_rate:  # retrieval is not perfect: the right triplet is not always first
        rng.shuffle(lines)
    return lines


def sample_case(rng: random.Random, normal_rate: float = 0.1) -> ChestCase:
    """A random case: about `normal_rate` normals, the findings uniform by kind."""
    if rng.random() < normal_rate:
        return ChestCase(None)
    kind = rng.choice(list(KINDS))
    _, sided, lobed = KINDS[kind]
    return ChestCase(
        kind,
        side=rng.choice(["right", "left"]) if sided else None,
        lobe=rng.choice(["upper", "lower"]) if lobed else None,
        severity=rng.choice(SEVERITIES),
    )


# --- drawing -------------------------------------------------------------------------------------
def _lung_box(side: str, size: int, jitter: tuple[int, int]) -> tuple[int, int, int, int]:
    """Bounding box of a lung field; patient's right lung is on the image's left."""
    s, (jx, jy) = size, jitter
    if side == "right":
        return (int(0.14 * s) + jx, int(0.16 * s) + jy, int(0.46 * s) + jx, int(0.84 * s) + jy)
    return (int(0.54 * s) + jx, int(0.16 * s) + jy, int(0.86 * s) + jx, int(0.84 * s) + jy)


def render_case(case: ChestCase, rng: random.Random, size: int = IMAGE_SIZE) -> Image.Image:
    """Draw `case` as an 8-bit grayscale radiograph-like image of `size` x `size` pixels."""
    s = size
    scale = {"small": 0.6, "moderate": 0.85, "large": 1.1}.get(case.severity or "", 1.0)
    jit = (rng.randint(-2, 2) * s // 96, rng.randint(-2, 2) * s // 96)
    img = Image.new("L", (s, s), 20)
    d = ImageDraw.Draw(img)
    d.ellipse(
        (int(0.05 * s), int(0.08 * s), int(0.95 * s), int(1.1 * s)), fill=rng.randint(115, 135)
    )  # soft tissue
    lungs = {side: _lung_box(side, s, jit) for side in ("right", "left")}
    for box in lungs.values():
        d.ellipse(box, fill=rng.randint(40, 55))
    for i in range(6):  # ribs: faint arcs across both lungs
        y = int((0.22 + 0.1 * i) * s) + jit[1]
        for box in lungs.values():
            d.arc((box[0] - 4, y - 8, box[2] + 4, y + 8), 200, 340, fill=80, width=max(1, s // 96))
    d.rectangle((int(0.47 * s), int(0.05 * s), int(0.53 * s), s), fill=170)  # spine
    heart_w = 0.17 * s * (1 + (0.45 * scale if case.kind == "cardiomegaly" else 0.0))
    cx, cy = int(0.53 * s) + jit[0], int(0.66 * s) + jit[1]
    d.ellipse((int(cx - heart_w * 0.45), int(cy - 0.13 * s), int(cx + heart_w), int(cy + 0.14 * s)), fill=175)

    box = lungs.get(case.side or "right")
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    k = case.kind
    if k == "opacity":
        cy_ = y0 + h * (0.3 if case.lobe == "upper" else 0.68)
        r = w * 0.28 * scale
        d.ellipse((x0 + w / 2 - r, cy_ - r, x0 + w / 2 + r, cy_ + r), fill=rng.randint(150, 170))
    elif k == "effusion":
        level = y1 - h * 0.22 * scale * 1.4
        d.chord((x0, level - h * 0.1, x1, y1 + h * 0.2), 0, 180, fill=190)
        d.rectangle((x0 + 1, level, x1 - 1, y1), fill=190)
    elif k == "pneumothorax":
        depth = h * 0.35 * scale
        d.ellipse((x0, y0, x1, y0 + 2 * depth), fill=5)  # no lung markings: black
        inset = w * 0.18 * scale
        d.arc((x0 + inset, y0 + inset, x1 - inset, y0 + 2 * depth), 180, 360, fill=230, width=max(1, s // 64))
    elif k == "edema":
        haze = Image.new("L", (s, s), 0)
        hd = ImageDraw.Draw(haze)
        for b in lungs.values():
            hd.ellipse(b, fill=int(45 * scale + 20))
        img = Image.fromarray(
            np.clip(
                np.asarray(img, np.int16)
                + np.asarray(haze.filter(ImageFilter.GaussianBlur(s / 24)), np.int16),
                0,
                255,
            ).astype(np.uint8)
        )
        d = ImageDraw.Draw(img)
    elif k == "nodule":
        r = s * 0.035 * (scale + 0.4)
        nx, ny = x0 + w * rng.uniform(0.35, 0.65), y0 + h * rng.uniform(0.3, 0.6)
        d.ellipse((nx - r, ny - r, nx + r, ny + r), fill=220)
    elif k == "atelectasis":
        by = y1 - h * 0.22
        thick = max(2, int(s * 0.03 * (scale + 0.3)))
        d.line((x0 + w * 0.15, by - 4, x1 - w * 0.15, by + 4), fill=185, width=thick)

    arr = np.asarray(img.filter(ImageFilter.GaussianBlur(0.8 * s / 96)), np.float32)
    arr += np.random.default_rng(rng.randint(0, 2**31)).normal(0, 6, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")


# --- the dataset on disk --------------------------------------------------------------------------
def make_records(
    n: int, seed: int, out: str | os.PathLike | None = None, size: int = IMAGE_SIZE
) -> list[dict]:
    """`n` cases as records; with `out`, also write `images/*.png` and `records.jsonl` there.

    Each record: ``{"id", "image", "diagnosis", "findings", "explanation", "report", "triplets",
    "case"}`` (`image` is relative to `out`). The same `seed` gives the same data.

    Example:
        >>> recs = make_records(4, seed=0, out="/tmp/chest")
        >>> sorted(recs[0])[:3]
        ['case', 'diagnosis', 'explanation']
    """
    rng = random.Random(seed)
    records = []
    folder = Path(out) if out is not None else None
    if folder is not None:
        (folder / "images").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        case = sample_case(rng)
        rid = f"s{seed:03d}{i:06d}"
        image = render_case(case, rng, size)
        rel = f"images/{rid}.png"
        if folder is not None:
            image.save(folder / rel)
        records.append(
            {
                "id": rid,
                "image": rel,
                "diagnosis": case.diagnosis,
                "findings": [case.finding] if case.kind else [],
                "explanation": case.explanation(rng),
                "report": case.report(rng),
                "triplets": [
                    {"head": h, "relation": r, "tail": t, "source_id": rid} for h, r, t in case.triplets()
                ],
                "case": asdict(case),
            }
        )
    if folder is not None:
        from mmgpt2.checkpoint import atomic_write

        lines = "".join(json.dumps(r) + "\n" for r in records)
        atomic_write(folder / "records.jsonl", lambda p: p.write_text(lines))
    return records


def generate(n: int, seed: int, out: str | os.PathLike) -> Path:
    """Write `n` chest cases to `out` (images + `records.jsonl`); the `mmgpt2 world chest` command."""
    make_records(n, seed, out)
    return Path(out)


def write(out_dir: str | os.PathLike, n: int, seed: int) -> Path:
    """The world interface (`mmgpt2 world chest --n N --seed S --out DIR`); returns the `records.jsonl` path."""
    return generate(n, seed, out_dir) / "records.jsonl"
