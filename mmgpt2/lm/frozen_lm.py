"""`FrozenLM`: a Hugging Face GPT-2-family causal LM that takes prefix embeddings and never trains.

The heart of the library is one line in `build_inputs`:
``inputs_embeds = cat([prefix_embeds, wte(prompt_ids), wte(target_ids)], dim=1)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from mmgpt2.errors import Mmgpt2Error

IGNORE_INDEX = -100


class FrozenLM(nn.Module):
    """A frozen causal LM (GPT-2 family) driven by `inputs_embeds`.

    Example:
        >>> lm = load_lm("embedded:shapes-gpt2")
        >>> prefix = torch.randn(2, 10, lm.hidden_size, requires_grad=True)
        >>> loss = lm.loss(prefix, ["a red circle", "a blue square"])  # grads reach `prefix` only
        >>> loss.shape, loss.requires_grad
        (torch.Size([]), True)
        >>> len(lm.generate(prefix.detach(), max_new_tokens=8))
        2
    """

    def __init__(self, model: nn.Module, tokenizer, spec: str | None = None):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec or getattr(model.config, "_name_or_path", "custom")
        model.requires_grad_(False)
        model.eval()
        cfg = model.config
        self.hidden_size: int = int(getattr(cfg, "n_embd", None) or cfg.hidden_size)
        self.max_positions: int = int(getattr(cfg, "n_positions", None) or cfg.max_position_embeddings)
        eos = getattr(tokenizer, "eos_token_id", None) if tokenizer is not None else None
        self.eos_token_id: int = int(eos if eos is not None else cfg.eos_token_id)
        pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
        # GPT-2 has no pad token; padded positions are masked out, so any id works, EOS is customary.
        self.pad_token_id: int = int(pad if pad is not None else self.eos_token_id)

    # Frozen on purpose: `captioner.train()` must not switch GPT-2's dropout on.
    def train(self, mode: bool = True) -> FrozenLM:  # noqa: ARG002
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    def weights_fingerprint(self) -> str:
        """A short hash of the weights (`mmgpt2.fingerprint.weights_fingerprint`)."""
        from mmgpt2.fingerprint import weights_fingerprint

        return weights_fingerprint(self.model)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> word embeddings (B, T, d)."""
        return self.model.get_input_embeddings()(ids)

    def tokenize(self, texts: Sequence[str], add_eos: bool = False) -> list[list[int]]:
        """Token ids of each text, without padding; `add_eos` appends the EOS id."""
        ids = [self.tokenizer.encode(t, add_special_tokens=False) if t else [] for t in texts]
        return [x + [self.eos_token_id] for x in ids] if add_eos else ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    def _fit_to_context(
        self, prefix_len: int, prompt: list[int], target: list[int]
    ) -> tuple[list[int], list[int]]:
        room = self.max_positions - prefix_len
        if len(prompt) + len(target) <= room:
            return prompt, target
        warnings.warn(
            f"prefix ({prefix_len}) + prompt ({len(prompt)}) + caption ({len(target)}) tokens exceed the LM's "
            f"context of {self.max_positions}; the caption is truncated",
            stacklevel=3,
        )
        prompt = prompt[-max(room - 1, 0) :] if len(prompt) >= room else prompt
        target = target[: room - len(prompt)]
        if target and target[-1] != self.eos_token_id:
            target[-1] = self.eos_token_id  # truncated captions still teach the model to stop
        return prompt, target

    def build_inputs(
        self,
        prefix_embeds: torch.Tensor,
        prompt_ids: Sequence[Sequence[int]] | None = None,
        target_ids: Sequence[Sequence[int]] | None = None,
        pad_left: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Concatenate prefix, prompt and target embeddings per item, padded into one batch.

        Returns ``inputs_embeds``, ``attention_mask``, ``position_ids`` and ``labels`` (-100 on
        prefix, prompt and padding, so only target tokens, EOS included, carry loss). Right padding
        for training, left padding (`pad_left`) for generation so every item ends at the same column.
        """
        b, k, _ = prefix_embeds.shape
        prompts = [list(p) for p in prompt_ids] if prompt_ids is not None else [[] for _ in range(b)]
        targets = [list(t) for t in target_ids] if target_ids is not None else [[] for _ in range(b)]
        pairs = [self._fit_to_context(k, p, t) for p, t in zip(prompts, targets)]
        width = k + max(len(p) + len(t) for p, t in pairs)
        dev, dtype = prefix_embeds.device, prefix_embeds.dtype
        inputs = prefix_embeds.new_zeros(b, width, prefix_embeds.shape[-1])
        labels = torch.full((b, width), IGNORE_INDEX, dtype=torch.long, device=dev)
        mask = torch.zeros((b, width), dtype=torch.long, device=dev)
        for i, (p, t) in enumerate(pairs):
            ids = torch.tensor(p + t, dtype=torch.long, device=dev)
            row = torch.cat([prefix_embeds[i], self.embed(ids).to(dtype)])
            n = row.shape[0]
            start = width - n if pad_left else 0
            inputs[i, start : start + n] = row
            mask[i, start : start + n] = 1
            if t:
                labels[i, start + k + len(p) : start + n] = ids[len(p) :]
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        return {
            "inputs_embeds": inputs,
            "attention_mask": mask,
            "position_ids": position_ids,
            "labels": labels,
        }

    def forward(self, **inputs) -> torch.Tensor:
        """Logits (B, T, V) for prepared inputs (see `build_inputs`)."""
        inputs.pop("labels", None)
        return self.model(**inputs).logits

    def loss(
        self,
        prefix_embeds: torch.Tensor,
        targets: Sequence[str] | Sequence[Sequence[int]],
        prompts: Sequence[str] | Sequence[Sequence[int]] | None = None,
    ) -> torch.Tensor:
        """Mean next-token NLL of `targets` (each followed by EOS) after prefix and prompt."""
        for i, t in enumerate(targets):
            if isinstance(t, str) and not t.strip():
                raise Mmgpt2Error(f"caption {i} is empty; every training caption needs at least one word")
        target_ids = self.tokenize(targets, add_eos=True) if isinstance(targets[0], str) else targets
        prompt_ids = (
            self.tokenize(prompts) if prompts is not None and isinstance(prompts[0], str) else prompts
        )
        batch = self.build_inputs(prefix_embeds, prompt_ids, target_ids)
        next_labels = batch.pop("labels")[:, 1:]
        hidden = self.model.base_model(**batch).last_hidden_state[:, :-1]
        # The LM head runs only where a label is: prefix, prompt and padding positions need no logits.
        keep = next_labels != IGNORE_INDEX
        logits = self.model.get_output_embeddings()(hidden[keep])
        return nn.functional.cross_entropy(logits.float(), next_labels[keep])

    @torch.no_grad()
    def generate(
        self,
        prefix_embeds: torch.Tensor,
        prompt: str | Sequence[str] | None = None,
        **gen_kwargs,
    ) -> list[str]:
        """Continue each prefix (and optional prompt) into text; see `mmgpt2.lm.decoding.GenerationConfig`.

        Accepts transformers' names: `max_new_tokens`, `num_beams`, `length_penalty`, `do_sample`,
        `top_p`, `top_k`, `temperature`, `penalty_alpha`, `eos_token_id`.
        """
        from mmgpt2.lm.decoding import decode

        b = prefix_embeds.shape[0]
        prompts = [prompt] * b if isinstance(prompt, str) or prompt is None else list(prompt)
        prompt_ids = self.tokenize([p or "" for p in prompts])
        batch = self.build_inputs(prefix_embeds.to(self.dtype), prompt_ids, pad_left=True)
        batch.pop("labels")
        ids = decode(self, batch, **gen_kwargs)
        return [self.decode(x) for x in ids]


def load_lm(spec: str, device: str | None = None) -> FrozenLM:
    """Load a frozen LM from a spec.

    ``gpt2`` / ``hf:gpt2-medium`` (Hub id or local folder, downloads weights),
    ``embedded:shapes-gpt2`` (an embedded tiny model), ``random:gpt2`` / ``random:gpt2-medium`` (the
    124M / 355M architecture with random weights and the embedded tokenizer; for shape and speed tests).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kind, sep, rest = spec.partition(":")
    if not sep:
        kind, rest = "hf", spec
    if kind == "hf":
        model = AutoModelForCausalLM.from_pretrained(rest)
        tokenizer = AutoTokenizer.from_pretrained(rest)
    elif kind == "embedded":
        from mmgpt2.paths import embedded_model_dir

        folder = embedded_model_dir(rest)
        # Embedded weights are stored in fp16 to keep assets/ small; compute in fp32 on CPU.
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    elif kind == "random":
        from transformers import GPT2Config, GPT2LMHeadModel

        from mmgpt2.lm.tokenizer import fallback_tokenizer

        # GPT-2 sizes (Radford et al. 2019), for shape and speed tests at the real scale
        sizes = {"gpt2": {}, "gpt2-124m": {}, "gpt2-medium": {"n_embd": 1024, "n_layer": 24, "n_head": 16}}
        if rest not in sizes:
            raise Mmgpt2Error(f"random:{rest}: offered with random weights: {', '.join(sizes)}")
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(**sizes[rest]))
        tokenizer = fallback_tokenizer()
    else:
        raise Mmgpt2Error(f"unknown LM spec kind {kind!r} in {spec!r} (use hf:, embedded: or random:)")
    lm = FrozenLM(model, tokenizer, spec=spec)
    return lm.to(device) if device else lm
