"""How GPT-2 writes ZeroTA's captions with CLIP steering it: the guided decoding (the library's one
guided decoder, `mmgpt2.lm.guided`, run on event contexts and moments), the word-by-word refiner
and each event's candidate captions.

GPT-2 proposes every word; CLIP only chooses among its proposals (MAGIC-style:
``log p_LM + w * log softmax(CLIP / T)``), so the text stays GPT-2's.
"""

from __future__ import annotations

from functools import cached_property

import torch

from mmgpt2.apps.video.zerota.config import ZeroTAConfig
from mmgpt2.apps.video.zerota.prefix import hard_prompt_ids
from mmgpt2.apps.video.zerota.scoring import share_prefix_position
from mmgpt2.encoders import VisionEncoder
from mmgpt2.lm import FrozenLM
from mmgpt2.lm.guided import GuidedSettings, TextEmbeddings, guided_decode, lm_inputs, refine


class GuidedWriter:
    """Writes, refines and samples captions from event contexts, judged by CLIP against moments.

    Example:
        >>> writer = GuidedWriter(encoder, lm, ZeroTAConfig())  # doctest: +SKIP
        >>> writer.guided_decode(contexts, moments)      # one caption per event  # doctest: +SKIP
    """

    def __init__(self, encoder: VisionEncoder, lm: FrozenLM, config: ZeroTAConfig):
        self.encoder, self.lm, self.config = encoder, lm, config
        # CLIP embedding of every text judged so far: lookahead endings repeat from step to step.
        self._texts = TextEmbeddings(encoder, lm.device, cache=config.text_cache)

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

    def _inputs_of(self, contexts: torch.Tensor):
        """The shared decoder's `make_inputs` over these event contexts."""
        return lambda rows, ids: self._generation_inputs(contexts[list(rows)], ids)

    def _unprefixed_inputs(self, rows, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        """Left-padded LM inputs of BOS + hard prompt, then each of `ids`: no context at all."""
        empty = torch.zeros(len(rows), 0, self.lm.hidden_size, device=self.lm.device, dtype=self.lm.dtype)
        return lm_inputs(self.lm, empty, [self.hard_ids + list(x) for x in ids])

    @cached_property
    def hard_ids(self) -> list[int]:
        """BOS + hard prompt: what GPT-2 reads before a caption when no prefix is given."""
        return hard_prompt_ids(self.lm, self.config)

    def _generate(self, contexts: torch.Tensor, **gen_kwargs) -> list[str]:
        from mmgpt2.lm.decoding import decode

        return [self.lm.decode(x) for x in decode(self.lm, self._generation_inputs(contexts), **gen_kwargs)]

    def caption_text(self, continuation: str) -> str:
        """The caption a user reads: the hard prompt (if configured to show) + GPT-2's continuation."""
        cfg = self.config
        if cfg.prompt_in_caption and cfg.hard_prompt.strip():
            return f"{cfg.hard_prompt.strip()} {continuation}".strip()
        return continuation.strip()

    @torch.no_grad()
    def guided_decode(
        self, contexts: torch.Tensor, moments: torch.Tensor, lookahead: bool | None = None
    ) -> list[str]:
        """One caption per event, written by GPT-2 from its context while CLIP chooses among GPT-2's
        proposals by how well they match the moment (`mmgpt2.lm.guided.guided_decode`).

        With `lookahead` (default: the config's) CLIP judges each proposal by the best of
        `lookahead_rollouts` whole captions GPT-2 finishes after it (the greedy ending and sampled
        ones), not by the unfinished text: the greedy ending alone often stops after one object
        where the moment shows two.
        """
        cfg = self.config
        ids = guided_decode(
            self.lm,
            self._texts,
            self._inputs_of(contexts),
            moments,
            self.guided_settings(cfg.lookahead if lookahead is None else lookahead),
            to_text=lambda text: self.caption_text(text) or cfg.soft_prompt_init,
        )
        return [self.lm.decode(x) for x in ids]

    def guided_settings(self, lookahead: bool) -> GuidedSettings:
        """The shared decoder's settings from ZeroTA's."""
        cfg = self.config
        return GuidedSettings(
            top_k=cfg.guided_top_k,
            clip_weight=cfg.guided_clip_weight,
            min_prob=cfg.guided_min_prob,
            seed=cfg.seed,
            clip_temperature=cfg.clip_temperature,
            lookahead_rollouts=max(1, cfg.lookahead_rollouts) if lookahead else 0,
            shared_rollouts=cfg.shared_rollouts,
            max_new_tokens=cfg.max_new_tokens,
            sample_top_k=cfg.sample_top_k,
            sample_temperature=cfg.sample_temperature,
            refine_passes=cfg.refine_passes,
            refine_pairs=cfg.refine_pairs,
        )

    @torch.no_grad()
    def refine(self, contexts: torch.Tensor, moments: torch.Tensor, texts: list[str]) -> list[str]:
        """Each event's caption improved word by word (`mmgpt2.lm.guided.refine`): at each position
        GPT-2 proposes its top-k tokens, and CLIP judges the whole edited caption against the
        moment with ``w = refine_clip_weight``, GPT-2 by the caption alone (BOS + hard prompt, no
        prefix). `refine_passes` sweeps, each ending with `refine_pairs` two-word edits."""
        cfg, lm = self.config, self.lm
        ids = refine(
            lm,
            self._texts,
            self._inputs_of(contexts),
            moments,
            [lm.tokenize([t])[0] for t in texts],
            self.guided_settings(lookahead=False),
            clip_weight=cfg.refine_clip_weight,
            to_text=self.caption_text,
            prior_inputs=self._unprefixed_inputs,
        )
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
        return self._texts([self.caption_text(t) for t in texts])
