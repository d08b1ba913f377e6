"""CLIP-guided top-k decoding: GPT-2 proposes each next token, CLIP chooses among the proposals.

MAGIC (Su et al. 2022) decodes with a frozen LM and re-ranks its top-k next tokens by how well
the text with each token matches the image under CLIP:
``score = log p_LM(token) + w * log softmax(cos(image, text + token) / T)``. The text is always
the LM's own (CLIP never writes a word), and there is no gradient step, which is what makes it
an order of magnitude faster than ZeroCap's per-token optimisation of the LM's context.

One change for small CLIPs: with `lookahead_rollouts` > 0, CLIP judges each proposal by whole
captions the LM finishes after it (the greedy ending plus sampled ones, best one counts), not by
the unfinished text. A CLIP trained on whole captions, the embedded tiny one as much as a large
one, scores fragments ("a small") almost at random (ZeroTA found the same: see
`mmgpt2.apps.video.zerota`). ``lookahead_rollouts=0`` is MAGIC as published.

This module knows nothing of images or videos: the caller passes `make_inputs(rows, ids)`, the
left-padded LM inputs of its own contexts followed by the text so far, and the CLIP embeddings
(`targets`) the text should match. `mmgpt2.apps.captioning.zero_shot` calls it with an image
embedding; ZeroTA's guided writer does the same with moment embeddings and could call it too.

Example:
    >>> make = lambda rows, ids: lm_inputs(lm, context.expand(len(rows), -1, -1), ids)  # doctest: +SKIP
    >>> ids = guided_decode(lm, encoder, make, image_embeddings, GuidedSettings(top_k=8))  # doctest: +SKIP
    >>> [lm.decode(x) for x in ids]  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from mmgpt2.config import Config

#: ``make_inputs(rows, ids)``: LM inputs (no labels, left-padded) for the contexts of `rows`,
#: each followed by its token ids so far.
MakeInputs = Callable[[Sequence[int], Sequence[Sequence[int]]], dict[str, torch.Tensor]]


@dataclass
class GuidedSettings(Config):
    """How the LM proposes and CLIP chooses (defaults tuned on the embedded shapes models)."""

    top_k: int = field(default=8, metadata={"min": 1})  # proposals per step
    clip_weight: float = field(default=2.0, metadata={"min": 0.0})
    # proposals the LM gives less than this probability are never chosen (its top one always may):
    # CLIP can then weigh heavily without picking words that break the sentence
    min_prob: float = field(default=0.02, metadata={"min": 0.0, "max": 1.0})
    # decoding passes; each after the first also judges proposals by the previous caption's ending
    passes: int = field(default=3, metadata={"min": 1})
    seed: int = 0  # of the sampled endings: the same image gets the same caption
    clip_temperature: float = field(default=0.02, metadata={"min": 1e-6})
    lookahead_rollouts: int = field(default=3, metadata={"min": 0})  # 0: judge the text so far (MAGIC)
    max_new_tokens: int = field(default=16, metadata={"min": 1})
    sample_top_k: int = field(default=20, metadata={"min": 1})
    sample_temperature: float = field(default=1.0, metadata={"min": 1e-6})


def lm_inputs(
    lm, contexts: torch.Tensor, ids: Sequence[Sequence[int]] | None = None
) -> dict[str, torch.Tensor]:
    """Left-padded inputs: each context (B, T, d) followed by its ids; the default `MakeInputs`."""
    batch = lm.build_inputs(contexts.to(lm.dtype), ids, pad_left=True)
    batch.pop("labels")
    return batch


def steer(lm_logp: torch.Tensor, sims: torch.Tensor, weight: float, temperature: float) -> torch.Tensor:
    """MAGIC's choice score over options: ``log p_LM + weight * log softmax(CLIP / T)``."""
    return lm_logp + weight * F.log_softmax(sims / temperature, dim=-1)


def choose(lm_logp: torch.Tensor, sims: torch.Tensor, s: GuidedSettings) -> torch.Tensor:
    """Index of the best option per row by `steer`, among options the LM gives >= `min_prob`
    (its first, most likely, option always counts)."""
    unlikely = lm_logp < math.log(max(s.min_prob, 1e-30))
    unlikely[..., 0] = False
    return (
        steer(lm_logp, sims, s.clip_weight, s.clip_temperature)
        .masked_fill(unlikely, float("-inf"))
        .argmax(-1)
    )


@torch.no_grad()
def complete(
    lm,
    make_inputs: MakeInputs,
    rows: Sequence[int],
    ids: Sequence[Sequence[int]],
    max_new_tokens: int,
    settings: GuidedSettings,
    sample: bool = False,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """Each ``ids[j]`` continued after the context of ``rows[j]``, greedily or `sample`d (with `generator`)."""
    from mmgpt2.lm.decoding import decode

    if max_new_tokens < 1 or not ids:
        return [list(x) for x in ids]
    how = (
        {
            "do_sample": True,
            "top_k": settings.sample_top_k,
            "temperature": settings.sample_temperature,
            "generator": generator,
        }
        if sample
        else {}
    )
    new = decode(lm, make_inputs(rows, ids), max_new_tokens=max_new_tokens, **how)
    return [list(x) + y for x, y in zip(ids, new, strict=True)]


@torch.no_grad()
def guided_decode(
    lm,
    encoder,
    make_inputs: MakeInputs,
    targets: torch.Tensor,
    settings: GuidedSettings | None = None,
    to_text: Callable[[str], str] = str.strip,
    previous: Sequence[Sequence[int]] | None = None,
) -> list[list[int]]:
    """Token ids of one caption per row of `targets` (B, D): the LM writes, CLIP chooses (see the module doc).

    `to_text` turns decoded text into what CLIP reads (e.g. with a hard prompt in front).
    `previous` (one earlier caption per row) adds one more ending to every proposal: the rest of
    that caption after the proposal's position. A sampled ending guesses the words still to come
    at random, so "red" can lose to "orange" because red's ending named the wrong shape; the
    earlier caption's ending names the shape CLIP already chose (`passes` in `guided_captions`).
    """
    s = settings or GuidedSettings()
    targets = F.normalize(targets.float().to(lm.device), dim=-1)
    n = targets.shape[0]
    generator = torch.Generator(device=lm.device).manual_seed(s.seed)
    ids: list[list[int]] = [[] for _ in range(n)]
    done = [False] * n
    eos = lm.eos_token_id
    for step in range(s.max_new_tokens):
        live = [i for i in range(n) if not done[i]]
        if not live:
            break
        logp = F.log_softmax(lm(**make_inputs(live, [ids[i] for i in live]))[:, -1].float(), dim=-1)
        top = logp.topk(min(s.top_k, logp.shape[-1]), dim=-1)
        tokens = top.indices.tolist()
        proposals = [ids[i] + ([] if t == eos else [t]) for row, i in enumerate(live) for t in tokens[row]]
        rollouts = [proposals]
        if s.lookahead_rollouts:
            owner = [i for i in live for _ in range(top.indices.shape[1])]
            growing = [j for j, t in enumerate(top.indices.flatten().tolist()) if t != eos]
            rollouts = []
            for r in range(s.lookahead_rollouts):
                ended = list(proposals)
                finished = complete(
                    lm,
                    make_inputs,
                    [owner[j] for j in growing],
                    [proposals[j] for j in growing],
                    s.max_new_tokens - step - 1,
                    s,
                    sample=r > 0,
                    generator=generator,
                )
                for j, f in zip(growing, finished, strict=True):
                    ended[j] = f
                rollouts.append(ended)
            if previous is not None:
                rollouts.append(
                    [
                        p + list(previous[owner[j]][step + 1 :]) if j in set(growing) else p
                        for j, p in enumerate(proposals)
                    ]
                )
        texts = [to_text(lm.decode(x)) or "." for ended in rollouts for x in ended]
        emb = F.normalize(encoder.encode_text(texts).float().to(lm.device), dim=-1)
        emb = emb.view(len(rollouts), len(live), -1, targets.shape[-1])
        sims = (emb @ targets[live][None, :, :, None]).squeeze(-1).amax(0)  # best ending per proposal
        best = choose(top.values, sims, s).tolist()
        for row, i in enumerate(live):
            token = tokens[row][best[row]]
            if token == eos:
                done[i] = True
            else:
                ids[i].append(token)
    return ids


@torch.no_grad()
def guided_captions(
    lm,
    encoder,
    make_inputs: MakeInputs,
    targets: torch.Tensor,
    settings: GuidedSettings | None = None,
    to_text: Callable[[str], str] = str.strip,
) -> list[list[int]]:
    """`guided_decode` run `settings.passes` times, each pass judging proposals also by the ending
    of the caption the pass before wrote (`previous`)."""
    s = settings or GuidedSettings()
    ids = None
    for _ in range(s.passes):
        ids = guided_decode(lm, encoder, make_inputs, targets, s, to_text, previous=ids)
    return ids
