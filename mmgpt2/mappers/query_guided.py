"""UAPT's query-guided mapping network: learned queries read the image, their outputs are the visual prefix.

The encoder's patch tokens and its pooled feature are projected to the mapper width and form the
memory; K learned queries run through decoder layers (self-attention among the queries, then
cross-attention into the memory); each query's output, projected to the LM width, is one prefix
token. Unlike ClipCap's mapper it sees the whole patch grid, not only the pooled vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class QueryGuidedMapperConfig:
    input_dim: int  # pooled feature width (encoder.embed_dim)
    lm_dim: int
    token_dim: int | None = None  # patch token width (encoder.token_dim); None: pooled feature only
    prefix_length: int = 10  # K learned queries = K prefix tokens
    hidden_dim: int = 256  # width the queries attend in
    num_layers: int = 2
    num_heads: int = 4
    dropout: float = 0.0
    type: str = "query_guided"


class QueryGuidedMapper(nn.Module):
    """Example:
    >>> m = QueryGuidedMapper(QueryGuidedMapperConfig(input_dim=512, token_dim=768, lm_dim=768))
    >>> m(torch.randn(2, 512), torch.randn(2, 49, 768)).shape
    torch.Size([2, 10, 768])
    """

    def __init__(self, config: QueryGuidedMapperConfig):
        super().__init__()
        self.config = config
        h = config.hidden_dim
        self.pooled_in = nn.Linear(config.input_dim, h)
        self.tokens_in = nn.Linear(config.token_dim, h) if config.token_dim else None
        self.memory_norm = nn.LayerNorm(h)
        self.queries = nn.Parameter(torch.randn(config.prefix_length, h) * 0.02)
        layer = nn.TransformerDecoderLayer(
            h, config.num_heads, dim_feedforward=4 * h, dropout=config.dropout, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, config.num_layers)
        self.out = nn.Sequential(nn.LayerNorm(h), nn.Linear(h, config.lm_dim))

    def forward(self, pooled: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        memory = self.pooled_in(pooled)[:, None]  # the pooled feature is one more token to attend to
        if self.tokens_in is not None:
            if tokens is None:
                raise ValueError(
                    "this query-guided mapper was built for patch tokens (token_dim="
                    f"{self.config.token_dim}); pass encoder tokens (encode_image(..., return_tokens=True))"
                )
            memory = torch.cat([memory, self.tokens_in(tokens)], dim=1)
        queries = self.queries.unsqueeze(0).expand(pooled.shape[0], -1, -1)
        return self.out(self.decoder(queries, self.memory_norm(memory)))


def _register() -> None:
    from . import register_mapper

    register_mapper("query_guided", QueryGuidedMapper, QueryGuidedMapperConfig)


_register()
