"""Placeholder greedy decoding (KV-cached); the full decoding module replaces this."""

from __future__ import annotations

import torch


def decode(lm, batch: dict, max_new_tokens: int = 20, eos_token_id: int | None = None, **_) -> list[list[int]]:
    eos = lm.eos_token_id if eos_token_id is None else eos_token_id
    mask = batch["attention_mask"]
    out = lm.model(inputs_embeds=batch["inputs_embeds"], attention_mask=mask, position_ids=batch["position_ids"], use_cache=True)
    cache, logits = out.past_key_values, out.logits[:, -1]
    pos = batch["position_ids"][:, -1:]
    done = torch.zeros(mask.shape[0], dtype=torch.bool, device=mask.device)
    result: list[list[int]] = [[] for _ in range(mask.shape[0])]
    for _ in range(max_new_tokens):
        nxt = logits.argmax(-1)
        for i, t in enumerate(nxt.tolist()):
            if not done[i] and t != eos:
                result[i].append(t)
        done |= nxt == eos
        if done.all():
            break
        pos = pos + 1
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = lm.model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1]
    return result
