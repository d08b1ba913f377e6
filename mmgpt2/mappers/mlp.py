"""ClipCap's MLP mapper: one pooled feature -> K prefix embeddings through a Tanh hidden layer."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mmgpt2.config import Config


@dataclass
class MLPMapperConfig(Config):
    input_dim: int = field(metadata={"min": 1})
    lm_dim: int = field(metadata={"min": 1})
    prefix_length: int = field(default=10, metadata={"min": 1})
    hidden_dim: int | None = field(default=None, metadata={"min": 1})  # ClipCap: (K * d_lm) // 2
    type: str = "mlp"


class MLPMapper(nn.Module):
    """Example:
    >>> m = MLPMapper(MLPMapperConfig(input_dim=512, lm_dim=768, prefix_length=10))
    >>> m(torch.randn(2, 512)).shape
    torch.Size([2, 10, 768])
    """

    config_class = MLPMapperConfig

    def __init__(self, config: MLPMapperConfig):
        super().__init__()
        self.config = config
        out = config.prefix_length * config.lm_dim
        hidden = config.hidden_dim or out // 2
        self.net = nn.Sequential(nn.Linear(config.input_dim, hidden), nn.Tanh(), nn.Linear(hidden, out))

    def forward(self, pooled: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(pooled).view(pooled.shape[0], self.config.prefix_length, self.config.lm_dim)
