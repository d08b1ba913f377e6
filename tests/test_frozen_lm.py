"""FrozenLM: what carries loss, where gradients go, and how bad captions are handled."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_lm
from torch import nn

from mmgpt2.lm import IGNORE_INDEX, FrozenLM


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def lm() -> FrozenLM:
    return tiny_lm(tokenizer="fallback", spec="test:tiny", n_positions=48, initializer_range=0.02)


def test_only_caption_tokens_and_eos_carry_loss(lm):
    k = 5
    prefix = torch.randn(2, k, lm.hidden_size)
    prompts = lm.tokenize(["Q:", ""])
    targets = lm.tokenize(["a red circle", "a square"], add_eos=True)
    batch = lm.build_inputs(prefix, prompts, targets)
    labels = batch["labels"]
    for i, (p, t) in enumerate(zip(prompts, targets, strict=True)):
        assert t[-1] == lm.eos_token_id
        assert (labels[i, : k + len(p)] == IGNORE_INDEX).all()  # prefix and prompt positions
        assert labels[i, k + len(p) : k + len(p) + len(t)].tolist() == t  # caption tokens, EOS last
        assert (labels[i, k + len(p) + len(t) :] == IGNORE_INDEX).all()  # right padding
        assert batch["attention_mask"][i].sum() == k + len(p) + len(t)


def test_loss_is_the_mean_nll_of_caption_tokens_only(lm):
    torch.manual_seed(0)
    prefix = torch.randn(1, 4, lm.hidden_size)
    target = lm.tokenize(["abc"], add_eos=True)[0]
    logits = lm(**lm.build_inputs(prefix, None, [target]))
    logp = logits[0].log_softmax(-1)
    # position 3 (last prefix slot) predicts target[0], and so on; the EOS is the last predicted token
    expected = -torch.stack([logp[3 + j, t] for j, t in enumerate(target)]).mean()
    assert torch.allclose(lm.loss(prefix, [target]), expected, atol=1e-5)
    assert torch.allclose(lm.loss(prefix, ["abc"]), expected, atol=1e-5)


def test_loss_gradients_reach_the_prefix_and_not_the_lm(lm):
    mapper = nn.Linear(8, 3 * lm.hidden_size)
    prefix = mapper(torch.randn(2, 8)).view(2, 3, lm.hidden_size)
    lm.loss(prefix, ["a red circle", "a blue square"]).backward()
    assert mapper.weight.grad is not None and mapper.weight.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in lm.parameters())


def test_caption_longer_than_the_context_is_truncated_with_a_warning(lm):
    prefix = torch.randn(1, 10, lm.hidden_size)
    with pytest.warns(UserWarning, match="truncated"):
        batch = lm.build_inputs(prefix, None, lm.tokenize(["word " * 200], add_eos=True))
    assert batch["inputs_embeds"].shape[1] == lm.max_positions
    assert batch["labels"][0, -1] == lm.eos_token_id  # a truncated caption still ends in EOS
    with pytest.warns(UserWarning, match="truncated"):
        loss = lm.loss(prefix, ["word " * 200])
    assert torch.isfinite(loss)


@pytest.mark.parametrize("empty", ["", "   ", "\n\t"])
def test_empty_caption_is_a_clear_value_error(lm, empty):
    with pytest.raises(ValueError, match="caption 1 is empty"):
        lm.loss(torch.randn(2, 3, lm.hidden_size), ["a circle", empty])


def test_frozen_lm_stays_in_eval_mode_when_its_parent_trains(lm):
    parent = nn.ModuleDict({"mapper": nn.Linear(2, 2), "lm": lm})
    parent.train()
    assert parent["mapper"].training
    assert not lm.training and not lm.model.training
    assert all(not m.training for m in lm.model.modules())


def test_generate_returns_one_string_per_prefix(lm):
    texts = lm.generate(torch.randn(3, 4, lm.hidden_size), prompt="a", max_new_tokens=4, num_beams=2)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    with pytest.raises(TypeError, match="beams"):
        lm.generate(torch.randn(1, 4, lm.hidden_size), beams=2)
