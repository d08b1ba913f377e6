"""Cached batched decoding: each mode checked against an independent reference."""

from __future__ import annotations

import helpers
import pytest
import torch

from mmgpt2.lm import FrozenLM, load_lm
from mmgpt2.lm.decoding import GenerationConfig, _contrastive_search, decode

VOCAB, EOS, D = 300, 299, 32


def tiny_lm(seed: int = 0) -> FrozenLM:
    """A 2-layer GPT-2 on bare ids; a large init range makes next-token distributions peaked, so argmax ties are not an issue."""
    return helpers.tiny_lm(
        seed, tokenizer=None, vocab_size=VOCAB, eos_token_id=EOS, initializer_range=0.2, spec="test:tiny"
    )


def gen_batch(lm: FrozenLM, prompts: list[list[int]], seed: int = 1) -> dict[str, torch.Tensor]:
    """Left-padded prefix (K=4) + prompts of different lengths, as `FrozenLM.generate` builds them."""
    torch.manual_seed(seed)
    batch = lm.build_inputs(torch.randn(len(prompts), 4, D), prompts, pad_left=True)
    batch.pop("labels")
    return batch


def one_item(batch: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    """Item i alone, its left padding removed."""
    keep = batch["attention_mask"][i].bool()
    return {k: v[i : i + 1][:, keep] for k, v in batch.items()}


PROMPTS = [[1, 2, 3, 4, 5], [], [7, 8]]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run faster on one thread; two threads on a busy 2-core machine mostly wait on each other."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def uncached_greedy(lm: FrozenLM, batch: dict, steps: int) -> list[list[int]]:
    """Reference: re-run the whole sequence for every new token, no cache, no early stop."""
    emb, mask, pos = batch["inputs_embeds"], batch["attention_mask"], batch["position_ids"]
    out = []
    for _ in range(steps):
        nxt = lm.model(inputs_embeds=emb, attention_mask=mask, position_ids=pos).logits[:, -1].argmax(-1)
        out.append(nxt)
        emb = torch.cat([emb, lm.embed(nxt)[:, None]], 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        pos = torch.cat([pos, pos[:, -1:] + 1], 1)
    return torch.stack(out, 1).tolist()


def until_eos(seq: list[int], eos: int = EOS) -> list[int]:
    return seq[: seq.index(eos)] if eos in seq else seq


@torch.no_grad()
def test_cached_greedy_equals_uncached_reference():
    lm = tiny_lm()
    batch = gen_batch(lm, PROMPTS)
    ref = uncached_greedy(lm, batch, 12)
    assert decode(lm, batch, max_new_tokens=12, eos_token_id=-1) == ref
    assert len({tuple(r) for r in ref}) == 3  # the items really differ, so the padding is exercised


@torch.no_grad()
def test_greedy_matches_transformers_generate():
    lm = tiny_lm()
    batch = gen_batch(lm, PROMPTS)
    theirs = lm.model.generate(
        inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"],
        max_new_tokens=12, do_sample=False, eos_token_id=EOS, pad_token_id=EOS,
    )  # fmt: skip
    assert decode(lm, batch, max_new_tokens=12) == [until_eos(t) for t in theirs.tolist()]


@torch.no_grad()
def test_batched_beam_equals_per_item_beam():
    lm = tiny_lm()
    batch = gen_batch(lm, PROMPTS)
    kw = dict(max_new_tokens=10, num_beams=4, length_penalty=0.7)
    batched = decode(lm, batch, **kw)
    alone = [decode(lm, one_item(batch, i), **kw)[0] for i in range(len(PROMPTS))]
    assert batched == alone
    assert all(len(x) > 0 for x in batched)


@torch.no_grad()
def test_beam_matches_transformers_beam_search():
    lm = tiny_lm()
    batch = gen_batch(lm, PROMPTS)
    theirs = lm.model.generate(
        inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"],
        max_new_tokens=10, num_beams=3, do_sample=False, eos_token_id=EOS, pad_token_id=EOS,
    )  # fmt: skip
    assert decode(lm, batch, max_new_tokens=10, num_beams=3) == [until_eos(t) for t in theirs.tolist()]


@torch.no_grad()
def test_beam_with_one_beam_equals_greedy():
    lm = tiny_lm()
    batch = gen_batch(lm, PROMPTS)
    assert decode(lm, batch, num_beams=1, max_new_tokens=10) == decode(lm, batch, max_new_tokens=10)


@torch.no_grad()
def test_beam_search_finds_at_least_greedys_score():
    """A wider beam never returns a lower-probability sequence than greedy (length_penalty=0: raw log-prob)."""
    lm = tiny_lm()
    batch = gen_batch(lm, PROMPTS)
    kw = dict(max_new_tokens=8, eos_token_id=-1)
    greedy = decode(lm, batch, **kw)
    beam = decode(lm, batch, num_beams=5, length_penalty=0.0, **kw)

    def logprob(i, seq):
        item = one_item(batch, i)
        emb = torch.cat([item["inputs_embeds"], lm.embed(torch.tensor([seq]))], 1)
        logp = lm.model(inputs_embeds=emb).logits[0].log_softmax(-1)
        k = item["inputs_embeds"].shape[1]
        return sum(logp[k - 1 + j, t].item() for j, t in enumerate(seq))

    for i in range(len(PROMPTS)):
        assert logprob(i, beam[i]) >= logprob(i, greedy[i]) - 1e-4


@torch.no_grad()
def test_sampling_with_fixed_seed_is_reproducible():
    lm = tiny_lm()
    batch = gen_batch(lm, PROMPTS)
    kw = dict(do_sample=True, max_new_tokens=12, temperature=1.5, top_k=0)
    a, b = decode(lm, batch, seed=3, **kw), decode(lm, batch, seed=3, **kw)
    assert a == b
    assert decode(lm, batch, seed=4, **kw) != a
    assert a != decode(lm, batch, max_new_tokens=12)  # it really samples


@torch.no_grad()
def test_tiny_top_p_sampling_equals_greedy():
    lm = tiny_lm()
    batch = gen_batch(lm, PROMPTS)
    assert decode(lm, batch, do_sample=True, top_p=1e-6, seed=0, max_new_tokens=10) == decode(
        lm, batch, max_new_tokens=10
    )


@torch.no_grad()
def test_contrastive_with_zero_alpha_equals_greedy():
    lm = tiny_lm()
    batch = gen_batch(lm, PROMPTS)
    greedy = decode(lm, batch, max_new_tokens=10)
    # Run the contrastive code path itself with alpha=0 (decode() would route alpha=0 to greedy).
    cfg = GenerationConfig(max_new_tokens=10, top_k=4)
    assert _contrastive_search(lm, batch, cfg, [EOS], alpha=0.0) == greedy
    assert decode(lm, batch, penalty_alpha=0.0, top_k=4, max_new_tokens=10) == greedy


@torch.no_grad()
def test_contrastive_batched_equals_per_item_and_penalizes_repetition():
    lm = tiny_lm()
    batch = gen_batch(lm, PROMPTS)
    kw = dict(penalty_alpha=0.6, top_k=4, max_new_tokens=10)
    batched = decode(lm, batch, **kw)
    assert batched == [decode(lm, one_item(batch, i), **kw)[0] for i in range(len(PROMPTS))]
    greedy = decode(lm, batch, max_new_tokens=10)
    assert batched != greedy
    distinct = lambda outs: sum(len(set(s)) for s in outs)  # noqa: E731
    assert distinct(batched) >= distinct(greedy)


@torch.no_grad()
def test_eos_stops_generation_per_item():
    lm = tiny_lm()
    batch = gen_batch(lm, PROMPTS)
    free = decode(lm, batch, max_new_tokens=12, eos_token_id=-1)
    j = next(j for j in range(2, 12) if free[0][j] not in free[0][:j])
    stop = free[0][j]  # make a token item 0 first emits at step j the EOS
    out = decode(lm, batch, max_new_tokens=12, eos_token_id=[stop, -1])
    assert out[0] == free[0][:j]
    for got, full in zip(out, free, strict=True):
        assert got == until_eos(full, stop)
    for kw in (dict(num_beams=3), dict(penalty_alpha=0.5, top_k=3), dict(do_sample=True, seed=0)):
        assert all(stop not in s for s in decode(lm, batch, max_new_tokens=12, eos_token_id=stop, **kw))


@torch.no_grad()
def test_min_new_tokens_blocks_eos():
    lm = tiny_lm()
    batch = gen_batch(lm, PROMPTS)
    stop = decode(lm, batch, max_new_tokens=5, eos_token_id=-1)[0][0]
    assert decode(lm, batch, max_new_tokens=5, eos_token_id=stop)[0] == []
    assert len(decode(lm, batch, max_new_tokens=5, min_new_tokens=5, eos_token_id=stop)[0]) == 5


@torch.no_grad()
def test_no_repeat_ngram_size_forbids_repeated_bigrams():
    lm = tiny_lm()
    batch = gen_batch(lm, PROMPTS)
    greedy = decode(lm, batch, max_new_tokens=16, eos_token_id=-1)
    bigrams = lambda s: list(zip(s, s[1:], strict=False))  # noqa: E731
    assert any(len(set(bigrams(s))) < len(bigrams(s)) for s in greedy)  # the check below can fail
    for s in decode(lm, batch, max_new_tokens=16, eos_token_id=-1, no_repeat_ngram_size=2):
        assert len(set(bigrams(s))) == len(bigrams(s))


def test_unknown_generation_argument_is_a_type_error():
    lm = tiny_lm()
    batch = gen_batch(lm, PROMPTS)
    with pytest.raises(TypeError, match="num_beam"):
        decode(lm, batch, num_beam=3)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"top_p": 0.0}, "top_p"),
        ({"temperature": 0.0, "do_sample": True}, "temperature"),
        ({"num_beams": 3, "do_sample": True}, "num_beams"),
        ({"early_stopping": "sometimes"}, "early_stopping"),
        ({"penalty_alpha": 1.5}, "penalty_alpha"),
    ],
)
def test_invalid_generation_values_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GenerationConfig.from_kwargs(**kwargs)


@torch.no_grad()
def test_generation_is_capped_at_the_context_length():
    lm = tiny_lm()  # 64 positions
    batch = gen_batch(lm, [list(range(1, 55))])  # 4 + 54 = 58 used, 6 left
    with pytest.warns(UserWarning, match="capped"):
        out = decode(lm, batch, max_new_tokens=30, eos_token_id=-1)
    assert len(out[0]) == 6


@torch.no_grad()
def test_real_size_gpt2_generate_matches_transformers_greedy():
    lm = load_lm("random:gpt2")
    torch.manual_seed(0)
    prefix = torch.randn(2, 10, lm.hidden_size) * 0.1
    texts = lm.generate(prefix, prompt=["a photo of", None], max_new_tokens=6)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    batch = lm.build_inputs(prefix, lm.tokenize(["a photo of", ""]), pad_left=True)
    ours = decode(lm, {k: v for k, v in batch.items() if k != "labels"}, max_new_tokens=6)
    theirs = lm.model.generate(
        inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"],
        max_new_tokens=6, do_sample=False, eos_token_id=lm.eos_token_id, pad_token_id=lm.eos_token_id,
    )  # fmt: skip
    assert ours == [until_eos(t, lm.eos_token_id) for t in theirs.tolist()]
    assert texts == [lm.decode(x) for x in ours]
