"""eval-captions / eval-dense through the CLI: hostile inputs get one line naming the file and entry.

Rows refer to /work/shared/HOSTILE-INPUTS.md section 4 (4.7-4.40).
"""

from __future__ import annotations

import json

import pytest

from mmgpt2.cli.main import main

GT = {
    "00000": {
        "duration": 20.0,
        "timestamps": [[0, 8], [8, 20]],
        "sentences": ["a red circle", "a blue square"],
    },
    "00001": {"duration": 10.0, "timestamps": [[0, 10]], "sentences": ["a green cross"]},
}


def write(tmp_path, name, data) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def run(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def dense(tmp_path, capsys, results, gt=None, extra=()):
    p = write(tmp_path, "pred.json", {"version": "VERSION 1.0", "results": results, "external_data": {}})
    g = write(tmp_path, "gt.json", GT if gt is None else gt)
    return run(["eval-dense", "--pred", p, "--gt", g, *extra], capsys)


GOOD_EVENT = {"sentence": "a red circle", "timestamp": [0, 8]}


@pytest.mark.parametrize(
    ("row", "event", "message"),
    [
        (
            "4.27",
            {"sentence": "x", "timestamp": [9, 2]},
            r"results\['00000'\]\[0\]: timestamp \[9, 2\] needs 0 <= start <= end",
        ),
        (
            "4.28",
            {"sentence": "x", "timestamp": [-3, 2]},
            r"results\['00000'\]\[0\]: timestamp \[-3, 2\] needs 0 <= start",
        ),
        (
            "4.29",
            {"sentence": "x", "timestamp": [float("nan"), 2]},
            r"results\['00000'\]\[0\]: timestamp \[nan, 2\] is not finite",
        ),
        (
            "4.30",
            {"sentence": "x", "timestamp": [0, float("inf")]},
            r"results\['00000'\]\[0\]: timestamp \[0, inf\] is not finite",
        ),
        (
            "4.31",
            {"sentence": "x", "timestamp": ["0", "5"]},
            r"results\['00000'\]\[0\]: timestamp \['0', '5'\] is not \[start, end\]",
        ),
        (
            "4.33",
            {"sentence": None, "timestamp": [0, 5]},
            r"results\['00000'\]\[0\]: sentence None is not a string",
        ),
        ("4.26", {"sentence": "x"}, r"results\['00000'\]\[0\] needs 'sentence' and 'timestamp'"),
    ],
)
def test_impossible_predictions_are_refused_naming_the_entry(tmp_path, capsys, row, event, message):
    code, _, err = dense(tmp_path, capsys, {"00000": [event]})
    assert code == 2, row
    assert err.count("\n") == 1 and "pred.json" in err and "Traceback" not in err
    assert err.startswith("mmgpt2 eval-dense: error:")
    import re

    assert re.search(message, err), err


def test_a_null_video_entry_is_refused(tmp_path, capsys):  # 4.32
    code, _, err = dense(tmp_path, capsys, {"00000": None})
    assert code == 2 and "results['00000'] is NoneType, not a list" in err


def test_prediction_ids_that_match_no_ground_truth_are_an_error(tmp_path, capsys):  # 4.34
    code, _, err = dense(tmp_path, capsys, {"v_00000": [GOOD_EVENT], "v_00001": [GOOD_EVENT]})
    assert code == 2
    assert "none of its 2 predicted videos (e.g. 'v_00000') is in the ground truth (e.g. '00000')" in err


@pytest.mark.parametrize(
    ("row", "entry", "message"),
    [
        (
            "4.39",
            {"timestamps": [[5]], "sentences": ["a"]},
            r"'00000': timestamps\[0\]: timestamp \[5\] is not",
        ),
        (
            "4.40",
            {"timestamps": [[9, 2]], "sentences": ["a"]},
            r"'00000': timestamps\[0\]: timestamp \[9, 2\] needs",
        ),
        ("null", None, r"'00000' is NoneType"),
        ("lengths", {"timestamps": [[0, 1]], "sentences": []}, r"'00000' needs 'timestamps' and 'sentences'"),
        ("no events", {"timestamps": [], "sentences": []}, r"'00000' has no events"),
        (
            "sentence",
            {"timestamps": [[0, 1]], "sentences": [3]},
            r"'00000': sentences\[0\] 3 is not a string",
        ),
    ],
)
def test_impossible_ground_truth_is_refused_naming_the_entry(tmp_path, capsys, row, entry, message):
    import re

    code, _, err = dense(tmp_path, capsys, {"00000": [GOOD_EVENT]}, gt={"00000": entry})
    assert code == 2, row
    assert "gt.json" in err and re.search(message, err), err


def test_broken_or_missing_files_are_named(tmp_path, capsys):  # 4.37
    bad = write(tmp_path, "broken.json", '{"results": {')
    g = write(tmp_path, "gt.json", GT)
    code, _, err = run(["eval-dense", "--pred", bad, "--gt", g], capsys)
    assert code == 2 and "broken.json: not valid JSON" in err
    ok = write(tmp_path, "ok.json", {"results": {"00000": [GOOD_EVENT]}})
    code, _, err = run(["eval-dense", "--pred", ok, "--gt", str(tmp_path / "nope.json")], capsys)
    assert code == 2 and "nope.json: no such file" in err
    code, _, err = run(["eval-dense", "--pred", g, "--gt", g], capsys)
    assert code == 2 and "predictions need a 'results' object" in err


def test_the_table_states_the_video_counts(tmp_path, capsys):  # 4.25, 4.34
    results = {
        "00000": [GOOD_EVENT, {"sentence": "a blue square", "timestamp": [8, 20]}],
        "extra": [GOOD_EVENT],
    }
    code, out, err = dense(tmp_path, capsys, results, extra=["--no-soda"])
    assert code == 0
    assert "2 ground-truth videos, 1 without predictions; 1 predicted videos not in the ground truth" in out
    assert "1 predicted videos are in no ground-truth file" in err
    mean = next(line for line in out.splitlines() if line.startswith("mean"))
    assert mean.split()[1:4] == ["0.5000", "0.5000", "0.5000"]  # P, R, F1: the missing video counts 0


def test_seed_needs_the_2021_protocol(tmp_path, capsys):
    code, _, err = dense(tmp_path, capsys, {"00000": [GOOD_EVENT]}, extra=["--seed", "3"])
    assert code == 2 and "--seed only applies to --protocol 2021" in err


# ---- eval-captions (4.7-4.23) ----

REFS = {"1": ["a red circle", "one red circle"], "2": ["a blue square"], "3": ["a green cross"]}


def captions(tmp_path, capsys, pred, refs=REFS, refs_name="refs.json", extra=()):
    p = write(tmp_path, "pred.json", pred)
    r = write(tmp_path, refs_name, refs)
    return run(["eval-captions", "--pred", p, "--refs", r, *extra], capsys)


def test_malformed_files_name_the_file(tmp_path, capsys):  # 4.8, 4.9
    code, _, err = captions(tmp_path, capsys, '{"1": ')
    assert code == 2 and "pred.json: not a valid JSON predictions file" in err
    code, _, err = captions(tmp_path, capsys, {"1": "a red circle"}, refs='{"1": [')
    assert code == 2 and "refs.json: not a valid JSON references file" in err


@pytest.mark.parametrize(
    ("row", "pred", "refs", "message"),
    [
        (
            "4.14",
            {"1": "x"},
            {"1": []},
            r"refs.json: id '1': references must be a string or a non-empty list",
        ),
        ("4.18", {"1": None}, REFS, r"pred.json: the caption of id '1' is None, not a string"),
        ("4.21", 42, REFS, r"pred.json: predictions must be \{id: caption\} or a list"),
        ("4.21b", [1, 2], REFS, r"pred.json: entry 0 needs an image/image_id and a caption"),
        (
            "dup",
            [{"image_id": 1, "caption": "a"}, {"image_id": 1, "caption": "b"}],
            REFS,
            r"entry 1 repeats id 1",
        ),
        ("4.11", {"zzz": "x"}, REFS, r"1 predictions have no references, e.g. id 'zzz'"),
        ("4.19", {}, REFS, r"no predictions to score"),
    ],
)
def test_unscorable_caption_inputs_are_refused_by_id(tmp_path, capsys, row, pred, refs, message):
    import re

    code, _, err = captions(tmp_path, capsys, pred, refs)
    assert code == 2, row
    assert re.search(message, err) and "Traceback" not in err, err


def test_an_empty_reference_list_in_json_lines_names_the_image(tmp_path, capsys):  # 4.15
    lines = json.dumps({"image": "a.png", "captions": ["a red circle"]}) + "\n"
    lines += json.dumps({"image": "b.png", "captions": []}) + "\n"
    code, _, err = captions(tmp_path, capsys, {"a.png": "x"}, lines, refs_name="refs.jsonl")
    assert code == 2 and "refs.jsonl: image" in err and "b.png" in err


def test_a_string_reference_is_one_reference_and_unpredicted_ids_are_reported(tmp_path, capsys):  # 4.17, 4.12
    as_string = {"1": "a red circle", "2": "a blue square", "3": "a green cross"}
    as_list = {k: [v] for k, v in as_string.items()}
    pred = {"1": "a red circle", "2": "a blue square"}
    code, out, err = captions(tmp_path, capsys, pred, as_string, extra=["--json"])
    assert code == 0
    from_string = json.loads(out)
    assert from_string["BLEU-1"] == pytest.approx(1.0, abs=1e-6)  # not 1/3 from single characters
    assert from_string["reference_ids_without_prediction"] == 1 and from_string["scored_ids"] == 2
    assert "1 ids of" in err and "'3'" in err
    code, out, _ = captions(tmp_path, capsys, pred, as_list, extra=["--json"])
    assert json.loads(out) == from_string


def test_empty_predictions_are_scored_not_refused(tmp_path, capsys):  # 4.13
    code, out, _ = captions(tmp_path, capsys, {"1": "", "2": ""}, extra=["--json"])
    assert code == 0
    scores = json.loads(out)
    assert scores["BLEU-1"] == pytest.approx(0.0, abs=1e-6) and scores["CIDEr"] == 0.0


# ---- CLIPScore through the commands (embedded encoder, offline) ----


@pytest.mark.slow
def test_eval_captions_clipscore_finds_images_by_path_or_under_image_root(tmp_path, capsys):
    right = {"assets/examples/shapes_1.png": "a large orange square on the right"}
    refs = {k: [v] for k, v in right.items()}
    refs["shapes_1"] = refs["assets/examples/shapes_1.png"]
    wrong = {"shapes_1": "a small blue circle on the left"}
    flags = ["--clipscore", "embedded:shapes-clip", "--json"]
    code, out, _ = captions(tmp_path, capsys, right, refs, extra=flags)
    assert code == 0
    good = json.loads(out)
    code, out, _ = captions(tmp_path, capsys, wrong, refs, extra=[*flags, "--image-root", "assets/examples"])
    assert code == 0
    bad = json.loads(out)
    assert 0 <= bad["CLIPScore"] < good["CLIPScore"] <= 2.5
    assert bad["RefCLIPScore"] < good["RefCLIPScore"]
    code, _, err = captions(tmp_path, capsys, wrong, refs, extra=flags)
    assert code == 2 and "no image for 1 prediction ids (ids are not image paths; give --image-root)" in err


@pytest.mark.slow
def test_eval_dense_clipscore_scores_events_over_their_frames(tmp_path, capsys):
    main(["world", "videos", "--n", "1", "--seed", "1", "--out", str(tmp_path / "v")])
    capsys.readouterr()
    truth = json.loads((tmp_path / "v" / "ground_truth.json").read_text())
    events = truth["00000"]
    flags = ["--clipscore", "embedded:shapes-clip", "--videos", str(tmp_path / "v"), "--no-soda", "--json"]
    scores = {}
    for name, sentences in (("right", events["sentences"]), ("swapped", events["sentences"][::-1])):
        results = {
            "00000": [{"sentence": s, "timestamp": t} for s, t in zip(sentences, events["timestamps"])]
        }
        code, out, _ = dense(tmp_path, capsys, results, gt=truth, extra=flags)
        assert code == 0
        scores[name] = json.loads(out)
    assert scores["right"]["clipscore_events"] == 2
    assert scores["swapped"]["CLIPScore"] < scores["right"]["CLIPScore"]
    assert scores["swapped"]["RefCLIPScore"] < scores["right"]["RefCLIPScore"]
    code, _, err = dense(
        tmp_path, capsys, {"00000": [GOOD_EVENT]}, extra=["--clipscore", "embedded:shapes-clip"]
    )
    assert code == 2 and "--clipscore needs --videos DIR" in err


def test_missing_java_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    code, _, err = dense(tmp_path, capsys, {"00000": [GOOD_EVENT]})
    assert code == 2 and err.startswith("mmgpt2 eval-dense: error: caption metrics need Java")
