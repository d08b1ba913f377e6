"""The ZeroCap-style baseline (Tewel et al. 2022) the guided decoders are compared with: one caption
per image embedding (an image, or the mean of a video segment's frames). Used by the benchmarks.

ZeroCap writes a caption token by token. Before each token it shifts GPT-2's cached keys and
values of the context (`steps_per_token` normalised-gradient steps of size `stepsize`) so that the
next-token distribution moves towards CLIP's softmax over the `top_k` most likely next tokens
(each scored as *text so far + token* against the image), with a fluency KL to the unshifted
distribution (weight `ce_scale`); the shifted and unshifted distributions are then fused
(``p^fusion * p0^(1 - fusion)``) and the best token appended. Defaults are the published ones
(`model/ZeroCLIP.py` of the ZeroCap code); CLIP sees the prompt + text so far + candidate, as in
ZeroCap. Two liberties, both making it cheaper and so every timing comparison against it
conservative: greedy decoding (beam 1 instead of 5), and (`reuse_clip_scores`, on by default) each candidate
text CLIP-embedded once per token rather than at each of its gradient steps (the top-k rarely
changes between them; with the embedded GPT-2's 358-token vocabulary it never does).

Example:
    >>> zerocap_caption(encoder, lm, segment_embedding, ZeroCapSettings(max_tokens=12))  # doctest: +SKIP
    'a picture of a large red circle'
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from mmgpt2.config import Config
from mmgpt2.encoders import VisionEncoder
from mmgpt2.lm import FrozenLM


@dataclass
class ZeroCapSettings(Config):
    """ZeroCap's published decoding settings (plus the prompt it conditions on)."""

    top_k: int = field(default=512, metadata={"min": 1})
    steps_per_token: int = field(default=5, metadata={"min": 0})
    stepsize: float = field(default=0.3, metadata={"min": 0.0})
    grad_norm_factor: float = 0.9
    clip_scale: float = 1.0
    ce_scale: float = 0.2
    fusion: float = field(default=0.99, metadata={"min": 0.0, "max": 1.0})
    clip_temperature: float = field(default=0.01, metadata={"min": 1e-6})
    max_tokens: int = field(default=15, metadata={"min": 1})
    prompt: str = "a picture of"
    # ours: embed each candidate text once per token, not at each of its gradient steps
    reuse_clip_scores: bool = True


def _shifted_cache(lm: FrozenLM, layers: list[tuple[torch.Tensor, torch.Tensor]]):
    from transformers import DynamicCache

    return DynamicCache(layers, config=lm.model.config)


def zerocap_caption(
    encoder: VisionEncoder, lm: FrozenLM, image_emb: torch.Tensor, settings: ZeroCapSettings | None = None
) -> str:
    """A caption of `image_emb` (a CLIP image embedding, e.g. the mean of a segment's frames),
    prompt included, written the ZeroCap way (see the module doc)."""
    s = settings or ZeroCapSettings()
    dev = lm.device
    image = F.normalize(image_emb.float().to(dev), dim=-1)
    context = [lm.eos_token_id] + lm.tokenize([s.prompt])[0]
    written: list[int] = []
    scored: dict[int, torch.Tensor] = {}  # next token -> CLIP similarity of the text it ends

    @torch.no_grad()
    def _score_new(candidates: list[int]) -> list[int]:
        # Steps of one token mostly score the same candidates: each text is embedded once.
        new = [t for t in candidates if t not in scored]
        if new:
            texts = [f"{s.prompt} {lm.decode(written + [t])}".strip() for t in new]
            emb = F.normalize(encoder.encode_text(texts).float().to(dev), dim=-1)
            scored.update(zip(new, emb @ image))
        return candidates

    for _ in range(s.max_tokens):
        scored.clear()
        tokens = torch.tensor([context + written], device=dev)
        with torch.no_grad():
            probs_before = F.softmax(lm.model(input_ids=tokens).logits[0, -1].float(), -1)
        probs = probs_before
        if s.steps_per_token and tokens.shape[1] > 1:
            with torch.no_grad():
                cache = lm.model(input_ids=tokens[:, :-1], use_cache=True).past_key_values
            base = [(layer.keys, layer.values) for layer in cache.layers]
            delta = [(torch.zeros_like(k), torch.zeros_like(v)) for k, v in base]
            for _ in range(s.steps_per_token):
                shift = [
                    (dk.clone().requires_grad_(True), dv.clone().requires_grad_(True)) for dk, dv in delta
                ]
                shifted = _shifted_cache(lm, [(k + dk, v + dv) for (k, v), (dk, dv) in zip(base, shift)])
                logits = lm.model(input_ids=tokens[:, -1:], cache=shifted).logits[0, -1].float()
                probs = F.softmax(logits, -1)
                top = probs.topk(min(s.top_k, probs.shape[-1])).indices
                if not s.reuse_clip_scores:
                    scored.clear()  # as ZeroCap does: CLIP embeds the candidates at every step
                sims = torch.stack([scored[t] for t in _score_new(top.tolist())])
                target = torch.zeros_like(probs).index_put_((top,), F.softmax(sims / s.clip_temperature, -1))
                clip_loss = -(target * probs.clamp_min(1e-12).log()).sum()
                fluency = (probs * (probs.clamp_min(1e-12).log() - probs_before.clamp_min(1e-12).log())).sum()
                (s.clip_scale * clip_loss + s.ce_scale * fluency).backward()
                # ZeroCap's update: a step against each tensor's gradient, divided by its norm^0.9
                with torch.no_grad():
                    delta = [
                        tuple(
                            d - s.stepsize * x.grad / (x.grad.norm() + 1e-15) ** s.grad_norm_factor
                            for d, x in zip(pair, shifted_pair)
                        )
                        for pair, shifted_pair in zip(delta, shift)
                    ]
            with torch.no_grad():
                shifted = _shifted_cache(lm, [(k + dk, v + dv) for (k, v), (dk, dv) in zip(base, delta)])
                probs = F.softmax(lm.model(input_ids=tokens[:, -1:], cache=shifted).logits[0, -1].float(), -1)
        fused = probs.pow(s.fusion) * probs_before.pow(1 - s.fusion)
        token = int(fused.argmax())
        if token == lm.eos_token_id:
            break
        written.append(token)
    return f"{s.prompt} {lm.decode(written)}".strip()
