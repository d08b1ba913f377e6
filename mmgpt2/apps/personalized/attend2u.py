"""Readers for the Attend2u personalized captioning data (Park et al. 2017), as the raw JSON ships.

Instagram: ``{user: {post_id: {"caption": str | [tokens], "tags": [...]}}}``.
YFCC100M:  ``{user: [{"title": ..., "description": ..., "user tags": ..., ...}, ...]}``.

Both become `UserPost` lists (user, image path, caption). Splits follow Attend2u: **test1** holds
every post of users never seen in training (unseen users), **test2** holds held-out posts of
training users (unseen posts). Use the split files shipped with the data when you have them
(`load_attend2u_splits`), or cut your own reproducibly with `split_posts`.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Sequence
from pathlib import Path

from mmgpt2.apps.personalized.dataset import UserPost
from mmgpt2.errors import Mmgpt2Error

_HTML = re.compile(r"<[^>]+>")


def _load_json(path: str | os.PathLike, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise Mmgpt2Error(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise Mmgpt2Error(f"{path}: expected a JSON object keyed by user id, got {type(data).__name__}")
    return data


def _text(value) -> str:
    """A caption that may be a string or a list of tokens (Attend2u stores tokenized captions)."""
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value)
    return " ".join(_HTML.sub(" ", str(value or "")).split())


def _image(image_dir: str | os.PathLike | None, pattern: str, user: str, post: str) -> str:
    name = pattern.format(user=user, post=post)
    return str(Path(image_dir) / name) if image_dir else name


def read_instagram(
    path: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    image_pattern: str = "{post}.jpg",
    with_tags: bool = False,
) -> list[UserPost]:
    """Posts of an Attend2u Instagram JSON file; `with_tags` appends the hashtags to the caption.

    Example:
        >>> posts = read_instagram("insta-caption-train.json", image_dir="images")
        >>> posts[0].user, posts[0].caption
    """
    data = _load_json(path, "Attend2u Instagram JSON")
    out = []
    for user, user_posts in data.items():
        if not isinstance(user_posts, dict):
            raise Mmgpt2Error(
                f"{path}: user {user!r} maps to {type(user_posts).__name__}, expected {{post_id: {{...}}}}"
            )
        for post, item in user_posts.items():
            item = item if isinstance(item, dict) else {"caption": item}
            caption = _text(item.get("caption"))
            if with_tags and item.get("tags"):
                caption = " ".join([caption] + ["#" + str(t).lstrip("#") for t in item["tags"]]).strip()
            out.append(
                UserPost(
                    str(user), _image(image_dir, image_pattern, str(user), str(post)), caption, str(post)
                )
            )
    return out


def read_yfcc(
    path: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    image_pattern: str = "{post}.jpg",
    field: str = "title",
) -> list[UserPost]:
    """Posts of an Attend2u YFCC100M JSON file; the caption is `field` ("title" or "description").

    A post's id is its ``"photo_id"``/``"id"`` entry, else ``"<user>_<index>"``.

    Example:
        >>> read_yfcc("yfcc-train.json", image_dir="yfcc_images", field="description")[:1]
    """
    data = _load_json(path, "Attend2u YFCC100M JSON")
    out = []
    for user, items in data.items():
        if not isinstance(items, list):
            raise Mmgpt2Error(
                f"{path}: user {user!r} maps to {type(items).__name__}, expected a list of photos"
            )
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise Mmgpt2Error(f"{path}: user {user!r} photo {i} is not an object")
            post = str(item.get("photo_id", item.get("id", f"{user}_{i}")))
            caption = _text(item.get(field)) or _text(
                item.get("description" if field == "title" else "title")
            )
            out.append(UserPost(str(user), _image(image_dir, image_pattern, str(user), post), caption, post))
    return out


def split_posts(
    posts: Sequence[UserPost], test1_users: float = 0.1, test2_posts: float = 0.1, seed: int = 0
) -> dict[str, list[UserPost]]:
    """Attend2u-style splits: ``train``, ``test1`` (unseen users), ``test2`` (unseen posts of train users).

    Deterministic for a seed. Each training user keeps at least one training post.

    Example:
        >>> splits = split_posts(read_instagram("insta.json"), test1_users=0.1, test2_posts=0.1)
        >>> {k: len(v) for k, v in splits.items()}
    """
    rng = random.Random(seed)
    users = sorted({p.user for p in posts})
    rng.shuffle(users)
    unseen = set(users[: round(len(users) * test1_users)])
    by_user: dict[str, list[UserPost]] = {}
    for p in posts:
        by_user.setdefault(p.user, []).append(p)
    out: dict[str, list[UserPost]] = {"train": [], "test1": [], "test2": []}
    for user in sorted(by_user):
        items = by_user[user]
        if user in unseen:
            out["test1"] += items
            continue
        order = list(range(len(items)))
        rng.shuffle(order)
        n_test = min(len(items) - 1, round(len(items) * test2_posts))
        held = set(order[:n_test])
        for i, p in enumerate(items):
            out["test2" if i in held else "train"].append(p)
    return out


def load_attend2u_splits(
    files: dict[str, str | os.PathLike],
    kind: str = "instagram",
    image_dir: str | os.PathLike | None = None,
    **kwargs,
) -> dict[str, list[UserPost]]:
    """Read the shipped split files, e.g. ``{"train": ..., "test1": ..., "test2": ...}``, and check them.

    Raises if a test1 user also appears in train (test1 must be unseen users) or a test2 user does
    not (test2 must be unseen posts of known users).
    """
    reader = {"instagram": read_instagram, "yfcc": read_yfcc}.get(kind)
    if reader is None:
        raise Mmgpt2Error(f"unknown Attend2u kind {kind!r}; use 'instagram' or 'yfcc'")
    splits = {name: reader(path, image_dir=image_dir, **kwargs) for name, path in files.items()}
    train_users = {p.user for p in splits.get("train", [])}
    if "train" in splits:
        leaked = sorted({p.user for p in splits.get("test1", [])} & train_users)
        if leaked:
            raise Mmgpt2Error(
                f"{files['test1']}: test1 must hold unseen users, but {len(leaked)} are in train: {leaked[:5]}"
            )
        strangers = sorted({p.user for p in splits.get("test2", [])} - train_users)
        if strangers:
            raise Mmgpt2Error(
                f"{files['test2']}: test2 users must appear in train; {len(strangers)} do not: {strangers[:5]}"
            )
    return splits


def posts_by_user(posts: Sequence[UserPost]) -> dict[str, list[str]]:
    """Captions grouped by user, in input order (the input of `UserStore.build` / IDF fitting)."""
    out: dict[str, list[str]] = {}
    for p in posts:
        out.setdefault(p.user, []).append(p.caption)
    return out
