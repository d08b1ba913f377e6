"""MedCLIP checkpoint loading (random small config saved like MedCLIP does) and the MIMIC-NLE reader."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from mmgpt2.apps.medical.mimic_nle import CLASSES, parse_record, read_mimic_nle, study_images
from mmgpt2.encoders import load_encoder

WORDS = ["left", "right", "pleural", "effusion", "opacity", "lobe", "suggestive", "of", "pneumonia", "heart"]


def write_medclip_folder(folder, text_bias: bool = False):
    """A MedCLIP-layout checkpoint with random weights: torch.save'd state dict, keys as MedCLIP names them."""
    from transformers import BertConfig, BertModel, SwinConfig, SwinModel

    torch.manual_seed(0)
    vcfg = SwinConfig(
        image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=4
    )
    swin = SwinModel(vcfg)
    (folder / "vision_config.json").write_text(json.dumps(vcfg.to_dict()))
    (folder / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n"
    )
    bert = BertModel(
        BertConfig(
            vocab_size=5 + len(WORDS),
            hidden_size=64,
            num_hidden_layers=3,
            num_attention_heads=1,
            intermediate_size=96,
            max_position_embeddings=80,
        )
    )
    state = {f"vision_model.model.{k}": v for k, v in swin.state_dict().items()}
    state["vision_model.projection_head.weight"] = torch.randn(24, swin.num_features)
    state.update({f"text_model.model.{k}": v for k, v in bert.state_dict().items()})
    state["text_model.projection_head.weight"] = torch.randn(24, 64)
    if text_bias:
        state["text_model.projection_head.bias"] = torch.randn(24)
    state["logit_scale"] = torch.tensor(2.3)
    torch.save(state, folder / "pytorch_model.bin")
    return swin, bert, state


def test_medclip_checkpoint_loads_and_matches_its_weights(tmp_path):
    swin, bert, state = write_medclip_folder(tmp_path)
    enc = load_encoder(f"medclip:{tmp_path}")
    assert enc.spec == f"medclip:{tmp_path}" and enc.embed_dim == 24 and enc.token_dim == swin.num_features
    image = Image.new("L", (50, 40), 90)
    pixels = enc.preprocess_batch([image])
    assert pixels.shape == (1, 3, 32, 32)
    pooled, tokens = enc.encode_image(pixels, return_tokens=True)
    swin.eval()
    with torch.no_grad():
        out = swin(pixel_values=pixels)
    torch.testing.assert_close(pooled, out.pooler_output @ state["vision_model.projection_head.weight"].t())
    torch.testing.assert_close(tokens, out.last_hidden_state)
    # text: BERT rebuilt from the weights alone (no text_config.json), MedCLIP's 1+2+last pooling
    txt = enc.encode_text(["left pleural effusion", "right lobe opacity suggestive of pneumonia"])
    assert txt.shape == (2, 24) and not torch.allclose(txt[0], txt[1])
    ids = enc.tokenizer(["left pleural effusion"], return_tensors="pt")
    bert.eval()
    with torch.no_grad():
        hs = bert(**ids, output_hidden_states=True).hidden_states
    manual = (
        torch.stack([hs[1], hs[2], hs[-1]]).mean(2).mean(0) @ state["text_model.projection_head.weight"].t()
    )
    torch.testing.assert_close(txt[:1], manual)
    # padding in a batch does not change a text's embedding (masked mean)
    torch.testing.assert_close(enc.encode_text(["left pleural effusion"]), txt[:1])
    assert all(not p.requires_grad for p in enc.parameters())


def test_medclip_older_checkpoints_with_text_bias_load(tmp_path):
    _, _, state = write_medclip_folder(tmp_path, text_bias=True)
    enc = load_encoder(f"medclip:{tmp_path}")
    torch.testing.assert_close(enc.text_proj.bias, state["text_model.projection_head.bias"])


def test_medclip_errors_name_the_folder_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="no pytorch_model.bin"):
        load_encoder(f"medclip:{tmp_path}")
    write_medclip_folder(tmp_path)
    (tmp_path / "vocab.txt").unlink()
    with pytest.raises(FileNotFoundError, match="Bio_ClinicalBERT"):
        load_encoder(f"medclip:{tmp_path}")
    write_medclip_folder(tmp_path)
    (tmp_path / "vision_config.json").write_text(
        json.dumps(
            {
                "embed_dim": 16,
                "depths": [1, 1],
                "num_heads": [1, 2],
                "image_size": 32,
                "patch_size": 4,
                "window_size": 4,
            }
        )
    )
    with pytest.raises(ValueError, match="Swin vision weights do not fit"):
        load_encoder(f"medclip:{tmp_path}")


def nle_row(**over):
    row = {
        "sentence_ID": "s51038639#2",
        "nle": "blunting of the left costophrenic angle",
        "patient_ID": "p11662490",
        "report_ID": "s51038639",
        "diagnosis_label": [0, 0, 1, 0, 0, 0, 1, 0, 0, 0],
        "evidence_label": [0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
        "img_labels": [[1, 0, 0]] * 2 + [[0, 1, 0]] + [[1, 0, 0]] * 3 + [[0, 0, 1]] + [[1, 0, 0]] * 3,
    }
    row.update(over)
    return row


def test_mimic_nle_reader_parses_the_documented_format(tmp_path):
    path = tmp_path / "mimic-nle-test.json"
    path.write_text(
        json.dumps(nle_row())
        + "\n\n"
        + json.dumps(nle_row(sentence_ID="s2#0", diagnosis_label=[1] + [0] * 9))
        + "\n"
    )
    recs = read_mimic_nle(path)
    assert len(recs) == 2
    r = recs[0]
    assert (r.sentence_id, r.patient_id, r.study_id) == ("s51038639#2", "p11662490", "s51038639")
    assert r.explanation == "blunting of the left costophrenic angle"
    assert r.diagnoses == ["Edema", "Pleural Effusion"] and r.evidence == ["Lung Opacity"]
    assert r.diagnosis_text == "possible edema and pleural effusion"  # img_labels: edema uncertain
    assert r.image_labels["Pleural Effusion"] == "positive" and r.image_labels["Edema"] == "uncertain"
    assert r.image_labels["Atelectasis"] == "negative" and len(r.image_labels) == len(CLASSES) == 10
    assert recs[1].diagnoses == ["Atelectasis"]


@pytest.mark.parametrize(
    "row, message",
    [
        (nle_row(diagnosis_label=[1, 0]), "diagnosis_label must be a list of 10"),
        (nle_row(img_labels=[[1, 1, 0]] * 10), "one-hot"),
        ({"nle": "x"}, "missing field"),
    ],
)
def test_mimic_nle_reader_rejects_malformed_rows_with_the_line(tmp_path, row, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(nle_row()) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=message) as err:
        read_mimic_nle(path)
    assert f"{path}:2" in str(err.value)


def test_mimic_nle_missing_file_explains_credentialed_access(tmp_path):
    with pytest.raises(FileNotFoundError, match="PhysioNet"):
        read_mimic_nle(tmp_path / "mimic-nle-train.json")


def test_study_images_follow_the_mimic_cxr_jpg_layout(tmp_path):
    study = tmp_path / "files" / "p11" / "p11662490" / "s51038639"
    study.mkdir(parents=True)
    for name in ("b.jpg", "a.jpg"):
        (study / name).write_bytes(b"")
    rec = parse_record(nle_row())
    assert [p.name for p in study_images(tmp_path, rec)] == ["a.jpg", "b.jpg"]
    assert [p.name for p in study_images(tmp_path, rec, view_positions={"a": "LATERAL", "b": "PA"})] == [
        "b.jpg"
    ]
