"""open_clip models (any `name/pretrained`, `hf-hub:` ids, `local-dir:` folders, checkpoint files)."""

from __future__ import annotations

import torch

from mmgpt2.encoders.base import VisionEncoder


class OpenClipEncoder(VisionEncoder):
    """A frozen open_clip model.

    Example:
        >>> enc = OpenClipEncoder("ViT-B-32", pretrained=None)  # real architecture, random weights
        >>> enc.embed_dim, enc.token_dim
        (512, 768)
    """

    def __init__(self, model_name: str, pretrained: str | None = None, spec: str | None = None):
        super().__init__()
        import open_clip

        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.spec = spec or f"open_clip:{model_name}" + (f"/{pretrained}" if pretrained else "")
        visual = model.visual
        # Patch tokens come from the ViT trunk; open_clip returns them when `output_tokens` is set.
        if hasattr(visual, "output_tokens"):
            visual.output_tokens = True
        self.embed_dim = int(getattr(model, "embed_dim", None) or model.text_projection.shape[-1])
        with torch.no_grad():
            size = getattr(visual, "image_size", 224)
            size = size if isinstance(size, (tuple, list)) else (size, size)
            pooled, tokens = self._encode_image(torch.zeros(1, 3, *size))
        self.embed_dim = pooled.shape[-1]
        self.token_dim = tokens.shape[-1]
        self.freeze()

    def _encode_image(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model.visual(pixels)
        if isinstance(out, tuple):
            pooled, tokens = out
        else:  # encoders without patch tokens (e.g. some timm trunks): the pooled vector is the only token
            pooled, tokens = out, out[:, None, :]
        return pooled, tokens

    def _encode_text(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(texts).to(self.device)
        return self.model.encode_text(ids)
