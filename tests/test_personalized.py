"""PersonalizedCaptioner on tiny random stand-ins: user resolution, bad input, saving, gradients."""

import warnings

import helpers
import pytest
import torch
from helpers import TinyEncoder
from PIL import Image

from mmgpt2 import load_pipeline
from mmgpt2.apps.personalized import UserStore
from mmgpt2.apps.personalized.model import PersonalizedCaptioner
from mmgpt2.lm import FrozenLM

HISTORIES = {
    "ann": ["wow a red circle #art", "wow red again #art", "wow a tiny red dot"],
    "bob": ["blue square so pretty", "blue box so pretty", "a big blue box"],
    "cat": ["omg a green triangle ✨", "omg green ✨", "a green cone"],
}


def tiny_encoder() -> TinyEncoder:
    """16 patch tokens of width 12, pooled width 8."""
    return TinyEncoder(embed_dim=8, token_dim=12, image_size=16, patch=4, spec="test:tiny")


def tiny_lm() -> FrozenLM:
    return helpers.tiny_lm(
        tokenizer="fallback", spec="test:tiny-lm", n_layer=1, n_positions=96, initializer_range=0.02
    )


@pytest.fixture(scope="module")
def model():
    store = UserStore.build(HISTORIES, top_n=10)
    return PersonalizedCaptioner.build(
        tiny_encoder(),
        tiny_lm(),
        store,
        prefix_length=4,
        hidden_dim=16,
        num_layers=1,
        num_heads=2,
        fusion={"num_heads": 2},
        generation={"max_new_tokens": 5},
    ).eval()


@pytest.fixture(scope="module")
def images():
    return [Image.new("RGB", (20, 20), (200, 30, 30)), Image.new("RGB", (20, 20), (30, 30, 200))]


def test_known_users_survive_save_and_load(model, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = PersonalizedCaptioner.from_pretrained(tmp_path, encoder=model.encoder, lm=model.lm)
    assert loaded.users == sorted(HISTORIES)
    assert [loaded.context_words(u) for u in loaded.users] == [model.context_words(u) for u in model.users]


def test_caption_with_a_known_user_id_decodes_that_users_prefix(model, images):
    pooled, tokens = model.encode_images(images)
    ann = model.context_words("ann")
    expected = model.lm.generate(model.prefix(pooled, tokens, [ann, ann]), **model.generation_kwargs({}))
    assert model.caption(images, user="ann") == expected
    assert expected != model.lm.generate(
        model.prefix(pooled, tokens, [[], []]), **model.generation_kwargs({})
    )


def test_unknown_user_id_error_lists_known_ids(model, images):
    with pytest.raises(ValueError, match=r"unknown user 'zed'; known users: ann, bob, cat"):
        model.caption(images, user="zed")


def test_empty_history_warns_and_gives_the_non_personalized_caption(model, images):
    with pytest.warns(UserWarning, match="without personalization"):
        empty = model.caption(images, user=[])
    assert empty == model.caption(images, user=None)


def test_user_context_changes_the_prefix(model):
    pooled, tokens = torch.randn(1, 8), torch.randn(1, 16, 12)
    ann = model.prefix(pooled, tokens, [model.context_words("ann")])
    bob = model.prefix(pooled, tokens, [model.context_words("bob")])
    none = model.prefix(pooled, tokens, [[]])
    assert ann.shape == (1, 4, 32)
    assert not torch.allclose(ann, bob) and not torch.allclose(ann, none)


def test_history_of_captions_is_ranked_with_the_models_idf(model):
    words = model.context_words(["wow a red circle #art", "wow red again"])
    assert words == model.user_store.model.context(["wow a red circle #art", "wow red again"])
    assert "a" not in words and "red" in words


def test_a_list_of_single_words_is_taken_as_context_words(model):
    assert model.context_words(["Wow", "#art", "✨"]) == ["wow", "#art", "✨"]


def test_emoji_and_non_ascii_history(model, images):
    history = ["🌸 café au lait 🌸", "naïve 日本語 caption 🌸"]
    assert "🌸" in model.context_words(history)
    assert model.caption(images[:1], user=history) == model.caption(
        images[:1], user=model.context_words(history)
    )


def test_history_file_of_100k_lines(model, tmp_path, images):
    path = tmp_path / "history.txt"
    path.write_text("".join(f"wow caption {i % 50} ✨\n" for i in range(100_000)), encoding="utf-8")
    words = model.user_from_history_file(path)
    assert "✨" in words and len(words) <= model.user_store.model.top_n
    assert words == model.context_words([f"wow caption {i} ✨" for i in range(50)])


def test_training_loss_reaches_mapper_and_fusion_only(model):
    model.train()
    dropout, model.context_dropout = model.context_dropout, 0.0  # keep the context in this batch
    try:
        batch = {
            "pooled": torch.randn(2, 8),
            "tokens": torch.randn(2, 16, 12),
            "captions": ["a red dot", "a box"],
            "context": ["wow #art", ""],
        }
        model.zero_grad()
        model.training_loss(batch).backward()
    finally:
        model.eval()
        model.context_dropout = dropout
    assert model.mapper.queries.grad is not None and model.mapper.queries.grad.abs().sum() > 0
    assert (
        model.fusion.context_in[1].weight.grad is not None
        and model.fusion.context_in[1].weight.grad.abs().sum() > 0
    )
    assert all(p.grad is None for p in model.lm.parameters())
    assert all(p.grad is None for p in model.encoder.parameters())


def test_save_and_load_keep_weights_and_users(model, images, tmp_path, monkeypatch):
    folder = model.save_pretrained(tmp_path / "pc")
    assert (folder / "users.json").is_file()
    # The frozen parts are test doubles, so hand them in; everything else comes from the folder.
    loaded = load_pipeline(folder, encoder=model.encoder, lm=model.lm)
    assert isinstance(loaded, PersonalizedCaptioner)
    assert loaded.users == model.users and loaded.user_store.model.idf == model.user_store.model.idf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loaded.caption(images, user="cat") == model.caption(images, user="cat")


def test_context_dropout_blanks_whole_contexts_in_training_only(model, monkeypatch):
    seen = []
    monkeypatch.setattr(
        model,
        "prefix",
        lambda pooled, tokens, contexts: (
            seen.append(list(contexts)) or torch.zeros(len(contexts), 4, 32, requires_grad=True)
        ),
    )
    batch = {"pooled": torch.randn(200, 8), "captions": ["a dot"] * 200, "context": ["wow #art"] * 200}
    model.train()
    try:
        model.training_loss(batch)
    finally:
        model.eval()
    model.training_loss(batch)
    dropped = seen[0].count("")
    assert 5 <= dropped <= 45 and set(seen[0]) == {"", "wow #art"}  # ~10% of 200
    assert seen[1] == ["wow #art"] * 200


def test_mapper_built_for_tokens_asks_for_them(model):
    with pytest.raises(ValueError, match="pass encoder tokens"):
        model.mapper(torch.randn(1, 8), None)
