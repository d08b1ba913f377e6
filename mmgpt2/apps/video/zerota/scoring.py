"""Scoring texts with the LM: with each event's context, or after only BOS + hard prompt."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mmgpt2.lm import IGNORE_INDEX, FrozenLM


def masked_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token negative log-likelihood of each row's labelled tokens.

    `logits` (B, T, V) are the LM's outputs over inputs whose `labels` (B, T) come from
    `FrozenLM.build_inputs` (`IGNORE_INDEX` on prefix, prompt and padding); position t predicts
    label t + 1. Rows without labels score 0.

    Example:
        >>> from mmgpt2.lm import load_lm
        >>> lm = load_lm("embedded:shapes-gpt2")
        >>> prefix = torch.zeros(1, 2, lm.hidden_size)  # one row, two prefix vectors
        >>> batch = lm.build_inputs(prefix, None, lm.tokenize(["a red circle"], add_eos=True))
        >>> labels = batch.pop("labels")
        >>> nll = masked_nll(lm(**batch), labels)  # (1,) nats per token
        >>> tuple(nll.shape), bool(nll.item() > 0)
        ((1,), True)
    """
    target = labels[:, 1:]
    logits = logits[:, :-1].float()
    valid = target != IGNORE_INDEX
    nll = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
    return (nll.view_as(target) * valid).sum(1) / valid.sum(1).clamp(min=1)


def label_logits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits that predict each labelled token (N, V), and the row each came from (N,)."""
    valid = labels[:, 1:] != IGNORE_INDEX
    rows = torch.arange(valid.shape[0], device=valid.device)[:, None].expand_as(valid)[valid]
    return logits[:, :-1].float()[valid], rows


def share_prefix_position(batch: dict[str, torch.Tensor], n_prefix: int) -> dict[str, torch.Tensor]:
    """Put the first `n_prefix` tokens of every row (soft prompt + moment tokens) at position 0,
    like the BOS after them, so the text that follows keeps its pretraining positions."""
    mask = batch["attention_mask"]
    batch["position_ids"] = (mask.cumsum(-1) - 1 - n_prefix).clamp(min=0)
    return batch


def sequence_logprobs(
    lm: FrozenLM, contexts: torch.Tensor, ids: list[list[int]], rows: list[tuple[int, int]], n_prefix: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Length-normalised log p(ids[j] | contexts[k]) for each (k, j) in `rows`.

    Returns (scores (R,), token logits of every target position (N, V), row index of each (N,)).
    """
    ctx = contexts[[k for k, _ in rows]]
    batch = share_prefix_position(
        lm.build_inputs(ctx.to(lm.dtype), None, [ids[j] for _, j in rows]), n_prefix
    )
    labels = batch.pop("labels")
    logits = lm(**batch)
    return -masked_nll(logits, labels), *label_logits(logits, labels)


def _unprefixed(lm: FrozenLM, hard_ids: list[int], ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    empty = torch.zeros(len(ids), 0, lm.hidden_size, device=lm.device, dtype=lm.dtype)
    batch = lm.build_inputs(empty, [hard_ids] * len(ids), ids)
    labels = batch.pop("labels")
    return lm(**batch), labels


@torch.no_grad()
def unprefixed_fluency(lm: FrozenLM, hard_ids: list[int], texts: list[str]) -> torch.Tensor:
    """Mean token log-prob of each text (and its EOS) after only BOS + hard prompt."""
    return -masked_nll(*_unprefixed(lm, hard_ids, lm.tokenize(texts, add_eos=True)))


@torch.no_grad()
def unprefixed_logits(lm: FrozenLM, hard_ids: list[int], ids: list[list[int]]) -> torch.Tensor:
    """Next-token logits along each text after only BOS + hard prompt (the fluency reference)."""
    return label_logits(*_unprefixed(lm, hard_ids, ids))[0]
