"""What every application shares: a frozen encoder + a frozen LM (+ small trainable parts), saved as a folder.

`FrozenPipeline` is the base: the two frozen parts, generation defaults and a typed config
(`config_class`), saved as ``config.json``. `PrefixPipeline` adds trainable modules, saved as
``model.safetensors``, and a training loss. A zero-shot application (ZeroTA) is a `FrozenPipeline`
and has no weights file.

``config.json`` holds a format version, the specs of the frozen parts and the **fingerprints of
their weights** (`mmgpt2.fingerprint`), so loading a mapper onto other frozen weights than it was
trained against warns (or, with ``strict=True``, refuses) and names both fingerprints. Folders
written before the format had a version still load.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image
from torch import nn

from mmgpt2.checkpoint import (
    WEIGHTS_NAME,
    load_matching_state,
    load_weights,
    read_config,
    save_folder,
    write_config,
)
from mmgpt2.config import Config
from mmgpt2.encoders import VisionEncoder, load_encoder
from mmgpt2.errors import ConfigError, Mmgpt2Error, ModelFolderError
from mmgpt2.lm import FrozenLM, load_lm
from mmgpt2.paths import resolve_model_dir
from mmgpt2.registry import PIPELINES

#: What ``config.json`` says it is; bump `FORMAT_VERSION` when its meaning changes.
FORMAT = "mmgpt2-pipeline"
FORMAT_VERSION = 1
#: Keys every saved pipeline has; the rest belong to the pipeline's `config_class`.
ENVELOPE_KEYS = (
    "format",
    "format_version",
    "mmgpt2_version",
    "type",
    "encoder",
    "lm",
    "encoder_fingerprint",
    "lm_fingerprint",
    "generation",
)

#: An image path or an opened PIL image: what every `caption`/`explain` accepts, alone or in a list.
ImageLike = str | os.PathLike | Image.Image


class FrozenWeightsWarning(UserWarning):
    """A saved model is loaded onto frozen weights other than those it was trained against."""


def as_image_list(images: Sequence[ImageLike] | ImageLike) -> list[ImageLike]:
    """One image or a sequence of them, as a list."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    return list(images)


def check_feature_size(expected: int, got: int, encoder_spec: str, what: str = "mapper") -> None:
    if expected != got:
        raise ConfigError(
            f"the {what} expects {expected}-d features but encoder {encoder_spec!r} gives {got}-d; "
            f"use the encoder it was trained with or retrain the {what}"
        )


class FrozenPipeline(nn.Module):
    """A frozen encoder and LM with a typed config; the base of every application."""

    kind: ClassVar[str] = ""
    #: The typed config of the application's own settings (see `mmgpt2.config.Config`).
    config_class: ClassVar[type[Config]] = Config
    has_weights: ClassVar[bool] = False

    def __init__(self, encoder: VisionEncoder, lm: FrozenLM, generation: dict[str, Any] | None = None):
        super().__init__()
        self.encoder = encoder
        self.lm = lm
        self.generation = dict(generation or {})

    @staticmethod
    def resolve_parts(encoder: str | VisionEncoder, lm: str | FrozenLM) -> tuple[VisionEncoder, FrozenLM]:
        """Load the frozen parts named by specs; already-loaded ones pass through."""
        return (
            load_encoder(encoder) if isinstance(encoder, str) else encoder,
            load_lm(lm) if isinstance(lm, str) else lm,
        )

    # --- what subclasses provide -------------------------------------------------------------
    def app_config(self) -> Config:
        """The application's own settings, as its `config_class` (saved into ``config.json``)."""
        return self.config_class()

    @classmethod
    def from_app_config(cls, config: Config, encoder: VisionEncoder, lm: FrozenLM) -> dict[str, Any]:
        """Constructor keyword arguments (modules and settings) from the saved config."""
        return {}

    def save_extras(self, folder: Path) -> None:
        """Write files beside the config (a user store, a knowledge graph); none by default."""

    def load_extras(self, folder: Path) -> None:
        """Read what `save_extras` wrote; called by every `from_pretrained`, `load_pipeline` too."""

    # --- shared ---------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.lm.device

    def frozen_fingerprints(self) -> dict[str, str]:
        return {
            "encoder_fingerprint": self.encoder.weights_fingerprint(),
            "lm_fingerprint": self.lm.weights_fingerprint(),
        }

    def config_dict(self) -> dict[str, Any]:
        """Everything ``config.json`` holds: the envelope, then the application's config."""
        from mmgpt2 import __version__

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "mmgpt2_version": __version__,
            "type": self.kind,
            "encoder": self.encoder.spec,
            "lm": self.lm.spec,
            **self.frozen_fingerprints(),
            "generation": self.generation,
            **self.app_config().to_dict(),
        }

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json`` (and the extras), atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.save_extras(folder)
        write_config(folder, self.config_dict())
        return folder

    @classmethod
    def from_pretrained(
        cls,
        name_or_dir: str | os.PathLike,
        device: str | None = None,
        encoder: VisionEncoder | None = None,
        lm: FrozenLM | None = None,
        strict: bool = False,
    ) -> FrozenPipeline:
        """Load a folder, an embedded model name (``"shapes-tiny"``) or a Hub repo id.

        Pass `encoder` / `lm` to share already-loaded frozen parts between pipelines. With
        `strict`, frozen weights other than those the model was saved with are an error (by
        default a `FrozenWeightsWarning`).
        """
        folder = resolve_model_dir(name_or_dir)
        config = read_config(folder)
        target = cls._target_class(folder, config.get("type"))
        app_config = target.config_class.from_dict(
            {k: v for k, v in config.items() if k not in ENVELOPE_KEYS}, source=str(folder / "config.json")
        )
        for key in ("encoder", "lm"):
            if not isinstance(config.get(key), str):
                raise ModelFolderError(f"{folder / 'config.json'}: needs an {key!r} spec string")
        source = str(folder / "config.json")
        generation = config.get("generation") or {}
        if not isinstance(generation, dict):
            raise ModelFolderError(f"{source}: 'generation' must be a JSON object")
        _check_generation(generation, source)
        encoder = encoder or load_encoder(config["encoder"])
        lm = lm or load_lm(config["lm"])
        try:
            model = target(
                encoder=encoder,
                lm=lm,
                generation=generation,
                **target.from_app_config(app_config, encoder, lm),
            )
        except Mmgpt2Error as err:  # a nested config (mapper, ZeroTA) that does not fit its schema
            raise ConfigError(str(err) if source in str(err) else f"{source}: {err}") from err
        except (TypeError, ValueError, RuntimeError, AssertionError) as err:  # torch refusing the sizes
            raise ConfigError(
                f"{source}: the saved settings do not build a model ({type(err).__name__}: {err})"
            ) from err
        model._check_fingerprints(folder, config, strict)
        if target.has_weights:
            model.load_trainable_state_dict(load_weights(folder), source=str(folder))
        model.load_extras(folder)
        model.eval()
        return model.to(device) if device else model

    @classmethod
    def from_config(
        cls, name: str | os.PathLike, encoder: Any = None, lm: Any = None, **overrides: Any
    ) -> FrozenPipeline:
        """An untrained pipeline built from a named config (`mmgpt2 list-configs`).

        `encoder` / `lm` (specs or loaded parts) replace the config's, e.g. to try a paper's
        setup on the embedded tiny models.

        Example:
            >>> cap = PrefixPipeline.from_config("clipcap-coco-transformer", "embedded:shapes-clip", "embedded:shapes-gpt2")
            >>> type(cap).__name__, cap.mapper.config.prefix_length
            ('PrefixCaptioner', 10)
        """
        from mmgpt2.configs import build_from_config, load_named_config

        named = load_named_config(name)
        if cls.kind and named.pipeline["type"] != cls.kind:
            raise ConfigError(f"config {str(name)!r} builds a {named.pipeline['type']!r}, not a {cls.kind!r}")
        return build_from_config(named, encoder, lm, **overrides)

    @classmethod
    def _target_class(cls, folder: Path, kind: Any) -> type[FrozenPipeline]:
        if kind not in PIPELINES:
            raise ModelFolderError(
                f"{folder}: holds a {kind!r} model, not a {cls.kind or 'known'!r} one "
                f"(known: {sorted(PIPELINES)}); load it with mmgpt2.load_pipeline"
            )
        target = PIPELINES[kind]
        if cls.kind and target is not cls:
            raise ModelFolderError(
                f"{folder}: holds a {kind!r} model, not a {cls.kind!r} one; load it with mmgpt2.load_pipeline"
            )
        return target

    def _check_fingerprints(self, folder: Path, config: dict[str, Any], strict: bool) -> None:
        """Warn (or refuse, `strict`) when the frozen weights differ from those saved in the config."""
        if "format" not in config:  # written before fingerprints were recorded
            return
        now = self.frozen_fingerprints()
        for key, part in (("encoder_fingerprint", "encoder"), ("lm_fingerprint", "lm")):
            saved = config.get(key)
            if saved and saved != now[key]:
                message = (
                    f"{folder}: trained against {part} weights with fingerprint {saved}, but "
                    f"{getattr(self, part).spec!r} now has fingerprint {now[key]}; retrain it, or pass "
                    "the frozen weights it was trained with"
                )
                if strict:
                    raise ModelFolderError(message)
                warnings.warn(message, FrozenWeightsWarning, stacklevel=3)

    def encode_images(self, images: Sequence[ImageLike]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features and patch tokens of image paths or PIL images (opened safely)."""
        from mmgpt2.images import load_image

        pixels = self.encoder.preprocess_batch([load_image(im) for im in images])
        return self.encoder.encode_image(pixels, return_tokens=True)

    def generation_kwargs(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """Saved generation defaults, updated by the caller's non-None settings."""
        return {**self.generation, **{k: v for k, v in overrides.items() if v is not None}}


class PrefixPipeline(FrozenPipeline):
    """A pipeline with small trainable modules (mapper, fusion, projector) and a training loss.

    Base of `PrefixCaptioner`, `PersonalizedCaptioner` and `MedicalExplainer`.
    """

    has_weights: ClassVar[bool] = True

    def training_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """The training loss; going through `forward` lets DDP wrap the pipeline (accelerate)."""
        return self.training_loss(batch)

    def check_widths(self, module: nn.Module, what: str = "mapper", tokens: bool = False) -> None:
        """The module's config reads this encoder's features and writes this LM's width."""
        config = module.config
        check_feature_size(config.input_dim, self.encoder.embed_dim, self.encoder.spec, what)
        if tokens and getattr(config, "token_dim", None) is not None:
            check_feature_size(
                config.token_dim, self.encoder.token_dim, self.encoder.spec, f"{what} (patch tokens)"
            )
        if config.lm_dim != self.lm.hidden_size:
            raise ConfigError(
                f"the {what} writes {config.lm_dim}-d prefixes but LM {self.lm.spec!r} takes {self.lm.hidden_size}-d"
            )

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
        """Write ``config.json`` + ``model.safetensors`` (trainable weights only), atomically."""
        folder = Path(folder)
        self.save_extras(folder)
        return save_folder(folder, self.config_dict(), self.trainable_state_dict())


def _check_generation(generation: dict[str, Any], source: str) -> None:
    """The saved decoding defaults must be valid generation settings (checked now, not mid-run)."""
    from mmgpt2.lm.decoding import GenerationConfig

    try:
        GenerationConfig.from_kwargs(**generation)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: bad 'generation' settings: {err}") from None


def load_pipeline(name_or_dir: str | os.PathLike, device: str | None = None, **kwargs: Any) -> FrozenPipeline:
    """Load any saved mmgpt2 model, whatever its type.

    Example:
        >>> model = load_pipeline("shapes-tiny")
        >>> type(model).__name__
        'PrefixCaptioner'
    """
    return FrozenPipeline.from_pretrained(name_or_dir, device=device, **kwargs)


def upgrade_saved_model(name_or_dir: str | os.PathLike) -> Path:
    """Rewrite an older model folder's ``config.json`` in the current format, weights untouched.

    Adds the format version and the fingerprints of the frozen parts it loads with now, and drops
    the empty weights file a zero-shot pipeline used to carry. Returns the folder.
    """
    folder = resolve_model_dir(name_or_dir)
    model = load_pipeline(folder)
    write_config(folder, model.config_dict())
    weights = folder / WEIGHTS_NAME
    if not model.has_weights and weights.is_file():
        weights.unlink()
    return folder


__all__ = [
    "FrozenPipeline",
    "FrozenWeightsWarning",
    "ImageLike",
    "Mmgpt2Error",
    "PrefixPipeline",
    "as_image_list",
    "check_feature_size",
    "load_pipeline",
    "upgrade_saved_model",
]
