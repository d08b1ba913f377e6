"""Each event's GPT-2 context ``[soft prompt | projection(moment) | BOS + hard prompt]``.

The projection from CLIP space to GPT-2's input embeddings starts *without any caption data*: a
ridge regression from the CLIP text embeddings of the LM's own vocabulary words to those words'
input embeddings (so a moment that looks like "red" starts near the embedding of "red").
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from mmgpt2.apps.video.zerota.config import ZeroTAConfig
from mmgpt2.encoders import VisionEncoder
from mmgpt2.errors import Mmgpt2Error
from mmgpt2.lm import FrozenLM


class Projection(NamedTuple):
    """``proj(x) = (normalize(x) - text_mean) @ weight + emb_mean``."""

    weight: torch.Tensor  # (D_clip, d_lm)
    text_mean: torch.Tensor  # (D_clip,)
    emb_mean: torch.Tensor  # (d_lm,)

    def to(self, device: torch.device) -> Projection:
        return Projection(*(t.to(device) for t in self))


@torch.no_grad()
def vocabulary_projection(
    encoder: VisionEncoder, lm: FrozenLM, vocab: int = 4000, ridge: float = 0.05
) -> Projection:
    """The ridge map from CLIP text space to GPT-2 input embeddings.

    Fitted on the LM's first `vocab` word tokens (BPE ids come roughly in frequency order): each
    word's normalised CLIP text embedding, centred, is regressed onto its GPT-2 input embedding.

    Example:
        >>> from mmgpt2.encoders import load_encoder
        >>> from mmgpt2.lm import load_lm
        >>> encoder, lm = load_encoder("embedded:shapes-clip"), load_lm("embedded:shapes-gpt2")
        >>> w, text_mean, emb_mean = vocabulary_projection(encoder, lm, vocab=500)
        >>> tuple(w.shape), tuple(text_mean.shape), tuple(emb_mean.shape)  # (D_clip, d_lm), (D_clip,), (d_lm,)
        ((128, 128), (128,), (128,))
    """
    ids, words = [], []
    for i in range(len(lm.tokenizer)):
        word = lm.tokenizer.decode([i]).strip()
        if len(word) >= 2 and word.isalpha() and word.isascii():
            ids.append(i)
            words.append(word.lower())
        if len(ids) >= vocab:
            break
    if len(ids) < 8:
        raise Mmgpt2Error(
            f"LM {lm.spec!r}: its vocabulary has too few word tokens ({len(ids)}) to fit a projection"
        )
    text = torch.cat([encoder.encode_text(words[i : i + 256]).float() for i in range(0, len(words), 256)])
    text = F.normalize(text, dim=-1).to(lm.device)
    emb = lm.embed(torch.tensor(ids, device=lm.device)).float()
    t_mean, e_mean = text.mean(0), emb.mean(0)
    tc, ec = text - t_mean, emb - e_mean
    gram = tc.T @ tc + ridge * len(ids) * torch.eye(tc.shape[1], device=tc.device) / tc.shape[1]
    return Projection(torch.linalg.solve(gram, tc.T @ ec), t_mean, e_mean)


class ProjectionCache:
    """Fitted projections keyed by the weights they were fitted on (not by spec: a retrained
    ``embedded:shapes-clip`` is a different encoder), so every video of a run fits it once.

    Example:
        >>> from mmgpt2.encoders import load_encoder
        >>> from mmgpt2.lm import load_lm
        >>> encoder, lm = load_encoder("embedded:shapes-clip"), load_lm("embedded:shapes-gpt2")
        >>> cache = ProjectionCache()
        >>> first, again = cache.get(encoder, lm, 4000, 0.05), cache.get(encoder, lm, 4000, 0.05)
        >>> len(cache), bool(torch.equal(first.weight, again.weight))  # fitted once, reused
        (1, True)
    """

    def __init__(self) -> None:
        self._fitted: dict[tuple[str, str, int, float], Projection] = {}

    def __len__(self) -> int:
        return len(self._fitted)

    def get(self, encoder: VisionEncoder, lm: FrozenLM, vocab: int, ridge: float) -> Projection:
        key = (encoder.weights_fingerprint(), lm.weights_fingerprint(), vocab, ridge)
        if key not in self._fitted:
            self._fitted[key] = vocabulary_projection(encoder, lm, vocab, ridge)
        return self._fitted[key].to(lm.device)


def hard_prompt_ids(lm: FrozenLM, config: ZeroTAConfig) -> list[int]:
    """BOS (if configured) + the hard prompt's tokens: the end of every event's context."""
    return ([lm.eos_token_id] if config.bos else []) + lm.tokenize([config.hard_prompt])[0]


class ZeroTAPrefix(nn.Module):
    """Builds each event's context ``[soft prompt | projection(moment) | BOS + hard prompt]``.

    Example:
        >>> from mmgpt2.encoders import load_encoder
        >>> from mmgpt2.lm import load_lm
        >>> encoder, lm = load_encoder("embedded:shapes-clip"), load_lm("embedded:shapes-gpt2")
        >>> prefix = ZeroTAPrefix(encoder, lm, ZeroTAConfig())
        >>> moments = torch.randn(4, encoder.embed_dim)  # K = 4 moment embeddings
        >>> prefix(moments).shape  # (K, n_soft + moment_tokens + BOS/hard prompt, d_lm)
        torch.Size([4, 6, 128])
    """

    def __init__(
        self,
        encoder: VisionEncoder,
        lm: FrozenLM,
        config: ZeroTAConfig,
        projections: ProjectionCache | None = None,
    ):
        super().__init__()
        d = lm.hidden_size
        seed_ids = lm.tokenize([config.soft_prompt_init])[0] or [lm.eos_token_id]
        self.soft = nn.Parameter(lm.embed(torch.tensor(seed_ids, device=lm.device)).detach().float().clone())
        cache = projections if projections is not None else ProjectionCache()
        w, t_mean, e_mean = cache.get(encoder, lm, config.projection_vocab, config.projection_ridge)
        m = config.moment_tokens
        self.proj = nn.Linear(w.shape[0], m * d).to(lm.device)
        with torch.no_grad():
            # Every moment token starts as the ridge map; a little noise lets them specialise. The
            # noise comes from a CPU generator on purpose (once per video, not per step): the same
            # seed then starts the same optimisation on CPU and on CUDA.
            g = torch.Generator().manual_seed(config.seed)
            noise = torch.randn(m * d, w.shape[0], generator=g).to(w.device) * 0.01 * w.std()
            self.proj.weight.copy_(w.T.repeat(m, 1) + noise)
            self.proj.bias.copy_((e_mean - t_mean @ w).repeat(m))
        self.m, self.d = m, d
        hard = torch.tensor(hard_prompt_ids(lm, config), dtype=torch.long, device=lm.device)
        self.register_buffer("hard", lm.embed(hard).float())

    def forward(self, moments: torch.Tensor) -> torch.Tensor:
        k = moments.shape[0]
        projected = self.proj(F.normalize(moments, dim=-1)).view(k, self.m, self.d)
        return torch.cat([self.soft.expand(k, -1, -1), projected, self.hard.expand(k, -1, -1)], dim=1)
