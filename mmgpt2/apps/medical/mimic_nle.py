"""MIMIC-NLE reader: natural-language explanations of chest X-ray diagnoses (Kayser et al. 2022).

MIMIC-NLE needs credentialed PhysioNet access, so nothing here downloads: point the reader at your
local copy. Files ``mimic-nle-{train,dev,test}.json`` are JSON lines::

    {"sentence_ID": "s51038639#2", "nle": "<explanation>", "patient_ID": "p11662490",
     "report_ID": "s51038639", "diagnosis_label": [10 x 0/1], "evidence_label": [10 x 0/1],
     "img_labels": [10 x [negative, uncertain, positive] one-hot]}

Class order: `CLASSES`. Images come from MIMIC-CXR-JPG by patient and study
(``files/p11/p11662490/s51038639/<dicom_id>.jpg``); a study can hold several views.

Example:
    >>> recs = read_mimic_nle("/data/mimic-nle/mimic-nle-test.json")
    >>> recs[0].diagnoses, recs[0].explanation
    (['Pleural Effusion'], 'blunting of the costophrenic angle ...')
    >>> study_images("/data/mimic-cxr-jpg", recs[0])
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from mmgpt2.errors import Mmgpt2Error

CLASSES = (
    "Atelectasis",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Lung Lesion",
    "Lung Opacity",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
)
LABEL_STATES = ("negative", "uncertain", "positive")


@dataclass
class MimicNleRecord:
    sentence_id: str
    explanation: str
    patient_id: str
    study_id: str
    diagnosis_label: list[int]
    evidence_label: list[int]
    image_labels: dict[str, str] = field(default_factory=dict)  # class -> negative / uncertain / positive

    @property
    def diagnoses(self) -> list[str]:
        """The classes this explanation explains (``diagnosis_label == 1``)."""
        return [c for c, on in zip(CLASSES, self.diagnosis_label) if on]

    @property
    def evidence(self) -> list[str]:
        """The classes this explanation serves as evidence for (``evidence_label == 1``)."""
        return [c for c, on in zip(CLASSES, self.evidence_label) if on]

    @property
    def diagnosis_text(self) -> str:
        """The diagnoses as one phrase for the prompt: "edema and pleural effusion"."""
        names = [d.lower() for d in self.diagnoses]
        return (
            " and ".join([", ".join(names[:-1]), names[-1]])
            if len(names) > 1
            else (names[0] if names else "")
        )


def _binary(value, n: int, where: str, name: str) -> list[int]:
    if not isinstance(value, list) or len(value) != len(CLASSES) or any(v not in (0, 1) for v in value):
        raise Mmgpt2Error(f"{where}: {name} must be a list of {len(CLASSES)} zeros/ones, got {value!r}")
    return [int(v) for v in value]


def parse_record(row: dict, where: str = "record") -> MimicNleRecord:
    """One JSON object -> `MimicNleRecord`; a missing or malformed field raises naming it."""
    if not isinstance(row, dict):
        raise Mmgpt2Error(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [
        k for k in ("sentence_ID", "nle", "patient_ID", "report_ID", "diagnosis_label") if k not in row
    ]
    if missing:
        raise Mmgpt2Error(f"{where}: missing field(s) {', '.join(missing)} (is this a MIMIC-NLE file?)")
    labels: dict[str, str] = {}
    img = row.get("img_labels")
    if img is not None:
        if not isinstance(img, list) or len(img) != len(CLASSES):
            raise Mmgpt2Error(f"{where}: img_labels must hold {len(CLASSES)} one-hot triples, got {img!r}")
        for cls, onehot in zip(CLASSES, img):
            if not isinstance(onehot, list) or len(onehot) != 3 or sorted(onehot) != [0, 0, 1]:
                raise Mmgpt2Error(
                    f"{where}: img_labels entry for {cls} must be one-hot [neg, unc, pos], got {onehot!r}"
                )
            labels[cls] = LABEL_STATES[onehot.index(1)]
    return MimicNleRecord(
        sentence_id=str(row["sentence_ID"]),
        explanation=str(row["nle"]).strip(),
        patient_id=str(row["patient_ID"]),
        study_id=str(row["report_ID"]),
        diagnosis_label=_binary(row["diagnosis_label"], len(CLASSES), where, "diagnosis_label"),
        evidence_label=_binary(
            row.get("evidence_label", [0] * len(CLASSES)), len(CLASSES), where, "evidence_label"
        ),
        image_labels=labels,
    )


def read_mimic_nle(path: str | os.PathLike) -> list[MimicNleRecord]:
    """Read a ``mimic-nle-{train,dev,test}.json`` JSON-lines file (errors name the file and line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file; MIMIC-NLE needs PhysioNet credentials, build it from MIMIC-CXR with "
            "https://github.com/maximek3/MIMIC-NLE and pass the local path"
        )
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise Mmgpt2Error(
                    f"{path}:{n}: not valid JSON ({err.msg}); MIMIC-NLE files hold one object per line"
                ) from err
            out.append(parse_record(row, f"{path}:{n}"))
    return out


def read_view_positions(metadata_csv: str | os.PathLike) -> dict[str, str]:
    """``dicom_id -> ViewPosition`` from MIMIC-CXR-JPG's ``mimic-cxr-2.0.0-metadata.csv``."""
    with open(metadata_csv, newline="", encoding="utf-8") as f:
        return {row["dicom_id"]: row.get("ViewPosition", "") for row in csv.DictReader(f)}


def study_images(
    image_root: str | os.PathLike,
    record: MimicNleRecord,
    views: tuple[str, ...] | None = ("PA", "AP"),
    view_positions: dict[str, str] | None = None,
) -> list[Path]:
    """The study's JPGs under MIMIC-CXR-JPG's ``files/pXX/pXXXXXXXX/sYYYYYYYY/``, frontal views first.

    With `view_positions` (from `read_view_positions`), only `views` are kept (None keeps all).
    """
    pid, sid = record.patient_id, record.study_id
    pid = pid if pid.startswith("p") else f"p{pid}"
    sid = sid if sid.startswith("s") else f"s{sid}"
    root = Path(image_root)
    folder = root / "files" / pid[:3] / pid / sid
    if not folder.is_dir():
        folder = root / pid[:3] / pid / sid  # a root that already points at files/
    images = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    if view_positions is not None and views is not None:
        images = [p for p in images if view_positions.get(p.stem, "") in views]
    return images
