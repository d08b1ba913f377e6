"""Med-XPT's projector: a small transformer over the encoder's patch tokens -> K prefix embeddings.

Patch tokens are projected to the LM width and given learned position embeddings; the pooled
image embedding becomes one more token; K learned queries are appended, N transformer layers mix
everything, and the K outputs at the queries' positions are the prefix. Unlike ClipCap's mapper,
the prefix sees where in the image each feature is (a finding's side and lobe matter here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mmgpt2.config import Config
from mmgpt2.errors import Mmgpt2Error


@dataclass
class ProjectorConfig(Config):
    input_dim: int = field(metadata={"min": 1})  # pooled embedding width (encoder.embed_dim)
    token_dim: int = field(metadata={"min": 1})  # patch-token width (encoder.token_dim)
    lm_dim: int = field(metadata={"min": 1})
    prefix_length: int = field(default=10, metadata={"min": 1})  # K
    max_tokens: int = field(default=256, metadata={"min": 1})  # patch tokens the position table covers
    num_layers: int = field(default=2, metadata={"min": 1})
    num_heads: int = field(default=4, metadata={"min": 1})
    dropout: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    type: str = "projector"


class Projector(nn.Module):
    """Example:
    >>> p = Projector(ProjectorConfig(input_dim=128, token_dim=192, lm_dim=768))
    >>> p(torch.randn(2, 128), torch.randn(2, 64, 192)).shape
    torch.Size([2, 10, 768])
    """

    config_class = ProjectorConfig

    def __init__(self, config: ProjectorConfig):
        super().__init__()
        self.config = config
        d = config.lm_dim
        if d % config.num_heads:
            raise Mmgpt2Error(f"projector: lm_dim {d} is not divisible by num_heads {config.num_heads}")
        self.project_tokens = nn.Linear(config.token_dim, d)
        self.project_pooled = nn.Linear(config.input_dim, d)
        self.positions = nn.Parameter(torch.randn(config.max_tokens, d) * 0.02)
        self.queries = nn.Parameter(torch.randn(config.prefix_length, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d,
            config.num_heads,
            dim_feedforward=2 * d,
            dropout=config.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def forward(self, pooled: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        b = pooled.shape[0]
        parts = [self.project_pooled(pooled)[:, None]]
        if tokens is not None:
            n = tokens.shape[1]
            if n > self.config.max_tokens:
                raise Mmgpt2Error(
                    f"projector: {n} patch tokens exceed max_tokens={self.config.max_tokens}; rebuild it larger"
                )
            parts.append(self.project_tokens(tokens) + self.positions[:n])
        parts.append(self.queries.unsqueeze(0).expand(b, -1, -1))
        mixed = self.transformer(torch.cat(parts, dim=1))
        return self.norm(mixed[:, -self.config.prefix_length :])
