"""What every application shares: frozen encoder + frozen LM + small trainable parts, saved as a folder.

A subclass names its trainable modules, says how to build them from a config dict, and turns a
batch into a loss. Saving writes only the trainable weights plus the specs of the frozen parts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from .checkpoint import load_matching_state, load_weights, read_config, save_folder
from .encoders import VisionEncoder, load_encoder
from .lm import FrozenLM, load_lm
from .paths import resolve_model_dir

PIPELINES: dict[str, type[PrefixPipeline]] = {}


class PrefixPipeline(nn.Module):
    """Base of `PrefixCaptioner`, `PersonalizedCaptioner`, `MedicalExplainer`, ..."""

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            PIPELINES[cls.kind] = cls

    def __init__(self, encoder: VisionEncoder, lm: FrozenLM, generation: dict[str, Any] | None = None):
        super().__init__()
        self.encoder = encoder
        self.lm = lm
        self.generation = dict(generation or {})

    # --- what subclasses provide -------------------------------------------------------------
    def trainable_config(self) -> dict[str, Any]:
        """JSON-able config of the trainable parts (rebuilds them in `build_trainable`)."""
        raise NotImplementedError

    @classmethod
    def build_trainable(cls, config: dict[str, Any], encoder: VisionEncoder, lm: FrozenLM) -> dict[str, Any]:
        """Constructor keyword arguments (modules and settings) from the saved config."""
        raise NotImplementedError

    def training_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def save_extras(self, folder: Path) -> None:
        """Write files beside the weights (a user store, a knowledge graph); none by default."""

    def load_extras(self, folder: Path) -> None:
        """Read what `save_extras` wrote; called by every `from_pretrained`, `load_pipeline` too."""

    # --- shared ---------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """The training loss; going through `forward` lets DDP wrap the pipeline (accelerate)."""
        return self.training_loss(batch)

    @property
    def device(self) -> torch.device:
        return self.lm.device

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights of everything except the frozen encoder and LM."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(("encoder.", "lm."))}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        shell = nn.Module()
        for name, child in self.named_children():
            if name not in ("encoder", "lm"):
                shell.add_module(name, child)
        for name, param in self.named_parameters(recurse=False):
            shell.register_parameter(name, param)
        load_matching_state(shell, state, source)

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write `config.json` + `model.safetensors` (trainable weights only), atomically."""
        config = {
            "type": self.kind,
            "encoder": self.encoder.spec,
            "lm": self.lm.spec,
            "generation": self.generation,
            **self.trainable_config(),
        }
        self.save_extras(Path(folder))
        return save_folder(folder, config, self.trainable_state_dict())

    @classmethod
    def from_pretrained(
        cls,
        name_or_dir: str | os.PathLike,
        device: str | None = None,
        encoder: VisionEncoder | None = None,
        lm: FrozenLM | None = None,
    ) -> PrefixPipeline:
        """Load a folder, an embedded model name (``"shapes-tiny"``) or a Hub repo id.

        Pass `encoder` / `lm` to share already-loaded frozen parts between pipelines.
        """
        folder = resolve_model_dir(name_or_dir)
        config = read_config(folder)
        kind = config.get("type")
        target = PIPELINES.get(kind) if cls is PrefixPipeline else cls
        if target is None or kind != target.kind:
            raise ValueError(
                f"{folder}: holds a {kind!r} model, not a {cls.kind or 'known'!r} one "
                f"(known: {sorted(PIPELINES)}); load it with mmgpt2.load_pipeline"
            )
        encoder = encoder or load_encoder(config["encoder"])
        lm = lm or load_lm(config["lm"])
        model = target(encoder=encoder, lm=lm, generation=config.get("generation"), **target.build_trainable(config, encoder, lm))
        model.load_trainable_state_dict(load_weights(folder), source=str(folder))
        model.load_extras(folder)
        model.eval()
        return model.to(device) if device else model

    def encode_images(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features and patch tokens of image paths or PIL images (opened safely)."""
        from .images import load_image

        pixels = self.encoder.preprocess_batch([load_image(im) for im in images])
        return self.encoder.encode_image(pixels, return_tokens=True)

    def generation_kwargs(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Saved generation defaults, updated by the caller's non-None settings."""
        return {**self.generation, **{k: v for k, v in overrides.items() if v is not None}}


def load_pipeline(name_or_dir: str | os.PathLike, device: str | None = None, **kwargs) -> PrefixPipeline:
    """Load any saved mmgpt2 model, whatever its type.

    Example:
        >>> model = load_pipeline("shapes-tiny")
        >>> model.caption(["assets/examples/shapes_0.png"])
    """
    from . import applications  # noqa: F401  (registers every pipeline type)

    return PrefixPipeline.from_pretrained(name_or_dir, device=device, **kwargs)


def check_feature_size(expected: int, got: int, encoder_spec: str, what: str = "mapper") -> None:
    if expected != got:
        raise ValueError(
            f"the {what} expects {expected}-d features but encoder {encoder_spec!r} gives {got}-d; "
            f"use the encoder it was trained with or retrain the {what}"
        )
