"""ZeroTA (Jo et al. 2023): zero-shot dense video captioning by test-time optimisation.

Nothing is trained on videos. For one video, K events are found and captioned at once by
optimising, against a frozen CLIP and a frozen GPT-2:

- K soft moment masks (`moments.SoftMoments`); event k's *moment embedding* is the mask-weighted
  mean of the normalised frame features;
- the prefix context of event k: ``[soft prompt | projection(moment_k) | BOS + hard prompt]``. The
  soft prompt is shared by the events and starts as the embeddings of a seed text; the projection
  is a linear map from CLIP space to GPT-2's input embeddings, initialised *without any caption
  data* by ridge regression from the CLIP text embeddings of the LM's own vocabulary words to those
  words' input embeddings (so a moment that looks like "red" starts near the embedding of "red").

Losses (all K events in one batch per step):

- **vision**. GPT-2 writes candidate captions from each event's context (no gradient: text is
  discrete): one CLIP-guided caption (GPT-2 proposes its top-k next tokens, CLIP picks among them
  by the best of a few whole captions GPT-2 finishes after each, see `ZeroTA.guided_decode`) and a few
  sampled ones; CLIP embeds them. Two differentiable terms
  use these fixed texts:
  (a) *matching*: the moment embeddings against the events' own captions (for each event, the one
  of its candidates CLIP finds closest), as a K-way contrastive loss (moment k should match
  caption k better than the other events' captions). Its
  gradient flows through the moment embedding into the mask centres and widths: a mask grows over
  frames that look like its caption and retreats from frames that look like another event's.
  (b) *distillation*: over the pooled candidates, GPT-2's (length-normalised) log-likelihood given
  context k is pulled towards CLIP's preference ``softmax(cos(moment_k, text) / T)`` (a
  cross-entropy). Its gradient reaches the soft prompt and the projection (and, through the
  projected moment, the masks again), so the next round of sampling favours what CLIP sees.
  We chose candidate-level scoring over a "soft text embedding" (expected token embeddings fed to
  CLIP's text tower) because CLIP and GPT-2 have different vocabularies (GPT-2-medium + ViT-L/14
  and the embedded shapes models alike), and candidates keep CLIP on real text.
- **language**: KL from the unprefixed LM's next-token distributions to the prefixed ones along
  the event's caption, so steering the prefix cannot make the text disfluent.
- **temporal IoU**: mean pairwise soft tIoU of the masks, to keep events distinct.
- **coverage** (our addition, weight configurable, 0 disables): the matching term alone rewards a
  mask for shrinking onto its purest frames; a small penalty on frames no event covers keeps the
  masks spread over the video.

After the last step each event's caption is the best of all GPT-2's candidates for it (over every
round) by CLIP similarity to its final moment plus a small fluency bonus (mean log-prob under the
unprefixed LM). That caption is then refined word by word (`ZeroTA.refine`: GPT-2
proposes, CLIP judges the whole edited caption) and competes once more with the rest. The captions
are always written by GPT-2, never retrieved from a list. Events are ranked by that similarity, adjacent events with the same caption are merged,
near-duplicates dropped by temporal NMS, and segments turned into seconds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from mmgpt2.apps.video.moments import (
    SoftMoments,
    coverage_gap,
    moment_embeddings,
    pairwise_soft_tiou,
    segment_tiou,
    sharpness_at,
)
from mmgpt2.encoders import VisionEncoder
from mmgpt2.errors import Mmgpt2Error
from mmgpt2.lm import IGNORE_INDEX, FrozenLM


@dataclass
class ZeroTAConfig:
    """Settings of the test-time optimisation (defaults tuned on the embedded shapes models).

    Example:
        >>> ZeroTAConfig(events=4, steps=40, hard_prompt="A video of")
    """

    events: int = 3
    steps: int = 16
    # context: [soft prompt | projected moment | BOS + hard prompt]
    soft_prompt_init: str = "a picture of"
    moment_tokens: int = 2
    hard_prompt: str = ""
    bos: bool = True
    # Soft prompt and moment tokens all at position 0 (with BOS), so the caption keeps the positions
    # GPT-2 saw in pretraining; the tiny embedded GPT-2 only ever saw text right after a BOS at 0.
    shared_prefix_position: bool = True
    prompt_in_caption: bool = True
    # candidates
    samples_per_event: int = 3
    guided_top_k: int = 8
    guided_clip_weight: float = 0.5
    # CLIP judges each token GPT-2 proposes by the caption GPT-2 finishes greedily after it
    lookahead: bool = True
    # endings per proposal: the greedy one plus (n - 1) sampled ones; the best-matching counts
    lookahead_rollouts: int = 3
    # after the final choice, passes of word-by-word edits: at each position GPT-2 proposes its
    # top-k tokens and CLIP judges the whole edited caption (0 disables)
    refine_passes: int = 2
    refine_clip_weight: float = 2.0
    regenerate_every: int = 2
    max_new_tokens: int = 14
    sample_top_k: int = 20
    sample_temperature: float = 1.0
    final_samples: int = 12
    # final choice among an event's candidates: CLIP cosine + this x mean token log-prob under the
    # unprefixed LM (prefers fluent text when CLIP hesitates between close candidates)
    fluency_weight: float = 0.05
    # optimisation
    lr_mask: float = 0.08
    lr_prefix: float = 0.02
    sharpness: tuple[float, float] = (15.0, 120.0)
    clip_temperature: float = 0.02
    w_match: float = 1.0
    w_distill: float = 1.0
    w_language: float = 1.0
    w_iou: float = 2.0
    w_coverage: float = 1.0
    # projection initialisation
    projection_vocab: int = 4000
    projection_ridge: float = 0.05
    # post-processing
    nms_tiou: float = 0.6
    merge_same_caption: bool = True
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.sharpness, list):
            self.sharpness = tuple(self.sharpness)
        if self.events < 1 or self.steps < 0 or self.samples_per_event < 0 or self.final_samples < 0:
            raise Mmgpt2Error(f"invalid ZeroTA settings: events={self.events}, steps={self.steps}")
        if self.regenerate_every < 1 or self.max_new_tokens < 1 or self.moment_tokens < 1:
            raise Mmgpt2Error("regenerate_every, max_new_tokens and moment_tokens must be >= 1")

    @classmethod
    def from_dict(cls, data: dict) -> ZeroTAConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise Mmgpt2Error(f"unknown ZeroTA setting(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


@dataclass
class Event:
    """One captioned event: `start`/`end` in seconds and the caption's CLIP `score` (cosine)."""

    sentence: str
    start: float
    end: float
    score: float

    def to_activitynet(self) -> dict:
        return {
            "sentence": self.sentence,
            "timestamp": [round(self.start, 3), round(self.end, 3)],
            "score": self.score,
        }


@dataclass
class ZeroTATrace:
    """What happened during optimisation (for tests, benchmarks and curiosity)."""

    losses: list[dict[str, float]] = field(default_factory=list)
    initial_segments: list[list[float]] = field(default_factory=list)
    final_segments: list[list[float]] = field(default_factory=list)


# --- the linear projection's initialisation -------------------------------------------------------
_PROJECTION_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


@torch.no_grad()
def vocabulary_projection(
    encoder: VisionEncoder, lm: FrozenLM, vocab: int = 4000, ridge: float = 0.05
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W, text_mean, emb_mean): ridge map from CLIP text space to GPT-2 input embeddings.

    Fitted on the LM's first `vocab` word tokens (BPE ids come roughly in frequency order): each
    word's normalised CLIP text embedding, centred, is regressed onto its GPT-2 input embedding.
    ``proj(x) = (normalize(x) - text_mean) @ W + emb_mean``. Cached per (encoder, LM) pair.
    """
    key = (encoder.spec, lm.spec, vocab, ridge)
    if key in _PROJECTION_CACHE:
        return _PROJECTION_CACHE[key]
    ids, words = [], []
    size = len(lm.tokenizer)
    for i in range(size):
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
    w = torch.linalg.solve(gram, tc.T @ ec)
    _PROJECTION_CACHE[key] = (w, t_mean, e_mean)
    return w, t_mean, e_mean


class ZeroTAPrefix(nn.Module):
    """Builds each event's context ``[soft prompt | projection(moment) | BOS + hard prompt]``."""

    def __init__(self, encoder: VisionEncoder, lm: FrozenLM, config: ZeroTAConfig):
        super().__init__()
        d = lm.hidden_size
        seed_ids = lm.tokenize([config.soft_prompt_init])[0] or [lm.eos_token_id]
        self.soft = nn.Parameter(lm.embed(torch.tensor(seed_ids, device=lm.device)).detach().float().clone())
        w, t_mean, e_mean = vocabulary_projection(
            encoder, lm, config.projection_vocab, config.projection_ridge
        )
        m = config.moment_tokens
        self.proj = nn.Linear(w.shape[0], m * d).to(lm.device)
        with torch.no_grad():
            # Every moment token starts as the ridge map; a little noise lets them specialise.
            g = torch.Generator().manual_seed(config.seed)
            noise = torch.randn(m * d, w.shape[0], generator=g).to(w.device) * 0.01 * w.std()
            self.proj.weight.copy_(w.T.repeat(m, 1) + noise)
            self.proj.bias.copy_((e_mean - t_mean @ w).repeat(m))
        self.m, self.d = m, d
        hard = ([lm.eos_token_id] if config.bos else []) + lm.tokenize([config.hard_prompt])[0]
        self.register_buffer("hard", lm.embed(torch.tensor(hard, dtype=torch.long, device=lm.device)).float())

    def forward(self, moments: torch.Tensor) -> torch.Tensor:
        k = moments.shape[0]
        projected = self.proj(F.normalize(moments, dim=-1)).view(k, self.m, self.d)
        return torch.cat([self.soft.expand(k, -1, -1), projected, self.hard.expand(k, -1, -1)], dim=1)


# --- scoring candidates with the LM --------------------------------------------------------------
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
    logits = lm(**batch)[:, :-1].float()
    target = labels[:, 1:]
    valid = target != IGNORE_INDEX
    nll = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
    nll = nll.view_as(target) * valid
    scores = -nll.sum(1) / valid.sum(1).clamp(min=1)
    row_of = torch.arange(len(rows), device=valid.device)[:, None].expand_as(valid)[valid]
    return scores, logits[valid], row_of


@torch.no_grad()
def unprefixed_fluency(lm: FrozenLM, hard_ids: list[int], texts: list[str]) -> torch.Tensor:
    """Mean token log-prob of each text (and its EOS) after only BOS + hard prompt."""
    ids = lm.tokenize(texts, add_eos=True)
    empty = torch.zeros(len(ids), 0, lm.hidden_size, device=lm.device, dtype=lm.dtype)
    batch = lm.build_inputs(empty, [hard_ids] * len(ids), ids)
    labels = batch.pop("labels")[:, 1:]
    logits = lm(**batch)[:, :-1].float()
    nll = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
    valid = labels != IGNORE_INDEX
    return -(nll.view_as(labels) * valid).sum(1) / valid.sum(1).clamp(min=1)


@torch.no_grad()
def unprefixed_logits(lm: FrozenLM, hard_ids: list[int], ids: list[list[int]]) -> torch.Tensor:
    """Next-token logits along each text after only BOS + hard prompt (the fluency reference)."""
    empty = torch.zeros(len(ids), 0, lm.hidden_size, device=lm.device, dtype=lm.dtype)
    batch = lm.build_inputs(empty, [hard_ids] * len(ids), ids)
    labels = batch.pop("labels")
    logits = lm(**batch)[:, :-1].float()
    return logits[labels[:, 1:] != IGNORE_INDEX]


# --- the optimiser ----------------------------------------------------------------------------------
class ZeroTA:
    """Runs the test-time optimisation for one video's frame features.

    Example:
        >>> zt = ZeroTA(load_encoder("embedded:shapes-clip"), load_lm("embedded:shapes-gpt2"))
        >>> events = zt.run(features, times, duration=30.0)     # [Event(sentence, start, end, score), ...]
    """

    def __init__(self, encoder: VisionEncoder, lm: FrozenLM, config: ZeroTAConfig | None = None):
        self.encoder, self.lm = encoder, lm
        self.config = config or ZeroTAConfig()

    @property
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

    def _caption_text(self, continuation: str) -> str:
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
                rollouts = []
                for r in range(max(1, cfg.lookahead_rollouts)):
                    ended = list(proposals)
                    if growing:
                        finished = self._complete(
                            contexts[[rows[j] for j in growing]],
                            [proposals[j] for j in growing],
                            cfg.max_new_tokens - step - 1,
                            sample=r > 0,
                        )
                        for j, f in zip(growing, finished, strict=True):
                            ended[j] = f
                    rollouts.append(ended)
            texts = [
                self._caption_text(lm.decode(x)) or cfg.soft_prompt_init for ended in rollouts for x in ended
            ]
            emb = F.normalize(self.encoder.encode_text(texts).float().to(lm.device), dim=-1)
            emb = emb.view(len(rollouts), len(live), -1, moments.shape[-1])
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
                    sims = self._text_embeddings([lm.decode(e) for e in edits]) @ moments[i]
                    prior = logp[i, row, options]
                    best = int(self._steer(prior, sims, cfg.refine_clip_weight).argmax())
                    if edits[best] != tokens:
                        tokens, changed = edits[best], True
                ids[i] = tokens
            if not changed:
                break
        return [lm.decode(x) for x in ids]

    @torch.no_grad()
    def _candidates(
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

    def _text_embeddings(self, texts: list[str]) -> torch.Tensor:
        emb = self.encoder.encode_text([self._caption_text(t) for t in texts]).float().to(self.lm.device)
        return F.normalize(emb, dim=-1)

    def run(
        self, features: torch.Tensor, times: torch.Tensor, duration: float, trace: ZeroTATrace | None = None
    ) -> list[Event]:
        """Events of one video from its frame `features` (T, D), frame `times` (T,) s and `duration` s."""
        cfg, lm = self.config, self.lm
        if features.ndim != 2 or features.shape[0] == 0 or features.shape[0] != times.shape[0]:
            raise Mmgpt2Error(
                f"need (T, D) frame features with T = len(times) >= 1, got {tuple(features.shape)}"
            )
        if features.shape[1] != self.encoder.embed_dim:
            raise Mmgpt2Error(
                f"frame features are {features.shape[1]}-d but encoder {self.encoder.spec!r} gives "
                f"{self.encoder.embed_dim}-d; they were extracted with another encoder"
            )
        duration = float(duration) if duration > 0 else float(times.max()) + 1e-3
        torch.manual_seed(cfg.seed)
        gen = torch.Generator(device=lm.device).manual_seed(cfg.seed)
        dev = lm.device
        frames = F.normalize(features.float().to(dev), dim=-1)
        tn = (times.float().to(dev) / duration).clamp(0, 1)
        moments = SoftMoments(cfg.events).to(dev)
        prefix = ZeroTAPrefix(self.encoder, lm, cfg)
        hard_ids = ([lm.eos_token_id] if cfg.bos else []) + lm.tokenize([cfg.hard_prompt])[0]
        opt = torch.optim.Adam(
            [
                {"params": moments.parameters(), "lr": cfg.lr_mask},
                {"params": prefix.parameters(), "lr": cfg.lr_prefix},
            ]
        )
        if trace is not None:
            trace.initial_segments = (moments.segments() * duration).tolist()
        k, tau = cfg.events, cfg.clip_temperature
        archive: list[dict[str, None]] = [{} for _ in range(k)]  # every caption GPT-2 proposed, per event
        for step in range(cfg.steps):
            masks = moments(tn, sharpness_at(step, cfg.steps, *cfg.sharpness))
            emb = moment_embeddings(masks, frames)
            contexts = prefix(emb)
            if step % cfg.regenerate_every == 0:
                cands = self._candidates(contexts.detach(), cfg.samples_per_event, gen, emb.detach())
                for i, c in enumerate(cands):
                    archive[i].update(dict.fromkeys(c))
                pool = list(dict.fromkeys(t for c in cands for t in c))
                pool_ids = lm.tokenize(pool, add_eos=True)
                text_emb = self._text_embeddings(pool)
                # Each event's own caption: the one of *its* candidates CLIP finds closest to its moment.
                with torch.no_grad():
                    own_sims = F.normalize(emb, dim=-1) @ text_emb.T
                own = [
                    max((pool.index(t) for t in c), key=lambda j, i=i: float(own_sims[i, j]))
                    for i, c in enumerate(cands)
                ]
                reference = (
                    unprefixed_logits(lm, hard_ids, [pool_ids[j] for j in own]) if cfg.w_language else None
                )
            sims = F.normalize(emb, dim=-1) @ text_emb.T  # (K, C), differentiable w.r.t. the masks
            parts: dict[str, torch.Tensor] = {}
            # (a) matching: moment k against the events' own captions (distinct ones only).
            cols = list(dict.fromkeys(own))
            if len(cols) > 1:
                target = torch.tensor([cols.index(j) for j in own], device=dev)
                parts["match"] = F.cross_entropy(sims[:, cols] / tau, target)
            # (b) distillation + language, from one LM pass over every (event, candidate) pair.
            rows = [(i, j) for i in range(k) for j in range(len(pool))]
            scores, logits, row_of = sequence_logprobs(lm, contexts, pool_ids, rows, self.n_prefix)
            lm_logp = F.log_softmax(scores.view(k, len(pool)), dim=-1)
            clip_pref = F.softmax(sims.detach() / tau, dim=-1)
            parts["distill"] = -(clip_pref * lm_logp).sum(-1).mean()
            if reference is not None:
                own_rows = torch.tensor([i * len(pool) + own[i] for i in range(k)], device=dev)
                pick = torch.cat([torch.nonzero(row_of == r).flatten() for r in own_rows])
                ref = F.log_softmax(reference, dim=-1)
                parts["language"] = F.kl_div(
                    F.log_softmax(logits[pick], -1), ref, log_target=True, reduction="batchmean"
                )
            parts["iou"] = pairwise_soft_tiou(masks)
            parts["coverage"] = coverage_gap(masks)
            weights = {
                "match": cfg.w_match,
                "distill": cfg.w_distill,
                "language": cfg.w_language,
                "iou": cfg.w_iou,
                "coverage": cfg.w_coverage,
            }
            loss = sum(weights[n] * v for n, v in parts.items())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if trace is not None:
                trace.losses.append(
                    {n: float(v.detach()) for n, v in parts.items()} | {"total": float(loss.detach())}
                )
        return self._finish(moments, prefix, frames, tn, duration, archive, gen, trace)

    @torch.no_grad()
    def _finish(self, moments, prefix, frames, tn, duration, archive, gen, trace) -> list[Event]:
        cfg = self.config
        masks = moments(tn, cfg.sharpness[1])
        emb = F.normalize(moment_embeddings(masks, frames), dim=-1)
        for i, c in enumerate(self._candidates(prefix(emb), cfg.final_samples, gen, emb)):
            archive[i].update(dict.fromkeys(c))
        segments = (moments.segments() * duration).tolist()
        if trace is not None:
            trace.final_segments = segments
        hard_ids = ([self.lm.eos_token_id] if cfg.bos else []) + self.lm.tokenize([cfg.hard_prompt])[0]

        scored: list[dict[str, tuple[float, float]]] = [
            {} for _ in range(cfg.events)
        ]  # text -> (CLIP, choice score)

        def choose(i: int) -> tuple[str, float]:
            new = [t for t in archive[i] if t not in scored[i]]  # each text is embedded and scored once
            if new:
                sims = emb[i] @ self._text_embeddings(new).T
                fluency = (
                    unprefixed_fluency(self.lm, hard_ids, new)
                    if cfg.fluency_weight
                    else torch.zeros_like(sims)
                )
                total = sims + cfg.fluency_weight * fluency.to(sims.device)
                scored[i].update({t: (float(a), float(b)) for t, a, b in zip(new, sims, total, strict=True)})
            best = max(archive[i], key=lambda t: scored[i][t][1])  # first of equals, like argmax
            return best, scored[i][best][0]

        if cfg.refine_passes:
            # The refined caption joins the candidates; the final choice still decides.
            refined = self.refine(prefix(emb), emb, [choose(i)[0] for i in range(cfg.events)])
            for i, text in enumerate(refined):
                if len(text.split()) >= 2:
                    archive[i].setdefault(text.strip())
        events = []
        for i in range(cfg.events):
            start, end = segments[i]
            if end - start <= 0:
                continue
            text, score = choose(i)
            events.append(Event(self._caption_text(text), start, end, score))
        return postprocess(events, cfg.nms_tiou, cfg.merge_same_caption)


def postprocess(events: list[Event], nms_tiou: float = 0.6, merge_same_caption: bool = True) -> list[Event]:
    """Merge touching/overlapping events with the same caption, drop near-duplicates (temporal NMS),
    and return the rest best-first."""
    events = sorted(events, key=lambda e: e.start)
    if merge_same_caption:
        merged: list[Event] = []
        for e in events:
            last = merged[-1] if merged else None
            if (
                last is not None
                and last.sentence == e.sentence
                and e.start <= last.end + 1e-6 + 0.05 * (e.end - e.start)
            ):
                merged[-1] = Event(e.sentence, last.start, max(last.end, e.end), max(last.score, e.score))
            else:
                merged.append(e)
        events = merged
    kept: list[Event] = []
    for e in sorted(events, key=lambda e: -e.score):
        if all(segment_tiou((e.start, e.end), (k.start, k.end)) <= nms_tiou for k in kept):
            kept.append(e)
    return kept
