"""User context: TF-IDF words from a user's other posts, the store, and bounded history reading."""

import json
import tracemalloc

import pytest

from mmgpt2.apps.personalized import MAX_POSTS, UserContextModel, UserStore, read_history, words
from mmgpt2.apps.personalized.dataset import UserPost, leave_one_out_contexts

USERS = {
    "ann": ["a red circle #art", "red again #art", "a tiny red dot"],
    "bob": ["a blue square", "blue square again", "a big blue box"],
    "cat": ["a green triangle ✨", "green ✨ triangle", "a green cone"],
}


def test_words_keep_hashtags_accents_and_emoji():
    assert words("Café NAÏVE #Summer ☀️ 😀!") == ["café", "naïve", "#summer", "☀", "😀"]


def test_word_every_training_user_writes_is_never_context():
    model = UserContextModel().fit(USERS)
    assert model.idf_of("a") == 0
    assert "a" not in model.context(USERS["ann"])
    assert model.context(USERS["ann"])[0] == "red"


def test_top_n_defaults_to_100_and_is_configurable():
    assert UserContextModel().top_n == 100
    many = {"u": [" ".join(f"w{i}" for i in range(300))], "v": ["x"]}
    assert len(UserContextModel().fit(many).context(many["u"])) == 100
    assert len(UserContextModel(top_n=7).fit(many).context(many["u"])) == 7


def test_leave_one_out_never_includes_the_captioned_post():
    posts = ["zebra only here", "red circle", "red square", "blue circle"]
    model = UserContextModel(top_n=50).fit({**USERS, "dan": posts})
    contexts = model.leave_one_out(posts)
    assert "zebra" not in contexts[0] and "zebra" in contexts[1]
    for i, ctx in enumerate(contexts):  # identical to computing from the other posts only
        assert ctx == model.context(posts[:i] + posts[i + 1 :])


def test_training_contexts_do_not_see_their_own_caption():
    posts = [UserPost("ann", f"{i}.png", c) for i, c in enumerate(["unicorn sky", "red circle", "red dot"])]
    posts.append(UserPost("bob", "b.png", "unicorn blue"))
    contexts = leave_one_out_contexts(posts, UserContextModel().fit(USERS))
    assert "unicorn" not in contexts[0] and "sky" not in contexts[0]
    assert "unicorn" not in contexts[3]  # bob's only post: nothing else to draw on
    assert contexts[3] == []


def test_store_round_trips_non_ascii_users_and_words(tmp_path):
    store = UserStore.build({**USERS, "zoë 🌸": ["héllo wörld ✨", "naïve café ✨"]}, top_n=5)
    store.save(tmp_path / "users.json")
    loaded = UserStore.load(tmp_path / "users.json")
    assert loaded.users == store.users and "✨" in loaded["zoë 🌸"]
    assert loaded.model.idf == store.model.idf
    assert loaded.model.context(["naïve café ✨"]) == store.model.context(["naïve café ✨"])


def test_store_unknown_user_lists_known_ids():
    store = UserStore.build(USERS)
    with pytest.raises(KeyError, match="ann, bob, cat"):
        store["nobody"]


def test_store_load_rejects_other_json(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"users": {}}))
    with pytest.raises(ValueError, match="not an mmgpt2 user store"):
        UserStore.load(tmp_path / "x.json")


def test_history_of_100k_lines_is_capped_and_bounded_in_memory(tmp_path):
    path = tmp_path / "history.txt"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(100_000):
            f.write(f"post number {i} with café ✨ {'x' * (5000 if i == 99_999 else 3)}\n")
    tracemalloc.start()
    posts = read_history(path)
    context = UserContextModel().fit(USERS).context(posts)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(posts) == MAX_POSTS
    assert posts[-1].startswith("post number 99999") and len(posts[-1]) <= 2000  # the most recent, cut
    assert "café" in context and "✨" in context
    assert peak < 60 * 2**20  # a 100k-line file is ~5 MB; we never hold all of it plus its words


def test_history_tolerates_blank_lines_and_bad_bytes(tmp_path):
    path = tmp_path / "h.txt"
    path.write_bytes(b"first caption\n\n  \nbad \xff\xfe bytes\n")
    assert read_history(path) == ["first caption", "bad \ufffd\ufffd bytes"]


def test_missing_history_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_history(tmp_path / "nope.txt")
