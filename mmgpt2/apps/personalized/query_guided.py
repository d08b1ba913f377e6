"""UAPT's query-guided mapping network: learned queries read the image, their outputs are the visual prefix.

The encoder's patch tokens and its pooled feature are projected to the mapper width and form the
memory; K learned queries run through decoder layers (self-attention among the queries, then
cross-attention into the memory); each query's output, projected to the LM width, is one prefix
token. Unlike ClipCap's mapper it sees the whole patch grid, not only the pooled vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mmgpt2.config import Config
from mmgpt2.errors import Mmgpt2Error


@dataclass
class QueryGuidedMapperConfig(Config):
    input_dim: int = field(metadata={"min": 1})  # pooled feature width (encoder.embed_dim)
    lm_dim: int = field(metadata={"min": 1})
    token_dim: int | None = field(
        default=None, metadata={"min": 1}
    )  # patch token width (encoder.token_dim); None: pooled feature only
    prefix_length: int = field(default=10, metadata={"min": 1})  # K learned queries = K prefix tokens
    hidden_dim: int = field(default=256, metadata={"min": 1})  # width the queries attend in
    num_layers: int = field(default=2, metadata={"min": 1})
    num_heads: int = field(default=4, metadata={"min": 1})
    dropout: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    type: str = "query_guided"


class QueryGuidedMapper(nn.Module):
    """Example:
    >>> m = QueryGuidedMapper(QueryGuidedMapperConfig(input_dim=512, token_dim=768, lm_dim=768))
    >>> m(torch.randn(2, 512), torch.randn(2, 49, 768)).shape
    torch.Size([2, 10, 768])
    """

    config_class = QueryGuidedMapperConfig

    def __init__(self, config: QueryGuidedMapperConfig):
        super().__init__()
        self.config = config
        h = config.hidden_dim
        self.pooled_in = nn.Linear(config.input_dim, h)
        self.tokens_in = nn.Linear(config.token_dim, h) if config.token_dim else None
        self.memory_norm = nn.LayerNorm(h)
        self.queries = nn.Parameter(torch.randn(config.prefix_length, h) * 0.02)
        layer = nn.TransformerDecoderLayer(
            h,
            config.num_heads,
            dim_feedforward=4 * h,
            dropout=config.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.decoder = nn.TransformerDecoder(layer, config.num_layers)
        self.out = nn.Sequential(nn.LayerNorm(h), nn.Linear(h, config.lm_dim))

    def forward(self, pooled: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        memory = self.pooled_in(pooled)[:, None]  # the pooled feature is one more token to attend to
        if self.tokens_in is not None:
            if tokens is None:
                raise Mmgpt2Error(
                    "this query-guided mapper was built for patch tokens (token_dim="
                    f"{self.config.token_dim}); pass encoder tokens (encode_image(..., return_tokens=True))"
                )
            memory = torch.cat([memory, self.tokens_in(tokens)], dim=1)
        queries = self.queries.unsqueeze(0).expand(pooled.shape[0], -1, -1)
        return self.out(self.decoder(queries, self.memory_norm(memory)))
