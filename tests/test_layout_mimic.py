"""MIMIC-NLE + MIMIC-CXR in their real layouts, end to end through the Med-XPT recipe.

Written here, never copied: MIMIC-NLE's ``mimic-nle-{train,test}.json`` (JSON lines with
``sentence_ID``, ``nle``, ``patient_ID``, ``report_ID``, ``diagnosis_label``, ``evidence_label``,
``img_labels``), MIMIC-CXR's reports ``files/p10/p10000032/s50414267.txt`` (hard-wrapped near 78
columns, a leading space, capitalised section headers) and MIMIC-CXR-JPG's
``files/p10/p10000032/s50414267/<dicom_id>.jpg`` with ``mimic-cxr-2.0.0-metadata.csv.gz``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmgpt2.apps.medical.extract import PatternExtractor, report_sentences
from mmgpt2.apps.medical.mimic_nle import CLASSES, read_mimic_nle, read_view_positions, study_images
from mmgpt2.errors import Mmgpt2Error

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))

# Reports as MIMIC-CXR writes them: a title line, sections, lines wrapped mid-sentence.
REPORT_FULL = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)
 
 INDICATION:  ___F with new onset ascites, concerning for infection  // eval
 for pneumonia
 
 TECHNIQUE:  Chest PA and lateral
 
 COMPARISON:  None.
 
 FINDINGS: 
 
 There is a small left pleural effusion with adjacent basilar opacity, suggestive
 of atelectasis.  The cardiomediastinal silhouette is normal.  No pneumothorax.
 Patchy opacity in the right lower lobe, concerning for pneumonia in the
 appropriate clinical setting.
 
 IMPRESSION: 
 
 Mild pulmonary vascular congestion, consistent with mild
 fluid overload.
"""
REPORT_IMPRESSION_ONLY = """                                 FINAL REPORT
 INDICATION:  Shortness of breath.
 
 IMPRESSION:  Interval increase in bilateral perihilar haziness, compatible with
 moderate pulmonary edema.  No pneumothorax.
"""
REPORT_NO_SECTIONS_OF_INTEREST = """                                 FINAL REPORT
 EXAMINATION:  CHEST PORTABLE
 
 INDICATION:  Line placement.
 
 Right internal jugular catheter ends in the low SVC.  Streaky left basal
 opacity, likely representing atelectasis.
"""
FULL_TRIPLETS = [
    ("small left pleural effusion with adjacent basilar opacity", "suggestive_of", "atelectasis"),
    ("patchy opacity in the right lower lobe", "suggestive_of", "pneumonia"),
    ("mild pulmonary vascular congestion", "suggestive_of", "mild fluid overload"),
]
HEADERS = ("FINDINGS", "IMPRESSION", "INDICATION", "EXAMINATION", "COMPARISON", "TECHNIQUE", "REPORT")

LATERAL, PA, AP = "LATERAL", "PA", "AP"
# (patient, study, [(dicom_id, view)], report): dicom ids sort lateral first, as they often do
STUDIES = [
    ("p10000032", "s50414267", [("02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", LATERAL),
                                ("174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", PA)], REPORT_FULL),
    ("p10000764", "s57375967", [("096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4", LATERAL),
                                ("b79e55c3-735ce5ac-64412506-cdc9ea79-f1af521f", AP)], REPORT_IMPRESSION_ONLY),
    ("p10000898", "s50771383", [("1a0ae5e7-2a0d6cd6-90c6f9b5-ee8c1c8d-4f3d5f0e", AP),
                                ("4d8f6b1a-9c1e0e22-7a9c2c11-52a1f5c3-0b6e8e41", PA)], REPORT_NO_SECTIONS_OF_INTEREST),
    ("p11000183", "s51967283", [("2b1c3d4e-5f6a7b8c-9d0e1f2a-3b4c5d6e-7f8a9b0c", AP)], REPORT_FULL),
    ("p12000101", "s52000001", [("3c2d1e0f-aaaaaaaa-bbbbbbbb-cccccccc-dddddddd", PA)], REPORT_IMPRESSION_ONLY),
    ("p13000077", "s53000002", [("4d3e2f10-eeeeeeee-ffffffff-00000000-11111111", PA)], REPORT_FULL),
    ("p14000555", "s54000003", [], REPORT_FULL),  # a study without images: reported, not scored
]  # fmt: skip


def labels(diagnoses: dict[str, str]) -> tuple[list[int], list[list[int]]]:
    """diagnosis_label and img_labels for {class: "positive" | "uncertain"}."""
    onehot = {"negative": [1, 0, 0], "uncertain": [0, 1, 0], "positive": [0, 0, 1]}
    return (
        [int(c in diagnoses) for c in CLASSES],
        [onehot[diagnoses.get(c, "negative")] for c in CLASSES],
    )


def nle(study_index: int, k: int, diagnoses: dict[str, str], text: str) -> dict:
    patient, study = STUDIES[study_index][:2]
    diagnosis_label, img_labels = labels(diagnoses)
    return {
        "sentence_ID": f"{study}#{k}",
        "nle": text,
        "patient_ID": patient,
        "report_ID": study,
        "diagnosis_label": diagnosis_label,
        "evidence_label": [0] * len(CLASSES),
        "img_labels": img_labels,
    }


def write_mimic(root: Path, metadata: bool = True) -> Path:
    """MIMIC-NLE, MIMIC-CXR reports and MIMIC-CXR-JPG (with its metadata) under `root`."""
    meta = io.StringIO()
    columns = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition"]
    columns += ["Rows", "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning"]
    columns += ["ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning"]
    writer = csv.writer(meta)
    writer.writerow(columns)
    for n, (patient, study, images, report) in enumerate(STUDIES):
        folder = root / "mimic-cxr" / "files" / patient[:3] / patient
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{study}.txt").write_text(report)
        for k, (dicom, view) in enumerate(images):
            image_dir = root / "mimic-cxr-jpg" / "files" / patient[:3] / patient / study
            image_dir.mkdir(parents=True, exist_ok=True)
            shade = 40 + 25 * n + (90 if view == LATERAL else 0) + 10 * k
            Image.new("L", (64, 64), shade).save(image_dir / f"{dicom}.jpg")
            writer.writerow([dicom, patient[1:], study[1:], "CHEST (PA AND LAT)", view, 3056, 2544])
    if metadata:
        with gzip.open(root / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-metadata.csv.gz", "wt") as f:
            f.write(meta.getvalue())
    train = [
        nle(0, 0, {"Atelectasis": "positive"}, "small left pleural effusion with adjacent basilar opacity"),
        nle(0, 3, {"Pneumonia": "uncertain"}, "patchy opacity in the right lower lobe"),
        nle(2, 1, {"Atelectasis": "positive"}, "streaky left basal opacity"),
        nle(3, 0, {"Edema": "uncertain"}, "mild pulmonary vascular congestion"),
        nle(5, 0, {"Atelectasis": "positive", "Pneumonia": "uncertain"}, "basilar opacity"),
    ]
    test = [
        nle(1, 0, {"Edema": "uncertain"}, "increase in bilateral perihilar haziness"),
        nle(4, 0, {"Edema": "positive"}, "bilateral perihilar haziness"),
        nle(6, 0, {"Pleural Effusion": "positive"}, "blunting of the costophrenic angle"),
    ]
    (root / "mimic-nle").mkdir()
    for split, rows in (("train", train), ("test", test)):
        (root / "mimic-nle" / f"mimic-nle-{split}.json").write_text(
            "".join(json.dumps(r) + "\n" for r in rows)
        )
    return root


def recipe_args(root: Path, out: Path, *extra: str) -> list[str]:
    argv = ["--mimic-nle", str(root / "mimic-nle"), "--images", str(root / "mimic-cxr-jpg")]
    argv += ["--reports", str(root / "mimic-cxr"), "--out", str(out)]
    argv += ["--encoder", "embedded:chest-clip", "--lm", "embedded:chest-gpt2", "--layers", "1"]
    argv += ["--max-steps", "2", "--batch-size", "4", "--warmup-steps", "1", "--max-new-tokens", "12"]
    return argv + list(extra)


def test_reports_are_unwrapped_and_only_findings_and_impression_give_triplets():
    sentences = report_sentences(REPORT_FULL)
    assert sentences[0] == (
        "There is a small left pleural effusion with adjacent basilar opacity, suggestive of atelectasis."
    )
    assert not any("INDICATION" in s or "ascites" in s or "COMPARISON" in s for s in sentences)
    ex = PatternExtractor()
    assert ex(REPORT_FULL) == FULL_TRIPLETS  # nothing cut at a line end, no "concerning for infection"
    assert ex(REPORT_IMPRESSION_ONLY) == [
        ("interval increase in bilateral perihilar haziness", "suggestive_of", "moderate pulmonary edema")
    ]
    # neither FINDINGS nor IMPRESSION: the last paragraph, as MIT-LCP's section parser does
    assert ex(REPORT_NO_SECTIONS_OF_INTEREST) == [
        ("streaky left basal opacity", "suggestive_of", "atelectasis")
    ]
    for report in (REPORT_FULL, REPORT_IMPRESSION_ONLY, REPORT_NO_SECTIONS_OF_INTEREST):
        for triplet in ex(report):
            text = " ".join(triplet)
            assert ":" not in text and not any(h.lower() in text for h in HEADERS), triplet


def test_frontal_view_is_pa_then_ap_from_the_metadata(tmp_path):
    root = write_mimic(tmp_path)
    views = read_view_positions(root / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-metadata.csv.gz")
    records = read_mimic_nle(root / "mimic-nle" / "mimic-nle-train.json")
    chosen = [study_images(root / "mimic-cxr-jpg", r, view_positions=views)[0].stem for r in records]
    assert chosen[0] == STUDIES[0][2][1][0]  # PA, not the lateral that sorts first
    assert chosen[2] == STUDIES[2][2][1][0]  # PA before AP
    assert chosen[3] == STUDIES[3][2][0][0]  # AP when there is no PA
    assert [r.diagnosis_text for r in records[:2]] == ["atelectasis", "possible pneumonia"]


def test_medxpt_recipe_end_to_end_on_the_real_layout(tmp_path, capsys):
    import medxpt_mimic_nle

    torch.set_num_threads(1)
    root = write_mimic(tmp_path / "data")
    out = tmp_path / "run"
    argv = recipe_args(root, out, "--kg-k", "2", "--metrics", "BLEU-4,ROUGE-L,CIDEr")
    assert medxpt_mimic_nle.main(argv) == 0
    printed = capsys.readouterr()
    assert "WARNING" not in printed.err  # the metadata was found in the images folder
    rows = json.loads((out / "predictions.json").read_text())
    scores = json.loads((out / "scores.json").read_text())
    assert [r["id"] for r in rows] == ["s57375967#0", "s52000001#0"]
    assert rows[0]["diagnosis"] == "possible edema" and rows[1]["diagnosis"] == "edema"
    assert rows[0]["references"] == ["increase in bilateral perihilar haziness"]
    assert rows[0]["image"].endswith(
        "b79e55c3-735ce5ac-64412506-cdc9ea79-f1af521f.jpg"
    )  # the AP, not lateral
    assert scores["unscored"] == {"s54000003#0": "no frontal image"}
    assert scores["explanations_scored"] == 2 and "CIDEr" in scores
    # the KG holds the training reports' triplets, whole, and no test report's
    kg = [json.loads(x) for x in (out / "model" / "kg" / "triplets.jsonl").read_text().splitlines()]
    heads = {t["head"] for t in kg}
    assert heads == {t[0] for t in FULL_TRIPLETS} | {"streaky left basal opacity"}
    assert all(set(t["source_ids"]) <= {"s50414267", "s50771383", "s51967283", "s53000002"} for t in kg)


def test_without_metadata_the_recipe_says_it_takes_the_first_image(tmp_path, capsys):
    import medxpt_mimic_nle

    root = write_mimic(tmp_path / "data", metadata=False)
    with pytest.raises(Mmgpt2Error, match="too little room"):  # stops before training: cheap to reach
        medxpt_mimic_nle.main(recipe_args(root, tmp_path / "run", "--max-new-tokens", "400"))
    err = capsys.readouterr().err
    assert "WARNING" in err and "LATERAL" in err and "--metadata" in err


def test_real_length_prompts_overflowing_the_embedded_lm_stop_before_training(tmp_path):
    import medxpt_mimic_nle

    root = write_mimic(tmp_path / "data")
    with pytest.raises(Mmgpt2Error, match=r"chest-gpt2.: 160 tokens.*--lm gpt2"):
        medxpt_mimic_nle.main(recipe_args(root, tmp_path / "run", "--kg-k", "7", "--max-new-tokens", "40"))
    assert not (tmp_path / "run" / "run").exists()  # no training step was taken
