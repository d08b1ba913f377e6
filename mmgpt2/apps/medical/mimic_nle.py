"""MIMIC-NLE reader: natural-language explanations of chest X-ray diagnoses (Kayser et al. 2022).

MIMIC-NLE needs credentialed PhysioNet access, so nothing here downloads: point the reader at your
local copy. Files ``mimic-nle-{train,dev,test}.json`` are JSON lines::

    {"sentence_ID": "s51038639#2", "nle": "<explanation>", "patient_ID": "p11662490",
     "report_ID": "s51038639", "diagnosis_label": [10 x 0/1], "evidence_label": [10 x 0/1],
     "img_labels": [10 x [negative, uncertain, positive] one-hot]}

Class order: `CLASSES`. Images come from MIMIC-CXR-JPG by patient and study
(``files/p11/p11662490/s51038639/<dicom_id>.jpg``); a study can hold several views, whose
``ViewPosition`` (PA, AP, LATERAL, LL, ...) is in ``mimic-cxr-2.0.0-metadata.csv(.gz)``. The
reports are MIMIC-CXR's ``files/p11/p11662490/s51038639.txt`` (`read_study_reports`).

Example:
    >>> recs = read_mimic_nle("/data/mimic-nle/mimic-nle-test.json")  # doctest: +SKIP
    >>> recs[0].diagnoses, recs[0].explanation  # doctest: +SKIP
    (['Pleural Effusion'], 'blunting of the costophrenic angle ...')
    >>> study_images("/data/mimic-cxr-jpg", recs[0])  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import gzip
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
    def uncertain(self) -> list[str]:
        """The explained diagnoses that ``img_labels`` marks uncertain."""
        return [d for d in self.diagnoses if self.image_labels.get(d) == "uncertain"]

    @property
    def diagnosis_text(self) -> str:
        """The diagnoses as one phrase for the prompt, uncertain ones as such: "edema and possible pneumonia"."""
        from mmgpt2.apps.medical.prompt import diagnosis_phrase

        return diagnosis_phrase([(d, d in self.uncertain) for d in self.diagnoses])


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


#: Frontal views, in the order one is chosen: posteroanterior, then anteroposterior.
FRONTAL_VIEWS = ("PA", "AP")


def read_view_positions(metadata_csv: str | os.PathLike) -> dict[str, str]:
    """``dicom_id -> ViewPosition`` from MIMIC-CXR-JPG's ``mimic-cxr-2.0.0-metadata.csv`` (or ``.csv.gz``)."""
    path = Path(metadata_csv)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file; MIMIC-CXR-JPG ships it as mimic-cxr-2.0.0-metadata.csv.gz"
        )
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"dicom_id", "ViewPosition"} <= set(reader.fieldnames or []):
            raise Mmgpt2Error(
                f"{path}: needs the columns dicom_id and ViewPosition (is this mimic-cxr-2.0.0-metadata.csv?)"
            )
        return {row["dicom_id"]: row["ViewPosition"] or "" for row in reader}


def _study_parts(record: MimicNleRecord) -> tuple[str, str]:
    pid, sid = record.patient_id, record.study_id
    return (pid if pid.startswith("p") else f"p{pid}"), (sid if sid.startswith("s") else f"s{sid}")


def _under_files(root: str | os.PathLike, *parts: str) -> Path:
    """``root/files/...`` or, for a root that already is ``files/`` (or MIMIC-NLE's ``mimic_reports``), ``root/...``."""
    root = Path(root)
    inside = root / "files" / Path(*parts)
    return inside if (root / "files").is_dir() else root / Path(*parts)


def study_images(
    image_root: str | os.PathLike,
    record: MimicNleRecord,
    views: tuple[str, ...] | None = FRONTAL_VIEWS,
    view_positions: dict[str, str] | None = None,
) -> list[Path]:
    """The study's JPGs under MIMIC-CXR-JPG's ``files/pXX/pXXXXXXXX/sYYYYYYYY/``.

    With `view_positions` (from `read_view_positions`), only `views` are kept, in the order of
    `views` (PA before AP); without them every image is returned by file name.
    """
    pid, sid = _study_parts(record)
    folder = _under_files(image_root, pid[:3], pid, sid)
    images = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    if view_positions is not None and views is not None:
        images = [p for p in images if view_positions.get(p.stem, "") in views]
        images.sort(key=lambda p: views.index(view_positions[p.stem]))
    return images


def report_path(report_root: str | os.PathLike, record: MimicNleRecord) -> Path:
    """MIMIC-CXR's report of the record's study: ``files/pXX/pXXXXXXXX/sYYYYYYYY.txt``."""
    pid, sid = _study_parts(record)
    return _under_files(report_root, pid[:3], pid, f"{sid}.txt")


def read_study_reports(
    report_root: str | os.PathLike, records: list[MimicNleRecord]
) -> tuple[dict[str, str], list[str]]:
    """``({study_id: report text}, [study ids without a report])`` for the records' studies.

    Example:
        >>> reports, missing = read_study_reports("/data/mimic-cxr-reports", train_records)  # doctest: +SKIP
    """
    if not Path(report_root).is_dir():
        raise FileNotFoundError(
            f"{report_root}: no such folder; give MIMIC-CXR's reports folder (files/p1X/p1XXXXXXX/sYYYYYYYY.txt)"
        )
    reports: dict[str, str] = {}
    missing: list[str] = []
    for rec in records:
        if rec.study_id in reports or rec.study_id in missing:
            continue
        path = report_path(report_root, rec)
        if path.is_file():
            reports[rec.study_id] = path.read_text(encoding="utf-8", errors="replace")
        else:
            missing.append(rec.study_id)
    return reports, missing
