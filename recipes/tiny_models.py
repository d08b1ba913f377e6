"""Trainers for the tiny frozen models every embedded world ships: a BPE tokenizer, a GPT-2, a CLIP.

No pretrained weights can be downloaded here, so each world (shapes, users, chest, ...) trains its
own small frozen parts from its own generated data with these three functions, then the captioners
are trained on top of them. All writers are atomic: a folder appears complete or not at all.

Example:
    >>> tok = train_tokenizer(texts, vocab_size=512, out_dir="build/tok")
    >>> train_tiny_gpt2(texts, "build/tok", "assets/models/shapes-gpt2", steps=300)
    >>> train_tiny_clip(make_batch, "build/tok", "assets/models/shapes-clip", steps=600)
    >>> load_lm("embedded:shapes-gpt2"), load_encoder("embedded:shapes-clip")
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mmgpt2.checkpoint import replace_folder_atomic

EOS = "<|endoftext|>"

#: A batch maker for CLIP training: ``make_batch(rng, batch_size) -> (images, captions)``.
BatchMaker = Callable[[random.Random, int], tuple[list[Image.Image], list[str]]]

#: Default tiny open_clip architecture: ~1.4M parameters, a 64x64 ViT with 16x16 patches (16 tokens).
#: Sized for shared 2-core CPUs (~0.45 CPU-s per batch of 64 on one thread). 8x8 patches (width 96)
#: cost 1.5x as much and learned slower in the same number of steps.
DEFAULT_CLIP_CFG: dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {
        "image_size": 64,
        "patch_size": 16,
        "width": 128,
        "layers": 4,
        "head_width": 32,
        "mlp_ratio": 4.0,
    },
    "text_cfg": {"context_length": 20, "width": 128, "heads": 4, "layers": 2, "mlp_ratio": 4.0},
}
DEFAULT_PREPROCESS_CFG: dict[str, Any] = {
    "size": 64,
    "mode": "RGB",
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
    "fill_color": 0,
}


@contextmanager
def _staging_dir(out_dir: str | os.PathLike):
    """Yield a temporary sibling of `out_dir`; on success it replaces `out_dir` in one rename."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        for path in [tmp, *tmp.rglob("*")]:  # mkdtemp makes 0700 folders: models should read like any file
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
        replace_folder_atomic(tmp, out)  # the library's one kill-safe folder swap
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, leave=False, mininterval=5, disable=os.environ.get("MMGPT2_QUIET") == "1"
    )


def _check_texts(texts: Sequence[str], what: str) -> list[str]:
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError(f"{what}: got no non-empty texts to train on")
    return texts


def _optimizer(model: torch.nn.Module, lr: float, weight_decay: float, steps: int, floor: float):
    """AdamW with 10% linear warm-up, then linear decay that stops at `floor` x the peak rate.

    Not `training.linear_warmup` (which decays to zero from the end of warm-up): the shipped tiny
    models were trained with this schedule, and the recipes must reproduce them.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * max(floor, 1 - s / max(steps, 1))
    )
    return opt, sched


def _update(model: torch.nn.Module, opt, sched, loss: torch.Tensor) -> None:
    """One optimizer step with gradient clipping at norm 1."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()


# --- tokenizer -------------------------------------------------------------------------------------
def train_tokenizer(texts: Sequence[str], vocab_size: int, out_dir: str | os.PathLike):
    """Train a GPT-2-style byte-level BPE tokenizer (EOS ``<|endoftext|>``) and save it to `out_dir`.

    The folder loads with ``transformers.AutoTokenizer.from_pretrained(out_dir)``.

    Example:
        >>> tok = train_tokenizer(["a red circle", "a blue square"], vocab_size=300, out_dir="tok")
        >>> tok.decode(tok.encode("a red circle"))
        'a red circle'
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = _check_texts(texts, "train_tokenizer")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 1:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: byte-level BPE needs at least {len(alphabet) + 1}"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS], initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS)
    with _staging_dir(out_dir) as tmp:
        fast.save_pretrained(tmp)
    return fast


def _load_tokenizer(tokenizer_dir: str | os.PathLike):
    from transformers import AutoTokenizer

    folder = Path(tokenizer_dir)
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{folder}: no tokenizer.json; train one first with train_tokenizer(...)")
    return AutoTokenizer.from_pretrained(folder)


# --- GPT-2 -----------------------------------------------------------------------------------------
def train_tiny_gpt2(
    texts: Sequence[str],
    tokenizer_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    n_layer: int = 4,
    n_embd: int = 128,
    n_head: int = 4,
    steps: int = 300,
    batch_size: int = 64,
    seed: int = 0,
    n_positions: int = 64,
    lr: float = 3e-3,
    pairs: Sequence[tuple[str, str]] | None = None,
    pair_share: float = 0.5,
    separate_pairs: bool = False,
    prefix_slot: int = 0,
) -> Path:
    """Pretrain a small `GPT2LMHeadModel` on `texts` and save it (fp16 safetensors + tokenizer).

    Each training sequence is ``EOS text EOS`` (GPT-2's document convention), so the model learns
    to stop. With `pairs` (context, text), half the sequences are ``EOS context text EOS`` with the
    loss on the text only: a model trained on captions alone never needs what comes before a
    caption and learns to ignore it, so a frozen copy could not be steered by a prefix. Pairs of
    two paraphrases of one scene teach it to take content from its context, which is the slot
    the mapper's prefix fills; `pair_share` is the share of paired sequences in a batch.

    `prefix_slot` > 0 puts 0 to `prefix_slot` soft vectors (random token embeddings plus noise of
    random strength, no loss on them) between the leading EOS and the text of every sequence: the
    layout a prefix pipeline feeds the frozen model. A small model pretrained on ``EOS text`` alone
    ties its reading of the text to where the text starts: behind eight prefix vectors the 4-layer
    `chest-gpt2` copied a retrieved triplet from its prompt 45% of the time instead of 94%. Real
    GPT-2 has read every kind of text before a document and is not thrown this way; the slot gives
    the tiny model that robustness (98-100% with any of the prefixes tried).

    The folder loads with ``mmgpt2.lm.load_lm("embedded:NAME")`` once it sits under
    ``assets/models/NAME`` (or with ``load_lm("hf:/path")``).

    Example:
        >>> train_tiny_gpt2(captions, "build/tok", "assets/models/shapes-gpt2", n_layer=4, n_embd=128)
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    texts = _check_texts(texts, "train_tiny_gpt2")
    tokenizer = _load_tokenizer(tokenizer_dir)
    eos = tokenizer.eos_token_id
    room = n_positions - prefix_slot  # room for the soft vectors a prefix slot adds
    # (ids, index where the loss starts): plain texts learn from the first token on
    seqs = [([eos, *tokenizer.encode(t, add_special_tokens=False)[: room - 2], eos], 1) for t in texts]
    paired = []
    for context, text in pairs or []:
        ctx = tokenizer.encode(context, add_special_tokens=False)[: room // 2 - 1 - separate_pairs]
        if separate_pairs:
            ctx = [*ctx, eos]
        tgt = tokenizer.encode(text, add_special_tokens=False)[: room - len(ctx) - 2]
        paired.append(([eos, *ctx, *tgt, eos], 1 + len(ctx)))
    torch.manual_seed(seed)
    rng = random.Random(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=eos,
        eos_token_id=eos,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(config)
    model.train()
    opt, sched = _optimizer(model, lr, weight_decay=0.01, steps=steps, floor=0.05)
    bar = _progress(steps, "tiny GPT-2")
    for _ in range(steps):
        batch = [
            paired[rng.randrange(len(paired))]
            if paired and rng.random() < pair_share
            else seqs[rng.randrange(len(seqs))]
            for _ in range(batch_size)
        ]
        if prefix_slot:  # 0 to prefix_slot soft vectors after the leading EOS (placeholders until embedded)
            lengths = [rng.randint(0, prefix_slot) for _ in batch]
            batch = [([eos] * (1 + r) + s[1:], start + r) for (s, start), r in zip(batch, lengths)]
        width = max(len(s) for s, _ in batch)
        ids = torch.full((batch_size, width), eos, dtype=torch.long)
        labels = torch.full((batch_size, width), -100, dtype=torch.long)
        mask = torch.zeros((batch_size, width), dtype=torch.long)
        for i, (s, start) in enumerate(batch):
            ids[i, : len(s)] = torch.tensor(s)
            labels[i, start : len(s)] = torch.tensor(s[start:])  # EOS and any context are not targets
            mask[i, : len(s)] = 1
        inputs = {"input_ids": ids} if not prefix_slot else {"inputs_embeds": _soft_slot(model, ids, lengths)}
        loss = model(**inputs, attention_mask=mask, labels=labels).loss
        _update(model, opt, sched, loss)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.update()
    bar.close()
    model.eval()
    with _staging_dir(out_dir) as tmp:
        # fp16 on disk keeps assets/ small; load_lm casts back to fp32.
        model.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)


def _soft_slot(model, ids: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Token embeddings of `ids` with positions ``1 : 1 + lengths[row]`` replaced by random soft vectors.

    Each vector is a random token's embedding plus Gaussian noise of a strength drawn per row (up
    to half the embeddings' spread), so no single kind of prefix is the only one seen.
    """
    table = model.get_input_embeddings()
    embeds = table(ids)
    b, t = ids.shape
    junk = table(torch.randint(0, table.num_embeddings, (b, t)))
    junk = junk + torch.randn_like(junk) * table.weight.detach().std() * 0.5 * torch.rand(b, 1, 1)
    position = torch.arange(t)
    where = (position >= 1) & (position < 1 + torch.tensor(lengths)[:, None])
    return torch.where(where[..., None], junk, embeds)


# --- CLIP ------------------------------------------------------------------------------------------
def _merge(base: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _write_clip_tokenizer(tokenizer_dir: str | os.PathLike, folder: Path) -> int:
    """Copy the BPE tokenizer into the CLIP folder with EOS appended to every text (and as padding).

    open_clip's HF tokenizer pads to the context length and the text tower pools at the first EOS
    (``pool_type="eos"``), so every text must end with EOS; the GPT-2 copy stays without it,
    because FrozenLM appends EOS itself.
    """
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    base = _load_tokenizer(tokenizer_dir)
    tok = Tokenizer.from_str(base.backend_tokenizer.to_str())
    eos_id = base.eos_token_id
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, eos_id)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS, pad_token=EOS
    )
    fast.save_pretrained(folder)
    return eos_id


def _clip_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """Symmetric InfoNCE where every identical caption in the batch counts as a positive.

    Small worlds repeat captions within a batch; treating those as negatives would push apart
    embeddings that must be equal.
    """
    logits = scale * img @ txt.t()
    index = {t: i for i, t in enumerate(dict.fromkeys(texts))}
    keys = torch.tensor([index[t] for t in texts])
    target = (keys[:, None] == keys[None, :]).float()
    target = target / target.sum(1, keepdim=True)
    loss_i = torch.sum(-target * logits.log_softmax(1), 1).mean()
    loss_t = torch.sum(-target * logits.t().log_softmax(1), 1).mean()
    return (loss_i + loss_t) / 2


def train_tiny_clip(
    make_batch: BatchMaker,
    tokenizer_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    model_cfg: dict[str, Any] | None = None,
    steps: int = 600,
    batch_size: int = 128,
    seed: int = 0,
    lr: float = 1e-3,
    preprocess_cfg: dict[str, Any] | None = None,
) -> Path:
    """Train a tiny open_clip model contrastively on `make_batch` and save it as an open_clip local dir.

    `model_cfg` overrides `DEFAULT_CLIP_CFG` (nested dicts merge key by key); the text tower uses
    the BPE tokenizer in `tokenizer_dir`. The folder holds ``open_clip_config.json`` (``model_cfg``
    + ``preprocess_cfg``), ``open_clip_model.safetensors`` (fp16) and the tokenizer, and loads with
    ``open_clip.create_model_and_transforms("local-dir:<folder>")`` or, under ``assets/models/NAME``,
    ``mmgpt2.encoders.load_encoder("embedded:NAME")``.

    Example:
        >>> def make_batch(rng, n):
        ...     scenes = [shapes.make_scene(rng) for _ in range(n)]
        ...     return [shapes.render(s, rng=rng) for s in scenes], [rng.choice(shapes.captions(s)) for s in scenes]
        >>> train_tiny_clip(make_batch, "build/tok", "assets/models/shapes-clip", steps=600)
    """
    import open_clip
    from safetensors.torch import save_file

    tokenizer = _load_tokenizer(tokenizer_dir)
    cfg = _merge(DEFAULT_CLIP_CFG, model_cfg)
    text_cfg = cfg["text_cfg"]
    text_cfg.update(
        vocab_size=len(tokenizer),
        hf_tokenizer_name=".",  # open_clip reads the tokenizer from the local dir itself
        pool_type="eos",
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.eos_token_id,
    )
    pre = {**DEFAULT_PREPROCESS_CFG, **(preprocess_cfg or {})}
    pre["size"] = cfg["vision_cfg"]["image_size"]
    torch.manual_seed(seed)
    rng = random.Random(seed)
    with _staging_dir(out_dir) as tmp:
        _write_clip_tokenizer(tokenizer_dir, tmp)
        (tmp / "open_clip_config.json").write_text(
            json.dumps({"model_cfg": cfg, "preprocess_cfg": pre}, indent=2) + "\n"
        )
        # The staging folder has no weights yet, so open_clip warns "initialized randomly": expected here.
        quiet = logging.getLogger()
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp}")
        finally:
            quiet.setLevel(level)
        text_tok = open_clip.get_tokenizer(f"local-dir:{tmp}")
        model.train()
        opt, sched = _optimizer(model, lr, weight_decay=0.05, steps=steps, floor=0.02)
        bar = _progress(steps, "tiny CLIP")
        for _ in range(steps):
            images, texts = make_batch(rng, batch_size)
            pixels = torch.stack([preprocess(im) for im in images])
            img = model.encode_image(pixels, normalize=True)
            txt = model.encode_text(text_tok(texts), normalize=True)
            loss = _clip_loss(img, txt, model.logit_scale.exp().clamp(max=100), texts)
            _update(model, opt, sched, loss)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            bar.update()
        bar.close()
        state = {k: v.detach().to(torch.float16).contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "open_clip_model.safetensors"))
    return Path(out_dir)


@torch.no_grad()
def clip_retrieval_accuracy(
    folder: str | os.PathLike,
    images: Sequence[Image.Image],
    captions: Sequence[str],
    candidates: Sequence[str],
) -> float:
    """Fraction of `images` whose nearest caption among `candidates` is their own caption.

    Loads `folder` the way the library does (`OpenClipEncoder("local-dir:...")`), so it also
    checks the saved round trip.

    Example:
        >>> clip_retrieval_accuracy("assets/models/shapes-clip", imgs, caps, sorted(set(caps)))
        1.0
    """
    from mmgpt2.encoders.open_clip_encoder import OpenClipEncoder

    enc = OpenClipEncoder(f"local-dir:{Path(folder).resolve()}", spec=f"open_clip:local-dir:{folder}")
    cands = list(candidates)
    img = torch.nn.functional.normalize(enc.encode_image(enc.preprocess_batch(list(images))), dim=-1)
    txt = torch.nn.functional.normalize(enc.encode_text(cands), dim=-1)
    best = (img @ txt.t()).argmax(1).tolist()
    return sum(cands[b] == c for b, c in zip(best, captions, strict=True)) / max(len(captions), 1)


def folder_size_mb(folder: str | os.PathLike) -> float:
    """Total size of the files under `folder` in MB (assets must stay small)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 1e6
