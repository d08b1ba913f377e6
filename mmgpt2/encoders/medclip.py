"""MedCLIP (Wang et al. 2022) rebuilt from a local checkpoint folder with transformers, without `medclip`.

The `medclip` package pins old transformers and hard-codes CUDA, so we rebuild its ViT variant
from the checkpoint's keys (RyanWangZf/MedCLIP, ``medclip/modeling_medclip.py``):

- ``vision_model.model.*``: a Hugging Face `SwinModel` (Swin-T, ``microsoft/swin-tiny-patch4-window7-224``);
  ``vision_model.projection_head.weight``: 768 -> 512, no bias, on the pooled output;
- ``text_model.model.*``: a `BertModel` (Bio_ClinicalBERT); ``text_model.projection_head.weight``
  (and ``.bias`` in older checkpoints): 768 -> 512 on the mean over tokens of hidden states
  1, 2 and the last, averaged (MedCLIP's pooling; we mask padding, MedCLIP averages it in, which
  makes its embeddings depend on the batch's padding);
- ``logit_scale``.

Folder layout (``load_encoder("medclip:/path/to/folder")``)::

    pytorch_model.bin or model.safetensors   the MedCLIP state dict (loaded with weights_only=True)
    vision_config.json                       optional SwinConfig (default: Swin-T, 224 px)
    text_config.json                         optional BertConfig (default: inferred from the weights)
    vocab.txt / tokenizer.json (or tokenizer/) the Bio_ClinicalBERT tokenizer, e.g. saved with
                                             AutoTokenizer.from_pretrained("emilyalsentzer/Bio_ClinicalBERT").save_pretrained(folder)
    medclip_config.json                      optional {"image_size", "mean", "std", "max_length"}
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from mmgpt2.encoders.base import VisionEncoder
from mmgpt2.errors import Mmgpt2Error

# MedCLIP's grayscale normalization (medclip/constants.py), applied to all three channels.
IMG_MEAN, IMG_STD, IMG_SIZE = 0.5862785803043838, 0.27950088968644304, 224


def _load_state(folder: Path) -> dict[str, torch.Tensor]:
    st, pt = folder / "model.safetensors", folder / "pytorch_model.bin"
    if st.is_file():
        from safetensors.torch import load_file

        state = load_file(str(st))
    elif pt.is_file():
        try:  # never unpickle arbitrary objects: tensors only
            state = torch.load(pt, map_location="cpu", weights_only=True)
        except Exception as err:
            raise Mmgpt2Error(
                f"{pt}: not a plain tensor state dict that loads with weights_only=True ({err})"
            ) from err
    else:
        raise FileNotFoundError(
            f"{folder}: no pytorch_model.bin or model.safetensors (a MedCLIP checkpoint folder)"
        )
    if not isinstance(state, dict):
        raise Mmgpt2Error(f"{folder}: the checkpoint holds a {type(state).__name__}, not a state dict")
    return {re.sub(r"^module\.", "", k): v.float() for k, v in state.items()}


def _sub(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _bert_config(folder: Path, weights: dict[str, torch.Tensor]):
    from transformers import BertConfig

    path = folder / "text_config.json"
    if path.is_file():
        return BertConfig.from_dict(json.loads(path.read_text()))
    try:
        vocab, hidden = weights["embeddings.word_embeddings.weight"].shape
        positions = weights["embeddings.position_embeddings.weight"].shape[0]
        types = weights["embeddings.token_type_embeddings.weight"].shape[0]
        inter = weights["encoder.layer.0.intermediate.dense.weight"].shape[0]
    except KeyError as err:
        raise Mmgpt2Error(
            f"{folder}: no text_model.model.{err.args[0]} in the checkpoint; is it a MedCLIP model?"
        ) from None
    layers = 1 + max(int(k.split(".")[2]) for k in weights if k.startswith("encoder.layer."))
    return BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=inter,
        max_position_embeddings=positions,
        type_vocab_size=types,
    )


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str, folder: Path) -> None:
    own = module.state_dict()
    # Buffers such as position_ids / relative_position_index are rebuilt by the model itself.
    skip = re.compile(r"(position_ids|relative_position_index)$")
    missing = [k for k in own if k not in state and not skip.search(k)]
    unexpected = [k for k in state if k not in own and not skip.search(k)]
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        detail = "; ".join(
            [
                *(f"missing {k}" for k in missing[:4]),
                *(f"unexpected {k}" for k in unexpected[:4]),
                *shapes[:4],
            ]
        )
        raise Mmgpt2Error(
            f"{folder}: the {what} weights do not fit the rebuilt model ({detail}); "
            f"check vision_config.json / text_config.json"
        )
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


class MedClipEncoder(VisionEncoder):
    """A frozen MedCLIP (Swin-T + Bio_ClinicalBERT) from a local checkpoint folder.

    Example:
        >>> enc = MedClipEncoder("/models/medclip-vit")  # doctest: +SKIP
        >>> pooled, tokens = enc.encode_image(enc.preprocess_batch([xray]), return_tokens=True)  # doctest: +SKIP
        >>> pooled.shape, tokens.shape  # doctest: +SKIP
        (torch.Size([1, 512]), torch.Size([1, 49, 768]))
    """

    def __init__(self, folder: str | Path, spec: str | None = None):
        super().__init__()
        from torchvision import transforms
        from transformers import AutoTokenizer, BertModel, SwinConfig, SwinModel

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"medclip:{folder}: no such folder (a MedCLIP checkpoint folder, see mmgpt2.encoders.medclip)"
            )
        self.spec = spec or f"medclip:{folder}"
        state = _load_state(folder)
        vision_state, text_state = _sub(state, "vision_model."), _sub(state, "text_model.")
        if "projection_head.weight" not in vision_state or "projection_head.weight" not in text_state:
            raise Mmgpt2Error(
                f"{folder}: no vision_model/text_model projection_head weights; is this a MedCLIP ViT checkpoint?"
            )

        vpath = folder / "vision_config.json"
        vcfg = SwinConfig.from_dict(json.loads(vpath.read_text())) if vpath.is_file() else SwinConfig()
        self.vision = SwinModel(vcfg, add_pooling_layer=True)
        _load_strict(self.vision, _sub(vision_state, "model."), "Swin vision", folder)
        pw = vision_state["projection_head.weight"]
        self.vision_proj = nn.Linear(pw.shape[1], pw.shape[0], bias=False)
        self.vision_proj.weight.data.copy_(pw)

        bert_weights = _sub(text_state, "model.")
        self.text = BertModel(
            _bert_config(folder, bert_weights), add_pooling_layer="pooler.dense.weight" in bert_weights
        )
        _load_strict(self.text, bert_weights, "BERT text", folder)
        tw = text_state["projection_head.weight"]
        self.text_proj = nn.Linear(tw.shape[1], tw.shape[0], bias="projection_head.bias" in text_state)
        self.text_proj.weight.data.copy_(tw)
        if self.text_proj.bias is not None:
            self.text_proj.bias.data.copy_(text_state["projection_head.bias"])
        self.logit_scale = nn.Parameter(state.get("logit_scale", torch.tensor(0.0)).reshape(()).clone())

        tok_dir = folder / "tokenizer" if (folder / "tokenizer").is_dir() else folder
        if not any((tok_dir / n).is_file() for n in ("tokenizer.json", "vocab.txt")):
            raise FileNotFoundError(
                f"{folder}: no tokenizer (vocab.txt or tokenizer.json); save Bio_ClinicalBERT's there with "
                "AutoTokenizer.from_pretrained('emilyalsentzer/Bio_ClinicalBERT').save_pretrained(folder)"
            )
        if (tok_dir / "tokenizer.json").is_file():
            self.tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        else:  # a bare BERT vocab.txt (as in the Bio_ClinicalBERT repo) without a tokenizer config
            from transformers import BertTokenizer

            self.tokenizer = BertTokenizer.from_pretrained(tok_dir)
        meta_path = folder / "medclip_config.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        size = int(meta.get("image_size", vcfg.image_size if vpath.is_file() else IMG_SIZE))
        mean, std = float(meta.get("mean", IMG_MEAN)), float(meta.get("std", IMG_STD))
        self.max_length = int(meta.get("max_length", 77))
        # MedCLIP sees grayscale X-rays replicated to three channels.
        self.preprocess = transforms.Compose(
            [
                transforms.Grayscale(num_output_channels=3),
                transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
                transforms.CenterCrop(size),
                transforms.ToTensor(),
                transforms.Normalize([mean] * 3, [std] * 3),
            ]
        )
        self.embed_dim = int(pw.shape[0])
        self.token_dim = int(self.vision.num_features)
        self.freeze()

    def _encode_image(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.vision(pixel_values=pixels)
        return self.vision_proj(out.pooler_output), out.last_hidden_state

    def _encode_text(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        out = self.text(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True
        )
        hs = out.hidden_states
        layers = torch.stack([hs[1], hs[2], hs[-1]])  # (3, B, T, H): MedCLIP's "1+2+last layer"
        mask = batch["attention_mask"][None, :, :, None].to(layers.dtype)
        pooled = ((layers * mask).sum(2) / mask.sum(2).clamp(min=1)).mean(0)
        return self.text_proj(pooled)
