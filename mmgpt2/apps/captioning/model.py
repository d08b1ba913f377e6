"""`PrefixCaptioner`: ClipCap on a frozen GPT-2. Image -> encoder -> mapper -> prefix -> text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mmgpt2.config import Config
from mmgpt2.encoders import VisionEncoder
from mmgpt2.lm import FrozenLM
from mmgpt2.mappers import build_mapper, mapper_config_class
from mmgpt2.pipeline import ImageLike, PrefixPipeline, as_image_list, check_feature_size


@dataclass
class PrefixCaptionerConfig(Config):
    """What a saved `PrefixCaptioner` holds besides its frozen parts: the mapper's own config."""

    mapper: dict[str, Any] = field(default_factory=dict)  # a mapper config, with its "type"


class PrefixCaptioner(PrefixPipeline):
    """Caption images with a frozen encoder, a small trainable mapper and a frozen GPT-2.

    Example:
        >>> cap = PrefixCaptioner.from_pretrained("shapes-tiny")
        >>> cap.caption(["assets/examples/shapes_0.png"], num_beams=3)
        ['a picture of a large yellow circle in the center']
    """

    kind = "prefix_captioner"
    config_class = PrefixCaptionerConfig

    def __init__(self, encoder: VisionEncoder, lm: FrozenLM, mapper: torch.nn.Module, generation=None):
        super().__init__(encoder, lm, generation)
        self.mapper = mapper
        self.check_widths(mapper)

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
            >>> cap = PrefixCaptioner.build("open_clip:ViT-B-32", "random:gpt2", mapper="mlp", prefix_length=10)
            >>> cap.mapper.config.input_dim, cap.mapper.config.lm_dim  # CLIP ViT-B/32 -> GPT-2 (124M)
            (512, 768)
        """
        encoder, lm = cls.resolve_parts(encoder, lm)
        config = {"type": mapper, "input_dim": encoder.embed_dim, "lm_dim": lm.hidden_size, **mapper_kwargs}
        if "token_dim" in mapper_config_class(mapper).field_names():
            config.setdefault("token_dim", encoder.token_dim)  # mappers that read patch tokens
        return cls(encoder, lm, build_mapper(config), generation)

    @property
    def uses_tokens(self) -> bool:
        """Whether the mapper reads patch tokens (train on a feature cache with tokens)."""
        return bool(getattr(self.mapper.config, "token_dim", None))

    def app_config(self) -> PrefixCaptionerConfig:
        return PrefixCaptionerConfig(mapper=self.mapper.config.to_dict())

    @classmethod
    def from_app_config(
        cls, config: PrefixCaptionerConfig, encoder: VisionEncoder, lm: FrozenLM
    ) -> dict[str, Any]:
        check_feature_size(config.mapper.get("input_dim", -1), encoder.embed_dim, encoder.spec)
        return {"mapper": build_mapper(config.mapper, source="mapper")}

    # --- the heart: features -> prefix embeddings ---------------------------------------------
    def prefix(self, pooled: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        return self.mapper(pooled.to(self.device), None if tokens is None else tokens.to(self.device))

    def training_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Batch from `mmgpt2.data.FeatureCaptionDataset`: ``pooled`` (B, D) and ``captions``."""
        return self.lm.loss(self.prefix(batch["pooled"], batch.get("tokens")), batch["captions"])

    # --- inference ------------------------------------------------------------------------------
    @torch.no_grad()
    def caption(
        self, images: Sequence[ImageLike] | ImageLike, batch_size: int = 32, **gen_kwargs: Any
    ) -> list[str]:
        """Captions for image paths or PIL images; `gen_kwargs` as in `transformers.generate`."""
        images = as_image_list(images)
        out: list[str] = []
        for i in range(0, len(images), batch_size):
            pooled, tokens = self.encode_images(images[i : i + batch_size])
            out += self.caption_features(pooled, tokens, **gen_kwargs)
        return out

    @torch.no_grad()
    def caption_features(
        self, pooled: torch.Tensor, tokens: torch.Tensor | None = None, **gen_kwargs
    ) -> list[str]:
        """Captions straight from precomputed encoder features."""
        return self.lm.generate(self.prefix(pooled, tokens), **self.generation_kwargs(gen_kwargs))
