"""How GPT-2 writes ZeroTA's captions with CLIP steering it: the guided decoder, the word-by-word
refiner and each event's candidate captions.

GPT-2 proposes every word; CLIP only chooses among its proposals (MAGIC-style:
``log p_LM + w * log softmax(CLIP / T)``), so the text stays GPT-2's.
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch.nn import functional as F

from mmgpt2.apps.video.zerota.config import ZeroTAConfig
from mmgpt2.apps.video.zerota.scoring import share_prefix_position
from mmgpt2.encoders import VisionEncoder
from mmgpt2.lm import IGNORE_INDEX, FrozenLM
from mmgpt2.lm.decoding import _Rows  # the KV-cached rows every decoding mode uses


class GuidedWriter:
    """Writes, refines and samples captions from event contexts, judged by CLIP against moments.

    Example:
        >>> writer = GuidedWriter(encoder, lm, ZeroTAConfig())  # doctest: +SKIP
        >>> writer.guided_decode(contexts, moments)      # one caption per event  # doctest: +SKIP
    """

    def __init__(self, encoder: VisionEncoder, lm: FrozenLM, config: ZeroTAConfig):
        self.encoder, self.lm, self.config = encoder, lm, config
        # CLIP embedding of every text judged so far: lookahead endings repeat from step to step.
        self._text_memo: dict[str, torch.Tensor] = {}

    @cached_property
    def n_prefix(self) -> int:
        """Context tokens that share position 0 (soft prompt + moment tokens), if so configured."""
        cfg = self.config
        return (
            (len(self.lm.tokenize([cfg.soft_prompt_init])[0]) or 1) + cfg.moment_tokens
            if cfg.shared_prefix_position
            else 0
        )

    @torch.no_grad()
    def _generation_inputs(
        self, contexts: torch.Tensor, ids: list[list[int]] | None = None
    ) -> dict[str, torch.Tensor]:
        """Left-padded LM inputs: each context, then its ``ids`` (text so far), positions shared."""
        batch = self.lm.build_inputs(contexts.to(self.lm.dtype), ids, pad_left=True)
        batch = share_prefix_position(batch, self.n_prefix)
        batch.pop("labels")
        return batch

    def _generate(self, contexts: torch.Tensor, **gen_kwargs) -> list[str]:
        from mmgpt2.lm.decoding import decode

        return [self.lm.decode(x) for x in decode(self.lm, self._generation_inputs(contexts), **gen_kwargs)]

    def _steer(self, lm_logp: torch.Tensor, sims: torch.Tensor, weight: float) -> torch.Tensor:
        """MAGIC-style choice score over options: ``log p_LM + weight * log softmax(CLIP / T)``."""
        return lm_logp + weight * F.log_softmax(sims / self.config.clip_temperature, dim=-1)

    def caption_text(self, continuation: str) -> str:
        """The caption a user reads: the hard prompt (if configured to show) + GPT-2's continuation."""
        cfg = self.config
        if cfg.prompt_in_caption and cfg.hard_prompt.strip():
            return f"{cfg.hard_prompt.strip()} {continuation}".strip()
        return continuation.strip()

    @torch.no_grad()
    def _complete(
        self, contexts: torch.Tensor, ids: list[list[int]], max_new_tokens: int, sample: bool = False
    ) -> list[list[int]]:
        """Each ``ids[r]`` continued after ``contexts[r]``, greedily or `sample`d (the text CLIP will judge)."""
        from mmgpt2.lm.decoding import decode

        if max_new_tokens < 1:
            return [list(x) for x in ids]
        cfg = self.config
        how = (
            {"do_sample": True, "top_k": cfg.sample_top_k, "temperature": cfg.sample_temperature}
            if sample
            else {}
        )
        new = decode(self.lm, self._generation_inputs(contexts, ids), max_new_tokens=max_new_tokens, **how)
        return [list(x) + y for x, y in zip(ids, new, strict=True)]

    @torch.no_grad()
    def guided_decode(
        self, contexts: torch.Tensor, moments: torch.Tensor, lookahead: bool | None = None
    ) -> list[str]:
        """GPT-2 writes each event's caption token by token from its context; at every step CLIP
        re-ranks GPT-2's own top-k next tokens by how well the text with that token matches the
        moment (MAGIC-style: ``log p_LM + w * log softmax(CLIP / T)``). GPT-2 proposes every word;
        CLIP only chooses among its proposals, so the text stays GPT-2's.

        With `lookahead` (default: the config's) CLIP judges each proposal by whole captions GPT-2
        writes after it, not by the unfinished text: a tiny CLIP, like a large one, was trained on
        whole captions and scores fragments ("a small") almost at random, while finished captions
        it ranks well (see `benchmarks/zerota.py`, the "no lookahead" row). A proposal counts by the
        best of `lookahead_rollouts` endings (the greedy one and sampled ones): the greedy ending
        alone often stops after one object where the moment shows two.
        """
        cfg, lm = self.config, self.lm
        k_events = contexts.shape[0]
        moments = F.normalize(moments.float(), dim=-1)
        ids: list[list[int]] = [[] for _ in range(k_events)]
        done = [False] * k_events
        for step in range(cfg.max_new_tokens):
            live = [i for i in range(k_events) if not done[i]]
            if not live:
                break
            batch = self._generation_inputs(contexts[live], [ids[i] for i in live])
            if cfg.shared_rollouts:
                cache = _Rows(lm, batch)  # its keys and values start every rollout of this step
                logp = F.log_softmax(cache.first_logits, dim=-1)
            else:
                logp = F.log_softmax(lm(**batch)[:, -1].float(), dim=-1)
            top = logp.topk(min(cfg.guided_top_k, logp.shape[-1]), dim=-1)
            proposals = [
                ids[i] + ([] if int(t) == lm.eos_token_id else [int(t)])
                for row, i in enumerate(live)
                for t in top.indices[row]
            ]
            rollouts = [proposals]
            if cfg.lookahead if lookahead is None else lookahead:
                rows = [i for i in live for _ in range(top.indices.shape[1])]
                growing = [j for j, t in enumerate(top.indices.flatten().tolist()) if t != lm.eos_token_id]
                # The greedy ending, plus sampled ones: a greedy ending may stop after one object
                # where the moment shows two; a proposal counts by its best-matching ending.
                n_rollouts = max(1, cfg.lookahead_rollouts)
                rollouts = [list(proposals) for _ in range(n_rollouts)]
                if growing and cfg.shared_rollouts:
                    endings = self._shared_rollouts(
                        cache,
                        [growing_row // top.indices.shape[1] for growing_row in growing],
                        [proposals[j][-1] for j in growing],
                        n_rollouts,
                        cfg.max_new_tokens - step - 1,
                    )
                    for r in range(n_rollouts):
                        for n, j in enumerate(growing):
                            rollouts[r][j] = proposals[j] + endings[r * len(growing) + n]
                elif growing:
                    for r in range(n_rollouts):
                        finished = self._complete(
                            contexts[[rows[j] for j in growing]],
                            [proposals[j] for j in growing],
                            cfg.max_new_tokens - step - 1,
                            sample=r > 0,
                        )
                        for j, f in zip(growing, finished, strict=True):
                            rollouts[r][j] = f
            texts = [
                self.caption_text(lm.decode(x)) or cfg.soft_prompt_init for ended in rollouts for x in ended
            ]
            emb = self._embed(texts).view(len(rollouts), len(live), -1, moments.shape[-1])
            sims = (emb @ moments[live][None, :, :, None]).squeeze(-1).amax(0)
            score = self._steer(top.values, sims, cfg.guided_clip_weight)
            for row, i in enumerate(live):
                token = int(top.indices[row, int(score[row].argmax())])
                if token == lm.eos_token_id:
                    done[i] = True
                else:
                    ids[i].append(token)
        return [lm.decode(x) for x in ids]

    @torch.no_grad()
    def refine(self, contexts: torch.Tensor, moments: torch.Tensor, texts: list[str]) -> list[str]:
        """Improve each event's caption by word-by-word edits that GPT-2 proposes and CLIP judges.

        A left-to-right decoder commits to "small" before it has written the shape, so CLIP can only
        judge that word against a guessed ending. Here the ending is the caption's own: at each
        position GPT-2 proposes its top-k tokens given the words before it (and the event's
        context), each proposal is put in place, and CLIP scores the whole edited caption
        (``log p_LM + w * log softmax(CLIP / T)``, as in `guided_decode`, with ``w =
        refine_clip_weight``: every option is already one GPT-2 proposes, so CLIP may weigh more
        here than when writing). `refine_passes` sweeps.
        """
        cfg, lm = self.config, self.lm
        moments = F.normalize(moments.float(), dim=-1)
        ids = [lm.tokenize([t])[0] for t in texts]
        for _ in range(cfg.refine_passes):
            changed = False
            batch = share_prefix_position(lm.build_inputs(contexts.to(lm.dtype), None, ids), self.n_prefix)
            labels = batch.pop("labels")
            logp = F.log_softmax(lm(**batch).float(), dim=-1)
            for i, tokens in enumerate(ids):
                # logits that predict each caption token: the positions just before its labels
                where = torch.nonzero(labels[i] != IGNORE_INDEX).flatten()[: len(tokens)] - 1
                for pos, row in enumerate(where.tolist()):
                    top = logp[i, row].topk(min(cfg.guided_top_k, logp.shape[-1])).indices.tolist()
                    # keep the word, or put one of GPT-2's own proposals in its place
                    options = list(dict.fromkeys([tokens[pos]] + [t for t in top if t != lm.eos_token_id]))
                    edits = [tokens[:pos] + [t] + tokens[pos + 1 :] for t in options]
                    sims = self.text_embeddings([lm.decode(e) for e in edits]) @ moments[i]
                    prior = logp[i, row, options]
                    best = int(self._steer(prior, sims, cfg.refine_clip_weight).argmax())
                    if edits[best] != tokens:
                        tokens, changed = edits[best], True
                ids[i] = tokens
            if not changed:
                break
        return [lm.decode(x) for x in ids]

    @torch.no_grad()
    def candidates(
        self, contexts: torch.Tensor, samples: int, gen: torch.Generator, moments: torch.Tensor | None = None
    ) -> list[list[str]]:
        """Per event: the CLIP-guided caption (with `moments`) or the greedy one, then `samples`
        sampled ones (deduplicated, at least two words)."""
        cfg, k = self.config, contexts.shape[0]
        if moments is not None and cfg.guided_top_k > 1:
            greedy = self.guided_decode(contexts, moments)
        else:
            greedy = self._generate(contexts, max_new_tokens=cfg.max_new_tokens)
        sampled: list[str] = []
        if samples:
            sampled = self._generate(
                contexts.repeat_interleave(samples, 0),
                max_new_tokens=cfg.max_new_tokens,
                do_sample=True,
                top_k=cfg.sample_top_k,
                temperature=cfg.sample_temperature,
                generator=gen,
            )
        out = []
        for i in range(k):
            texts = [greedy[i]] + sampled[i * samples : (i + 1) * samples]
            # One-word "captions" (an early EOS under a still-random prefix) describe nothing.
            texts = [t for t in dict.fromkeys(t.strip() for t in texts) if len(t.split()) >= 2] or [
                greedy[i].strip() or cfg.soft_prompt_init
            ]
            out.append(texts)
        return out

    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """Normalised CLIP embeddings (N, D) of the captions `texts` continue, on the LM's device."""
        return self._embed([self.caption_text(t) for t in texts])

    def _embed(self, texts: list[str]) -> torch.Tensor:
        """Normalised CLIP embeddings (N, D) of `texts`, each text encoded once per writer."""
        if not self.config.text_cache:
            return F.normalize(self.encoder.encode_text(texts).float().to(self.lm.device), dim=-1)
        memo = self._text_memo
        new = list(dict.fromkeys(t for t in texts if t not in memo))
        if new:
            emb = F.normalize(self.encoder.encode_text(new).float().to(self.lm.device), dim=-1)
            memo.update(zip(new, emb))
        return torch.stack([memo[t] for t in texts])

    @torch.no_grad()
    def _shared_rollouts(
        self, cache: _Rows, sources: list[int], first: list[int], n_rollouts: int, max_new_tokens: int
    ) -> list[list[int]]:
        """Endings of every proposal, all rollouts in one batch that starts from `cache`.

        `cache` holds the keys and values of each live event's context and text so far (the pass
        that proposed the tokens), so no rollout re-reads its context: row ``r * P + p`` feeds
        proposal p's token `first[p]` after event `sources[p]`'s cache and continues it, greedily
        for rollout 0 and sampled (top-k, temperature) for the others. Returns each row's tokens
        after `first`, without EOS.
        """
        cfg, lm = self.config, self.lm
        dev = cache.first_logits.device
        n = len(first)
        results: list[list[int]] = [[] for _ in range(n * n_rollouts)]
        room = lm.max_positions - cache.mask.shape[1] - 1
        steps = min(max_new_tokens, room)
        if steps < 1:
            return results
        cache.select(torch.tensor(sources * n_rollouts, device=dev))
        items = torch.arange(n * n_rollouts, device=dev)  # the result row each cache row writes
        greedy = items < n
        tokens = torch.tensor(first * n_rollouts, device=dev)
        generated = torch.empty(len(items), 0, dtype=torch.long, device=dev)
        for _ in range(steps):
            logits, _ = cache.advance(tokens)
            nxt = logits.argmax(-1)
            if not bool(greedy.all()):
                warped = logits / cfg.sample_temperature
                if 0 < cfg.sample_top_k < warped.shape[-1]:
                    kth = warped.topk(cfg.sample_top_k, dim=-1).values[:, -1:]
                    warped = warped.masked_fill(warped < kth, float("-inf"))
                sampled = torch.multinomial(warped.softmax(-1), 1)[:, 0]
                nxt = torch.where(greedy, nxt, sampled)
            finished = nxt == lm.eos_token_id
            generated = torch.cat([generated, nxt[:, None]], dim=1)
            if bool(finished.any()):
                for r in finished.nonzero()[:, 0].tolist():
                    results[int(items[r])] = generated[r, :-1].tolist()
                keep = (~finished).nonzero()[:, 0]
                if keep.numel() == 0:
                    return results
                cache.select(keep)  # finished endings leave the batch
                items, generated, nxt, greedy = items[keep], generated[keep], nxt[keep], greedy[keep]
            tokens = nxt
        for r, seq in zip(items.tolist(), generated.tolist(), strict=True):
            results[r] = seq
        return results
