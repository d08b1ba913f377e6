"""PrefixCaptioner: the heart (features -> prefix -> frozen GPT-2), checkpoints and their errors."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TinyEncoder, tiny_lm
from PIL import Image

from mmgpt2.apps.captioning.model import PrefixCaptioner
from mmgpt2.pipeline import load_pipeline


def tiny_captioner(mapper: str = "mlp") -> PrefixCaptioner:
    torch.manual_seed(3)
    extra = {"num_layers": 1, "num_heads": 2, "clip_length": 2} if mapper == "transformer" else {}
    return PrefixCaptioner.build(TinyEncoder(), tiny_lm(), mapper=mapper, prefix_length=4, **extra)


def images() -> list[Image.Image]:
    return [Image.new("RGB", (32, 32), c) for c in [(255, 0, 0), (0, 0, 255), (20, 200, 20)]]


@pytest.mark.parametrize("mapper", ["mlp", "transformer"])
def test_save_load_round_trip_gives_identical_captions(tmp_path, mapper):
    cap = tiny_captioner(mapper)
    before = cap.caption(images(), max_new_tokens=6)
    cap.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["type"] == "prefix_captioner" and config["mapper"]["type"] == mapper
    assert config["encoder"] == "test:tiny-random" and config["lm"] == "test:tiny-gpt2"
    loaded = PrefixCaptioner.from_pretrained(tmp_path, encoder=TinyEncoder(), lm=tiny_lm())
    assert loaded.caption(images(), max_new_tokens=6) == before
    assert any(before), "a random model that writes nothing proves little"


def test_checkpoint_holds_only_the_trainable_mapper(tmp_path):
    from safetensors.torch import load_file

    tiny_captioner().save_pretrained(tmp_path)
    keys = load_file(tmp_path / "model.safetensors").keys()
    assert keys and all(k.startswith("mapper.") for k in keys)


def test_checkpoint_of_another_mapper_type_fails_with_the_tensor_names(tmp_path):
    tiny_captioner("mlp").save_pretrained(tmp_path / "mlp")
    tiny_captioner("transformer").save_pretrained(tmp_path / "transformer")
    (tmp_path / "mlp" / "model.safetensors").replace(tmp_path / "transformer" / "model.safetensors")
    with pytest.raises(ValueError, match=r"weights do not fit the model: missing mapper\.prefix_const"):
        PrefixCaptioner.from_pretrained(tmp_path / "transformer", encoder=TinyEncoder(), lm=tiny_lm())


def test_unknown_mapper_fields_are_named(tmp_path):
    tiny_captioner("mlp").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(
        json.dumps({**config, "mapper": {**config["mapper"], "type": "transformer"}})
    )
    with pytest.raises(ValueError, match=r"type 'transformer' has unknown fields \['hidden_dim'\]"):
        PrefixCaptioner.from_pretrained(tmp_path, encoder=TinyEncoder(), lm=tiny_lm())


def test_mapper_input_size_mismatch_names_both_sizes(tmp_path):
    tiny_captioner().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"expects 16-d features but encoder 'test:tiny-random' gives 24-d"):
        PrefixCaptioner.from_pretrained(tmp_path, encoder=TinyEncoder(embed_dim=24), lm=tiny_lm())


def test_loading_a_folder_of_another_pipeline_type_says_so(tmp_path):
    tiny_captioner().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "type": "medical_explainer"}))
    with pytest.raises(ValueError, match=r"holds a 'medical_explainer' model, not a 'prefix_captioner' one"):
        PrefixCaptioner.from_pretrained(tmp_path, encoder=TinyEncoder(), lm=tiny_lm())


def test_load_pipeline_rebuilds_the_type_named_in_the_folder(tmp_path):
    tiny_captioner().save_pretrained(tmp_path)
    model = load_pipeline(tmp_path, encoder=TinyEncoder(), lm=tiny_lm())
    assert isinstance(model, PrefixCaptioner)


def test_nothing_but_the_mapper_gets_gradients():
    cap = tiny_captioner()
    loss = cap.training_loss({"pooled": torch.randn(2, 16), "captions": ["a red circle", "a blue square"]})
    loss.backward()
    assert all(p.grad is not None for p in cap.mapper.parameters())
    assert all(p.grad is None for p in cap.lm.parameters())
    assert all(p.grad is None for p in cap.encoder.parameters())
    cap.train()
    assert not cap.lm.model.training and not cap.encoder.training


@pytest.mark.slow
def test_vit_b_32_features_line_up_with_the_124m_gpt2():
    from mmgpt2.encoders import load_encoder
    from mmgpt2.lm import load_lm

    encoder = load_encoder("open_clip:ViT-B-32")  # real architecture, random weights
    lm = load_lm("random:gpt2")
    assert sum(p.numel() for p in lm.parameters()) > 120e6
    cap = PrefixCaptioner.build(
        encoder, lm, mapper="transformer", prefix_length=10, clip_length=10, num_layers=8
    )
    pooled, tokens = cap.encode_images([Image.new("RGB", (300, 200)), Image.new("L", (50, 80))])
    assert pooled.shape == (2, 512) and tokens.shape == (2, 49, 768)
    prefix = cap.prefix(pooled)
    assert prefix.shape == (2, 10, 768)
    loss = cap.training_loss({"pooled": pooled, "captions": ["a photo of a cat", "a dog"]})
    assert torch.isfinite(loss)
    captions = cap.caption_features(pooled, max_new_tokens=3)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
