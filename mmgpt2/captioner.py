"""`PrefixCaptioner`: ClipCap on a frozen GPT-2. Image -> encoder -> mapper -> prefix -> text."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from .encoders import VisionEncoder, load_encoder
from .lm import FrozenLM, load_lm
from .mappers import MAPPERS, build_mapper
from .pipeline import PrefixPipeline, check_feature_size

ImageLike = str | os.PathLike | Image.Image


class PrefixCaptioner(PrefixPipeline):
    """Caption images with a frozen encoder, a small trainable mapper and a frozen GPT-2.

    Example:
        >>> cap = PrefixCaptioner.from_pretrained("shapes-tiny")
        >>> cap.caption(["assets/examples/shapes_0.png"], num_beams=3)
        ['a small red circle at the top']
    """

    kind = "prefix_captioner"

    def __init__(self, encoder: VisionEncoder, lm: FrozenLM, mapper: torch.nn.Module, generation=None):
        super().__init__(encoder, lm, generation)
        self.mapper = mapper
        check_feature_size(mapper.config.input_dim, encoder.embed_dim, encoder.spec)
        if mapper.config.lm_dim != lm.hidden_size:
            raise ValueError(
                f"the mapper writes {mapper.config.lm_dim}-d prefixes but LM {lm.spec!r} takes {lm.hidden_size}-d"
            )

    @classmethod
    def build(
        cls,
        encoder: str | VisionEncoder,
        lm: str | FrozenLM,
        mapper: str = "transformer",
        generation: dict[str, Any] | None = None,
        **mapper_kwargs: Any,
    ) -> PrefixCaptioner:
        """A new captioner with an untrained mapper sized to fit `encoder` and `lm`.

        Example:
            >>> PrefixCaptioner.build("open_clip:ViT-B-32", "random:gpt2", mapper="mlp", prefix_length=10)
        """
        encoder = load_encoder(encoder) if isinstance(encoder, str) else encoder
        lm = load_lm(lm) if isinstance(lm, str) else lm
        config = {"type": mapper, "input_dim": encoder.embed_dim, "lm_dim": lm.hidden_size, **mapper_kwargs}
        if mapper in MAPPERS and "token_dim" in {f.name for f in dataclasses.fields(MAPPERS[mapper][1])}:
            config.setdefault("token_dim", encoder.token_dim)  # mappers that read patch tokens
        return cls(encoder, lm, build_mapper(config), generation)

    @property
    def uses_tokens(self) -> bool:
        """Whether the mapper reads patch tokens (train on a feature cache with tokens)."""
        return bool(getattr(self.mapper.config, "token_dim", None))

    def trainable_config(self) -> dict[str, Any]:
        return {"mapper": dataclasses.asdict(self.mapper.config)}

    @classmethod
    def build_trainable(cls, config, encoder, lm):
        mapper_config = config.get("mapper") or {}
        check_feature_size(mapper_config.get("input_dim", -1), encoder.embed_dim, encoder.spec)
        return {"mapper": build_mapper(mapper_config)}

    # --- the heart: features -> prefix embeddings ---------------------------------------------
    def prefix(self, pooled: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        return self.mapper(pooled.to(self.device), None if tokens is None else tokens.to(self.device))

    def training_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Batch from `mmgpt2.data.FeatureCaptionDataset`: ``pooled`` (B, D) and ``captions``."""
        return self.lm.loss(self.prefix(batch["pooled"], batch.get("tokens")), batch["captions"])

    # --- inference ------------------------------------------------------------------------------
    @torch.no_grad()
    def caption(self, images: Sequence[ImageLike] | ImageLike, batch_size: int = 32, **gen_kwargs: Any) -> list[str]:
        """Captions for image paths or PIL images; `gen_kwargs` as in `transformers.generate`."""
        if isinstance(images, (str, os.PathLike, Image.Image)):
            images = [images]
        out: list[str] = []
        for i in range(0, len(images), batch_size):
            pooled, tokens = self.encode_images(images[i : i + batch_size])
            out += self.caption_features(pooled, tokens, **gen_kwargs)
        return out

    @torch.no_grad()
    def caption_features(self, pooled: torch.Tensor, tokens: torch.Tensor | None = None, **gen_kwargs) -> list[str]:
        """Captions straight from precomputed encoder features."""
        return self.lm.generate(self.prefix(pooled, tokens), **self.generation_kwargs(gen_kwargs))
