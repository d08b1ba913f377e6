"""UAPT's fusion transformer: merges the visual prefix with the user's context words into the prefix.

The context words are embedded by the frozen LM's own word embeddings (so no new vocabulary is
learned), projected, tagged with a segment embedding, and concatenated after the K visual prefix
tokens; transformer layers mix the two and the outputs at the K visual positions, added to the
visual prefix (a residual, so an empty context leaves a plain image prefix), are the final prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mmgpt2.config import Config


@dataclass
class FusionConfig(Config):
    lm_dim: int = field(metadata={"min": 1})
    num_layers: int = field(default=1, metadata={"min": 1})  # UAPT uses a single transformer layer
    num_heads: int = field(default=4, metadata={"min": 1})
    max_context_tokens: int = field(default=160, metadata={"min": 1})  # ~100 TF-IDF words in GPT-2 BPE tokens
    dropout: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    type: str = "fusion"


class FusionTransformer(nn.Module):
    """Example:
    >>> f = FusionTransformer(FusionConfig(lm_dim=768))
    >>> visual, words = torch.randn(2, 10, 768), torch.randn(2, 30, 768)
    >>> f(visual, words, torch.ones(2, 30, dtype=torch.bool)).shape
    torch.Size([2, 10, 768])
    """

    config_class = FusionConfig

    def __init__(self, config: FusionConfig):
        super().__init__()
        self.config = config
        d = config.lm_dim
        # Word embeddings of a frozen LM are small next to a learned prefix; normalizing them first
        # lets the context speak as loudly as the image from the first step.
        self.context_in = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d))
        self.segment = nn.Embedding(2, d)  # 0: visual prefix token, 1: user context word
        nn.init.normal_(self.segment.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d,
            config.num_heads,
            dim_feedforward=2 * d,
            dropout=config.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)

    def forward(
        self,
        visual: torch.Tensor,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`visual` (B, K, d), `context` (B, C, d) word embeddings, `context_mask` (B, C) True = real word."""
        b, k, _ = visual.shape
        parts = [visual + self.segment.weight[0]]
        keep = torch.ones(b, k, dtype=torch.bool, device=visual.device)
        if context is not None and context.shape[1] > 0:
            parts.append(self.context_in(context) + self.segment.weight[1])
            mask = (
                context_mask
                if context_mask is not None
                else torch.ones(context.shape[:2], dtype=torch.bool, device=visual.device)
            )
            keep = torch.cat([keep, mask.to(visual.device).bool()], dim=1)
        mixed = self.layers(torch.cat(parts, dim=1), src_key_padding_mask=~keep)
        return mixed[:, :k]
