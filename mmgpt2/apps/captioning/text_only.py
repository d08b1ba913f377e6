"""Text-only captioning (CapDec, Nukrai et al. 2022; DeCap, Li et al. 2023): train the mapper without images.

A contrastive encoder puts a caption and its image near each other, so a mapper trained to turn
the *text* embedding of a caption back into that caption can be given an *image* embedding at
inference. The two do not coincide (the "modality gap"), and CapDec closes it by training on
noisy text embeddings: ``normalize(text) + N(0, variance)``, variance 0.016 by default. DeCap
instead moves the image embedding into text space at inference: a softmax-weighted mix of a
memory of training-caption embeddings, ``softmax(cos(image, m_i) / T) @ M`` (T = 0.01). Both are
here: noise at training, and the projection as an inference switch (``projection="decap"``).

Training reads captions only: `CaptionTextDataset` embeds each distinct caption once with the
encoder's text tower and never opens an image (a domain with captions and no images can be
captioned).

Example:
    >>> cap = TextOnlyCaptioner.build("embedded:shapes-clip", "embedded:shapes-gpt2", mapper="mlp", prefix_length=8)
    >>> train(cap, CaptionTextDataset(texts, cap.encoder), TrainConfig(out_dir="runs/textonly"))  # doctest: +SKIP
    >>> cap.caption("img.png"), cap.caption("img.png", projection="decap")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional as F
from torch.utils.data import Dataset

from mmgpt2.apps.captioning.model import PrefixCaptioner
from mmgpt2.checkpoint import atomic_write
from mmgpt2.config import Config
from mmgpt2.errors import Mmgpt2Error
from mmgpt2.retrieval import embed_texts

MEMORY_NAME = "memory.safetensors"
PROJECTIONS = ("none", "decap")


@dataclass
class TextOnlyCaptionerConfig(Config):
    """A saved `TextOnlyCaptioner`: mapper, training noise, and the default inference projection."""

    mapper: dict[str, Any] = field(default_factory=dict)
    noise_variance: float = field(default=0.016, metadata={"min": 0.0})  # CapDec's
    projection: str = field(default="none", metadata={"choices": PROJECTIONS})
    decap_temperature: float = field(default=0.01, metadata={"min": 1e-6})  # DeCap's


class TextOnlyCaptioner(PrefixCaptioner):
    """A prefix captioner whose mapper was trained on noisy text embeddings of captions.

    Example:
        >>> cap = TextOnlyCaptioner.from_pretrained("shapes-tiny-textonly")
        >>> cap.caption(["assets/examples/shapes_0.png"])  # CapDec: image embedding in
        ['a large yellow circle in the center']
        >>> cap.caption(["assets/examples/shapes_0.png"], projection="decap")  # DeCap projection first
        ['a large yellow circle in the center']
    """

    kind = "text_only_captioner"
    config_class = TextOnlyCaptionerConfig

    def __init__(
        self,
        encoder,
        lm,
        mapper,
        generation=None,
        noise_variance: float = 0.016,
        projection: str = "none",
        decap_temperature: float = 0.01,
    ):
        super().__init__(encoder, lm, mapper, generation)
        self.settings = TextOnlyCaptionerConfig(
            mapper={},
            noise_variance=noise_variance,
            projection=projection,
            decap_temperature=decap_temperature,
        )
        # DeCap's memory: normalized text embeddings of training captions (saved beside the weights).
        self.memory: torch.Tensor | None = None

    @classmethod
    def build(
        cls,
        encoder,
        lm,
        mapper: str = "mlp",
        generation: dict[str, Any] | None = None,
        noise_variance: float = 0.016,
        projection: str = "none",
        **mapper_kwargs: Any,
    ) -> TextOnlyCaptioner:
        base = PrefixCaptioner.build(encoder, lm, mapper=mapper, **mapper_kwargs)
        return cls(base.encoder, base.lm, base.mapper, generation, noise_variance, projection)

    def app_config(self) -> TextOnlyCaptionerConfig:
        return self.settings.replace(mapper=self.mapper.config.to_dict())

    @classmethod
    def from_app_config(cls, config: TextOnlyCaptionerConfig, encoder, lm) -> dict[str, Any]:
        return {
            **super().from_app_config(config, encoder, lm),
            "noise_variance": config.noise_variance,
            "projection": config.projection,
            "decap_temperature": config.decap_temperature,
        }

    def save_extras(self, folder: Path) -> None:
        if self.memory is not None:
            memory = {"memory": self.memory.detach().half().cpu().contiguous()}
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(folder / MEMORY_NAME, lambda p: save_file(memory, str(p)))

    def load_extras(self, folder: Path) -> None:
        if (folder / MEMORY_NAME).is_file():
            self.memory = load_file(str(folder / MEMORY_NAME))["memory"].float()

    # --- DeCap's memory ----------------------------------------------------------------------------
    def set_memory(self, captions: Sequence[str], size: int | None = 4096, seed: int = 0) -> None:
        """Embed (up to `size`, a seeded sample of) distinct `captions` as the DeCap projection memory."""
        texts = list(dict.fromkeys(c.strip() for c in captions if c.strip()))
        if size is not None and len(texts) > size:
            texts = random.Random(seed).sample(texts, size)
        if not texts:
            raise Mmgpt2Error("the DeCap memory needs at least one caption")
        self.memory = F.normalize(torch.from_numpy(embed_texts(self.encoder, texts, progress=False)), dim=-1)

    def project(self, pooled: torch.Tensor, projection: str | None = None) -> torch.Tensor:
        """Normalized image embeddings, moved into text space first when `projection` is "decap"."""
        x = F.normalize(pooled.float(), dim=-1)
        how = projection or self.settings.projection
        if how not in PROJECTIONS:
            raise Mmgpt2Error(f"projection={how!r}: choose one of {list(PROJECTIONS)}")
        if how == "decap":
            if self.memory is None:
                raise Mmgpt2Error(
                    "projection='decap' needs a memory of caption embeddings; call set_memory(captions)"
                )
            memory = self.memory.to(x.device)
            weights = (x @ memory.T / self.settings.decap_temperature).softmax(-1)
            x = F.normalize(weights @ memory, dim=-1)
        return x

    # --- training: noisy text embeddings ------------------------------------------------------------
    def training_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Batch from `CaptionTextDataset`: ``pooled`` holds the captions' *text* embeddings."""
        x = F.normalize(batch["pooled"].float().to(self.device), dim=-1)
        if self.settings.noise_variance > 0:
            x = x + torch.randn_like(x) * math.sqrt(self.settings.noise_variance)
        return self.lm.loss(self.mapper(x), batch["captions"])

    # --- inference: image embeddings (`caption(images, projection=...)` reaches here) ---------------
    @torch.no_grad()
    def caption_features(
        self,
        pooled: torch.Tensor,
        tokens: torch.Tensor | None = None,
        projection: str | None = None,
        **gen_kwargs,
    ) -> list[str]:
        """Captions from pooled image embeddings; `projection` ("none" / "decap") overrides the saved one."""
        prefix = self.mapper(self.project(pooled, projection).to(self.device))
        return self.lm.generate(prefix, **self.generation_kwargs(gen_kwargs))


class CaptionTextDataset(Dataset):
    """Training pairs from captions alone: each caption with its own text embedding (no images).

    Example:
        >>> from mmgpt2.encoders import load_encoder
        >>> enc = load_encoder("embedded:shapes-clip")
        >>> ds = CaptionTextDataset(["a red circle at the top", "a blue square"], enc, progress=False)
        >>> ds[0]["pooled"].shape, ds[0]["captions"]
        (torch.Size([128]), 'a red circle at the top')
    """

    def __init__(self, captions: Sequence[str], encoder, progress: bool = True):
        self.captions = [c.strip() for c in captions if c and c.strip()]
        if not self.captions:
            raise Mmgpt2Error("no training captions: every caption was empty")
        distinct = list(dict.fromkeys(self.captions))
        vectors = torch.from_numpy(
            embed_texts(encoder, distinct, progress=progress, desc="embedding captions")
        )
        row = {c: i for i, c in enumerate(distinct)}
        self.rows = [row[c] for c in self.captions]
        self.vectors = vectors

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"index": i, "pooled": self.vectors[self.rows[i]], "captions": self.captions[i]}
