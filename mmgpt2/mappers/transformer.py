"""ClipCap's transformer mapper.

The pooled feature is projected to L "clip tokens", K learned constants are appended, N transformer
layers mix them, and the K outputs at the constants' positions are the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mmgpt2.config import Config


@dataclass
class TransformerMapperConfig(Config):
    input_dim: int = field(metadata={"min": 1})
    lm_dim: int = field(metadata={"min": 1})
    prefix_length: int = field(default=10, metadata={"min": 1})  # K: prefix tokens given to the LM
    clip_length: int = field(default=10, metadata={"min": 1})  # L: tokens the pooled feature is projected to
    num_layers: int = field(default=8, metadata={"min": 1})
    num_heads: int = field(default=8, metadata={"min": 1})
    dropout: float = field(
        default=0.0, metadata={"min": 0.0, "max": 1.0}
    )  # 0 keeps resumed training bit-identical to an uninterrupted run
    type: str = "transformer"


class TransformerMapper(nn.Module):
    """Example:
    >>> m = TransformerMapper(TransformerMapperConfig(input_dim=512, lm_dim=768))
    >>> m(torch.randn(2, 512)).shape
    torch.Size([2, 10, 768])
    """

    config_class = TransformerMapperConfig

    def __init__(self, config: TransformerMapperConfig):
        super().__init__()
        self.config = config
        d = config.lm_dim
        self.project = nn.Linear(config.input_dim, config.clip_length * d)
        self.prefix_const = nn.Parameter(torch.randn(config.prefix_length, d))
        layer = nn.TransformerEncoderLayer(
            d,
            config.num_heads,
            dim_feedforward=2 * d,
            dropout=config.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)

    def forward(self, pooled: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        b = pooled.shape[0]
        clip_tokens = self.project(pooled).view(b, self.config.clip_length, self.config.lm_dim)
        consts = self.prefix_const.unsqueeze(0).expand(b, -1, -1)
        mixed = self.transformer(torch.cat([clip_tokens, consts], dim=1))
        return mixed[:, self.config.clip_length :]
