"""Batched, KV-cached decoding for `FrozenLM`: greedy, beam search, sampling and contrastive search.

Every mode prefills the whole (prefix + prompt) batch once, then feeds one token per row per step
through a transformers `DynamicCache`. Rows that finish are dropped from the cache
(`batch_select_indices` / `reorder_cache`), so a batch only pays for its unfinished items.
ClipCap, by contrast, decodes one image at a time and re-runs the whole sequence for every token.

Keyword arguments follow `transformers.GenerationConfig` names and meanings.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from mmgpt2.errors import ConfigError, Mmgpt2Error

_EARLY_STOPPING = (True, False, "never")


@dataclass
class GenerationConfig:
    """Decoding options, with transformers' names and meanings.

    The mode follows transformers: ``penalty_alpha > 0`` and ``top_k > 1`` -> contrastive search;
    ``num_beams > 1`` -> beam search; ``do_sample`` -> sampling (temperature, top-k, top-p);
    otherwise greedy. ``repetition_penalty`` and ``no_repeat_ngram_size`` look at the generated
    tokens only (the prefix is embeddings, not ids), and, like ``min_new_tokens``, act on the
    logits before the (log-)softmax in every mode.

    Example:
        >>> cfg = GenerationConfig.from_kwargs(num_beams=5, max_new_tokens=30)
        >>> cfg.mode
        'beam'
    """

    max_new_tokens: int = 20
    min_new_tokens: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    penalty_alpha: float | None = None
    eos_token_id: int | list[int] | None = None
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    seed: int | None = None
    generator: torch.Generator | None = None

    @classmethod
    def from_kwargs(cls, **kwargs) -> GenerationConfig:
        """Build from `generate(**kwargs)`; unknown names raise a TypeError listing them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown generation argument(s) {unknown}; accepted: {sorted(known)}")
        return cls(**kwargs)

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ConfigError(
                f"{name}={getattr(self, name)!r}: {why}"
            )  # a ValueError the CLI shows in one line

        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise bad("max_new_tokens", "must be an integer >= 1")
        if not isinstance(self.min_new_tokens, int) or self.min_new_tokens < 0:
            raise bad("min_new_tokens", "must be an integer >= 0")
        if not isinstance(self.num_beams, int) or self.num_beams < 1:
            raise bad("num_beams", "must be an integer >= 1")
        if self.early_stopping not in _EARLY_STOPPING:
            raise bad("early_stopping", "must be True, False or 'never'")
        if not self.temperature > 0:
            raise bad("temperature", "must be > 0 (use do_sample=False for greedy decoding)")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise bad("top_k", "must be an integer >= 0 (0 disables top-k filtering)")
        if not 0 < self.top_p <= 1:
            raise bad("top_p", "must be in (0, 1]")
        if self.penalty_alpha is not None and not 0 <= self.penalty_alpha <= 1:
            raise bad("penalty_alpha", "must be in [0, 1]")
        if not self.repetition_penalty > 0:
            raise bad("repetition_penalty", "must be > 0 (1.0 means no penalty)")
        if not isinstance(self.no_repeat_ngram_size, int) or self.no_repeat_ngram_size < 0:
            raise bad("no_repeat_ngram_size", "must be an integer >= 0")
        if self.do_sample and self.num_beams > 1:
            raise bad("num_beams", "beam sampling is not supported; use do_sample=False or num_beams=1")
        if self.mode == "contrastive" and (self.do_sample or self.num_beams > 1):
            raise bad(
                "penalty_alpha", "contrastive search cannot be combined with do_sample or num_beams > 1"
            )
        if isinstance(self.eos_token_id, bool) or not (
            self.eos_token_id is None
            or isinstance(self.eos_token_id, int)
            or (
                isinstance(self.eos_token_id, (list, tuple))
                and all(isinstance(e, int) for e in self.eos_token_id)
            )
        ):
            raise bad("eos_token_id", "must be an int, a list of ints or None")

    @property
    def mode(self) -> str:
        """'contrastive', 'beam', 'sample' or 'greedy'."""
        if self.penalty_alpha is not None and self.penalty_alpha > 0 and self.top_k > 1:
            return "contrastive"
        if self.num_beams > 1:
            return "beam"
        return "sample" if self.do_sample else "greedy"


def decode(lm, batch: dict[str, torch.Tensor], **gen_kwargs) -> list[list[int]]:
    """Generate token ids for each row of a left-padded batch (`FrozenLM.build_inputs(..., pad_left=True)`).

    Returns one list of new token ids per item, without the EOS token.

    Example:
        >>> from mmgpt2.lm import load_lm
        >>> lm = load_lm("embedded:shapes-gpt2")
        >>> batch = lm.build_inputs(torch.zeros(2, 4, lm.hidden_size), pad_left=True)
        >>> _ = batch.pop("labels")
        >>> ids = decode(lm, batch, num_beams=3, max_new_tokens=12)
        >>> len(ids), all(len(row) <= 12 for row in ids)
        (2, True)
    """
    cfg = GenerationConfig.from_kwargs(**gen_kwargs)
    eos = cfg.eos_token_id if cfg.eos_token_id is not None else lm.eos_token_id
    eos_ids = [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]
    width = batch["attention_mask"].shape[1]
    room = lm.max_positions - width
    if room < 1:
        raise Mmgpt2Error(
            f"the prefix and prompt fill {width} of the LM's {lm.max_positions} positions; nothing left to generate"
        )
    if cfg.max_new_tokens > room:
        warnings.warn(
            f"max_new_tokens={cfg.max_new_tokens} exceeds the {room} positions left in the LM's context; capped",
            stacklevel=2,
        )
        cfg = dataclasses.replace(cfg, max_new_tokens=room)
    if cfg.mode == "beam":
        return _beam_search(lm, batch, cfg, eos_ids)
    if cfg.mode == "contrastive":
        return _contrastive_search(lm, batch, cfg, eos_ids, cfg.penalty_alpha)
    return _greedy_or_sample(lm, batch, cfg, eos_ids)


# --------------------------------------------------------------------------- cached rows


class _Rows:
    """The decoding rows' KV cache, attention mask and next position, kept in step with each other."""

    def __init__(self, lm, batch: dict[str, torch.Tensor], hidden: bool = False):
        from transformers import DynamicCache

        self.model = lm.model
        self.cache = DynamicCache(config=lm.model.config)
        self.mask = batch["attention_mask"]
        self.pos = batch["position_ids"][:, -1:]
        out = self.model(
            inputs_embeds=batch["inputs_embeds"],
            attention_mask=self.mask,
            position_ids=batch["position_ids"],
            cache=self.cache,
            use_cache=True,
            output_hidden_states=hidden,
            logits_to_keep=1,  # the LM head over the whole prompt would cost more than the prompt itself
        )
        self.first_logits = out.logits[:, -1].float()
        self.first_hidden = out.hidden_states[-1] if hidden else None

    def select(self, rows: torch.Tensor) -> None:
        """Keep (and reorder, or repeat) the given rows."""
        self.cache.reorder_cache(rows)
        self.mask, self.pos = self.mask[rows], self.pos[rows]

    def repeat(self, n: int) -> None:
        self.cache.batch_repeat_interleave(n)
        self.mask, self.pos = self.mask.repeat_interleave(n, 0), self.pos.repeat_interleave(n, 0)

    def advance(self, tokens: torch.Tensor, hidden: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Feed one token per row; returns next-token logits (R, V) and, if asked, last hidden states (R, d)."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        self.pos = self.pos + 1
        out = self.model(
            input_ids=tokens[:, None],
            attention_mask=self.mask,
            position_ids=self.pos,
            cache=self.cache,
            use_cache=True,
            output_hidden_states=hidden,
        )
        return out.logits[:, -1].float(), (out.hidden_states[-1][:, -1] if hidden else None)


# --------------------------------------------------------------------------- logits processing


def _process(
    logits: torch.Tensor, generated: torch.Tensor, step: int, cfg: GenerationConfig, eos_ids: list[int]
):
    """Repetition penalty, n-gram blocking and minimum length, as transformers' logits processors do."""
    if cfg.repetition_penalty != 1.0 and generated.shape[1]:
        seen = logits.gather(1, generated)
        seen = torch.where(seen < 0, seen * cfg.repetition_penalty, seen / cfg.repetition_penalty)
        logits = logits.scatter(1, generated, seen)
    n = cfg.no_repeat_ngram_size
    if n and generated.shape[1] + 1 >= n:
        logits = logits.clone()
        for r, seq in enumerate(generated.tolist()):
            head = tuple(seq[len(seq) - n + 1 :]) if n > 1 else ()
            banned = {seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i : i + n - 1]) == head}
            if banned:
                logits[r, list(banned)] = -math.inf
    if step < cfg.min_new_tokens:
        logits = logits.clone()
        # ids outside the vocabulary (e.g. -1 as "never stop") must not index from the end
        logits[:, [e for e in eos_ids if 0 <= e < logits.shape[-1]]] = -math.inf
    return logits


def _warp(logits: torch.Tensor, cfg: GenerationConfig) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) filtering, in transformers' order."""
    logits = logits / cfg.temperature
    if 0 < cfg.top_k < logits.shape[-1]:
        kth = logits.topk(cfg.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if cfg.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum <= 1 - cfg.top_p
        drop[:, -1] = False  # always keep the most likely token
        logits = logits.masked_fill(drop.scatter(1, order, drop), -math.inf)
    return logits


def _generator(cfg: GenerationConfig, device: torch.device) -> torch.Generator | None:
    if cfg.generator is not None:
        return cfg.generator
    if cfg.seed is None:
        return None
    return torch.Generator(device=device).manual_seed(cfg.seed)


# --------------------------------------------------------------------------- greedy / sampling


def _greedy_or_sample(lm, batch: dict, cfg: GenerationConfig, eos_ids: list[int]) -> list[list[int]]:
    rows = _Rows(lm, batch)
    logits = rows.first_logits
    dev = logits.device
    eos = torch.tensor(eos_ids, device=dev)
    gen_rng = _generator(cfg, dev) if cfg.do_sample else None
    items = torch.arange(logits.shape[0], device=dev)  # which batch item each row decodes
    generated = torch.empty(logits.shape[0], 0, dtype=torch.long, device=dev)
    results: list[list[int]] = [[] for _ in range(logits.shape[0])]
    for step in range(cfg.max_new_tokens):
        scores = _process(logits, generated, step, cfg, eos_ids)
        if cfg.do_sample:
            probs = _warp(scores, cfg).softmax(-1)
            nxt = torch.multinomial(probs, 1, generator=gen_rng)[:, 0]
        else:
            nxt = scores.argmax(-1)
        finished = torch.isin(nxt, eos)
        generated = torch.cat([generated, nxt[:, None]], dim=1)
        if step == cfg.max_new_tokens - 1:
            break
        if finished.any():
            for r in finished.nonzero()[:, 0].tolist():
                results[items[r]] = generated[r, :-1].tolist()
            keep = (~finished).nonzero()[:, 0]
            if keep.numel() == 0:
                return results
            rows.select(keep)  # finished rows leave the cache: no compute is spent on them
            items, generated, nxt = items[keep], generated[keep], nxt[keep]
        logits, _ = rows.advance(nxt)
    for r, seq in enumerate(generated.tolist()):
        results[items[r]] = seq[:-1] if seq and seq[-1] in eos_ids else seq
    return results


# --------------------------------------------------------------------------- beam search


def _beam_search(lm, batch: dict, cfg: GenerationConfig, eos_ids: list[int]) -> list[list[int]]:
    """Beam search over B * num_beams cached rows; finished hypotheses scored sum_logprobs / len**length_penalty.

    Follows transformers: the top ``max(2, 1 + n_eos) * num_beams`` candidates per item are scanned;
    EOS candidates ranked within the first ``num_beams`` become finished hypotheses (length counts
    the EOS), the best ``num_beams`` others continue. An item stops when it holds ``num_beams``
    hypotheses and, per `early_stopping`, no running beam can beat the worst of them.
    """
    nb, lp = cfg.num_beams, cfg.length_penalty
    rows = _Rows(lm, batch)
    b = rows.first_logits.shape[0]
    dev = rows.first_logits.device
    rows.repeat(nb)  # prefill once per item, then share it across its beams
    logits = rows.first_logits.repeat_interleave(nb, 0)
    vocab = logits.shape[-1]
    eos_set = set(eos_ids)
    n_cand = max(2, 1 + len(eos_set)) * nb
    # Only beam 0 of each item is live at first, so the first step picks nb distinct tokens.
    beam_scores = torch.full((b, nb), -math.inf, device=dev)
    beam_scores[:, 0] = 0.0
    generated = torch.empty(b * nb, 0, dtype=torch.long, device=dev)
    items = list(range(b))  # active items, in row-block order
    hyps: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    for step in range(cfg.max_new_tokens):
        cur_len = step + 1  # generated tokens after this step, the new one included
        logp = _process(logits, generated, step, cfg, eos_ids).log_softmax(-1)
        cand = (beam_scores.view(-1, 1) + logp).view(len(items), nb * vocab)
        top_s, top_i = cand.topk(n_cand, dim=1)
        top_s, src, tok = top_s.tolist(), (top_i // vocab).tolist(), (top_i % vocab).tolist()
        gen_list = generated.tolist()
        last = step == cfg.max_new_tokens - 1
        keep_rows, keep_tok, keep_scores, still = [], [], [], []
        for a, item in enumerate(items):
            picked: list[tuple[int, int, float]] = []
            for rank in range(n_cand):
                s, beam, t = top_s[a][rank], src[a][rank], tok[a][rank]
                if s == -math.inf:
                    break
                if t in eos_set:
                    if rank < nb:
                        _add_hyp(hyps[item], nb, s / cur_len**lp, gen_list[a * nb + beam])
                    continue
                picked.append((a * nb + beam, t, s))
                if len(picked) == nb:
                    break
            if last or not picked:
                for row, t, s in picked:  # max length reached: running beams become hypotheses
                    _add_hyp(hyps[item], nb, s / cur_len**lp, gen_list[row] + [t])
                continue
            if _beam_item_done(hyps[item], nb, picked[0][2], cur_len, cfg):
                continue
            while len(picked) < nb:  # only when eos ids outnumber the spare candidates
                picked.append((picked[0][0], picked[0][1], -math.inf))
            still.append(item)
            for row, t, s in picked:
                keep_rows.append(row)
                keep_tok.append(t)
                keep_scores.append(s)
        if not still:
            break
        idx = torch.tensor(keep_rows, device=dev)
        nxt = torch.tensor(keep_tok, device=dev)
        rows.select(idx)  # reorder the cache to the surviving beams and drop finished items
        generated = torch.cat([generated[idx], nxt[:, None]], dim=1)
        beam_scores = torch.tensor(keep_scores, device=dev).view(len(still), nb)
        items = still
        logits, _ = rows.advance(nxt)
    return [max(h)[1] if h else [] for h in hyps]


def _add_hyp(hyps: list[tuple[float, list[int]]], nb: int, score: float, tokens: list[int]) -> None:
    hyps.append((score, tokens))
    if len(hyps) > nb:
        hyps.remove(min(hyps, key=lambda h: h[0]))


def _beam_item_done(hyps: list, nb: int, best_running: float, cur_len: int, cfg: GenerationConfig) -> bool:
    """transformers' stopping rule for one item (see `_check_early_stop_heuristic`)."""
    if len(hyps) < nb:
        return False
    if cfg.early_stopping is True:
        return True
    length = cfg.max_new_tokens if cfg.early_stopping == "never" and cfg.length_penalty > 0 else cur_len
    worst = min(h[0] for h in hyps)
    return best_running / length**cfg.length_penalty <= worst


# --------------------------------------------------------------------------- contrastive search


def _contrastive_search(
    lm, batch: dict, cfg: GenerationConfig, eos_ids: list[int], alpha: float
) -> list[list[int]]:
    """Contrastive search (Su et al. 2022), cached: each step runs the top-k candidates as B*k one-token rows.

    score(v) = (1 - alpha) * p(v) - alpha * max_j cos(h_v, h_j), with h the LM's last hidden states
    over the context (prefix, prompt and generated tokens; padding excluded).
    """
    rows = _Rows(lm, batch, hidden=True)
    logits = rows.first_logits
    k = min(cfg.top_k, logits.shape[-1])
    dev = logits.device
    ctx = F.normalize(rows.first_hidden.float(), dim=-1)  # (R, T, d)
    ctx_valid = rows.mask.bool()
    items = torch.arange(logits.shape[0], device=dev)
    generated = torch.empty(logits.shape[0], 0, dtype=torch.long, device=dev)
    results: list[list[int]] = [[] for _ in range(logits.shape[0])]
    for step in range(cfg.max_new_tokens):
        n = logits.shape[0]
        probs = _process(logits, generated, step, cfg, eos_ids).softmax(-1)
        top_p, top_ids = probs.topk(k, dim=-1)  # (R, k)
        rows.repeat(k)
        cand_logits, cand_h = rows.advance(top_ids.reshape(-1), hidden=True)
        cand_h = F.normalize(cand_h.float(), dim=-1).view(n, k, -1)
        sim = torch.einsum("rkd,rtd->rkt", cand_h, ctx).masked_fill(~ctx_valid[:, None, :], -math.inf)
        score = (1 - alpha) * top_p - alpha * sim.max(-1).values
        best = score.argmax(-1)
        arange = torch.arange(n, device=dev)
        nxt = top_ids[arange, best]
        generated = torch.cat([generated, nxt[:, None]], dim=1)
        if step == cfg.max_new_tokens - 1:
            break
        keep = (~torch.isin(nxt, torch.tensor(eos_ids, device=dev))).nonzero()[:, 0]
        for r in sorted(set(range(n)) - set(keep.tolist())):
            results[items[r]] = generated[r, :-1].tolist()
        if keep.numel() == 0:
            return results
        chosen = (arange * k + best)[keep]
        # The chosen candidate's forward already extended the cache: keep its row, drop the others.
        rows.select(chosen)
        logits = cand_logits[chosen]
        ctx = torch.cat([ctx[keep], cand_h[arange, best][keep, None]], dim=1)
        ctx_valid = torch.cat([ctx_valid[keep], ctx_valid.new_ones(keep.numel(), 1)], dim=1)
        items, generated = items[keep], generated[keep]
    for r, seq in enumerate(generated.tolist()):
        results[items[r]] = seq[:-1] if seq and seq[-1] in eos_ids else seq
    return results
