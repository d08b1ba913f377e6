"""The one interface every vision encoder offers the rest of the library."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch import nn


class VisionEncoder(nn.Module):
    """A frozen image(-text) encoder.

    Subclasses set `spec`, `embed_dim` (pooled/text width), `token_dim` (patch-token width) and
    `preprocess` (PIL image -> (3, H, W) tensor), and implement `_encode_image` / `_encode_text`.
    Every parameter is frozen and the module stays in eval mode: `train()` is a no-op, so a
    training loop that calls `model.train()` on the whole captioner cannot turn dropout on here.
    """

    spec: str
    embed_dim: int
    token_dim: int
    preprocess: Callable[[Image.Image], torch.Tensor]

    def freeze(self) -> VisionEncoder:
        self.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> VisionEncoder:  # noqa: ARG002 - frozen on purpose
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def weights_fingerprint(self) -> str:
        """A short hash of the weights (`mmgpt2.fingerprint.weights_fingerprint`)."""
        from mmgpt2.fingerprint import weights_fingerprint

        return weights_fingerprint(self)

    def preprocess_batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Stack preprocessed images into a (B, 3, H, W) batch on the encoder's device."""
        return torch.stack([self.preprocess(im) for im in images]).to(self.device)

    @torch.no_grad()
    def encode_image(
        self, pixels: torch.Tensor, return_tokens: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Pooled (B, embed_dim) embedding, and with `return_tokens` also (B, N, token_dim) patch tokens."""
        pooled, tokens = self._encode_image(pixels.to(self.device))
        return (pooled, tokens) if return_tokens else pooled

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, embed_dim) text embeddings in the image space (not normalized)."""
        with torch.no_grad():
            return self._encode_text(list(texts))

    def _encode_image(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _encode_text(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no text tower")
