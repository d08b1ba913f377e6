"""The users world: synthetic users who caption the same shapes scenes, each in their own style.

A style is three choices: an opener word (vocabulary), a word order, and an ending (hashtags,
"so pretty" or emoji), so captions differ in vocabulary, order, length and hashtags. Every style
keeps the scene's attribute words (shape, colour, size and the position phrase), so
`shapes.attribute_accuracy` still scores a caption, and `style_of` recovers the style of any
caption exactly (the rule-based style check used by the benchmark). One-object scenes only,
to keep the shipped model trainable in minutes on 2 CPU cores.

16 training users cover every value of every axis; the 4 held-out users are new combinations
of those values, to be captioned from their history alone.

Example:
    >>> caption_as("bo", make_scene(random.Random(0), n_objects=1))
    "wow on the right there's a large red cross"
    >>> style_of("wow on the right there's a large purple triangle so pretty")
    ('wow', 'pos_first', 'pretty')
"""

from __future__ import annotations

import itertools
import os
import random
import re
from pathlib import Path

from mmgpt2.errors import Mmgpt2Error
from mmgpt2.worlds import shapes
from mmgpt2.worlds.shapes import COLORS, POSITION_PHRASES, SHAPES, SIZES, Scene, make_scene, render

OPENERS = {"plain": "", "wow": "wow", "look": "look", "omg": "omg"}
ORDERS = {
    "std": "a {size} {color} {shape} {pos}",
    "pos_first": "{pos} there's a {size} {color} {shape}",
    "shape_first": "{shape}, {color} and {size}, {pos}",
}
ENDINGS = {"plain": "", "tags": "#shapes #art", "pretty": "so pretty", "sparkle": "✨✨"}

Style = tuple[str, str, str]  # (opener, order, ending)


def _styles() -> tuple[dict[str, Style], dict[str, Style]]:
    names = [
        "ada",
        "bo",
        "cy",
        "dee",
        "eli",
        "fay",
        "gus",
        "hal",
        "ivy",
        "jo",
        "kai",
        "lu",
        "max",
        "nia",
        "oz",
        "pia",
    ]
    openers, orders, endings = list(OPENERS), list(ORDERS), list(ENDINGS)
    # i -> (i % 4, i % 3, i // 4): 16 distinct styles, every axis value used by several users.
    train = {n: (openers[i % 4], orders[i % 3], endings[i // 4]) for i, n in enumerate(names)}
    rest = [s for s in itertools.product(openers, orders, endings) if s not in train.values()]
    random.Random(7).shuffle(rest)
    held_out = dict(zip(["quinn", "rae", "sol", "tom"], rest[:4], strict=True))
    return train, held_out


TRAIN_USERS, HELD_OUT_USERS = _styles()
USERS: dict[str, Style] = {**TRAIN_USERS, **HELD_OUT_USERS}


def caption_as(user: str, scene: Scene) -> str:
    """`user`'s caption of a one-object `scene`."""
    if user not in USERS:
        raise Mmgpt2Error(f"unknown synthetic user {user!r}; known: {', '.join(USERS)}")
    if len(scene.objects) != 1:
        raise Mmgpt2Error("the users world captions one-object scenes only")
    opener, order, ending = USERS[user]
    o = scene.objects[0]
    body = ORDERS[order].format(size=o.size, color=o.color, shape=o.shape, pos=POSITION_PHRASES[o.position])
    return " ".join(x for x in (OPENERS[opener], body, ENDINGS[ending]) if x)


def _alt(words) -> str:
    return "(?:" + "|".join(re.escape(w) for w in words) + ")"


_SLOTS = {
    "size": _alt(SIZES),
    "color": _alt(COLORS),
    "shape": _alt(SHAPES),
    "pos": _alt(POSITION_PHRASES.values()),
}


def _compile(style: Style) -> re.Pattern:
    opener, order, ending = style
    body = re.escape(ORDERS[order])
    for slot, alt in _SLOTS.items():
        body = body.replace(re.escape("{" + slot + "}"), alt)
    parts = [re.escape(OPENERS[opener]), body, re.escape(ENDINGS[ending])]
    return re.compile(r"^" + r"\s+".join(p for p in parts if p) + r"$")


_PATTERNS = {style: _compile(style) for style in itertools.product(OPENERS, ORDERS, ENDINGS)}


def style_of(caption: str) -> Style | None:
    """The (opener, order, ending) whose template `caption` fully matches, or None.

    The rule-based style check: a caption is in user u's style iff ``style_of(caption) ==
    USERS[u]``. Whitespace is normalized first; anything else must match exactly.
    """
    text = " ".join(caption.split())
    for style, pattern in _PATTERNS.items():
        if pattern.match(text):
            return style
    return None


def in_style(caption: str, user: str) -> bool:
    return style_of(caption) == USERS[user]


def posts(user: str, n: int, seed: int) -> list[tuple[Scene, str]]:
    """`n` posts of `user`: their own random one-object scenes and their captions."""
    rng = random.Random(f"{user}-{seed}")
    scenes = [make_scene(rng, n_objects=1) for _ in range(n)]
    return [(s, caption_as(user, s)) for s in scenes]


def _random_caption(rng: random.Random) -> str:
    """A random one-object scene captioned in a random style (any combination, not only the users')."""
    scene = make_scene(rng, n_objects=1)
    opener, order, ending = rng.choice(list(_PATTERNS))
    o = scene.objects[0]
    body = ORDERS[order].format(size=o.size, color=o.color, shape=o.shape, pos=POSITION_PHRASES[o.position])
    return " ".join(x for x in (OPENERS[opener], body, ENDINGS[ending]) if x)


def text_corpus(n_scenes: int, seed: int) -> list[str]:
    """Captions of random scenes in every possible style (not only the users'): the LM's corpus.

    The frozen LM learns the language of the world, as GPT-2 learned the web's, without learning
    who writes which style.
    """
    rng = random.Random(seed)
    return [_random_caption(rng) for _ in range(n_scenes)]


def keyword_pairs(n_scenes: int, seed: int) -> list[tuple[str, str]]:
    """(the caption's words shuffled, partly dropped, + " :", caption) pairs for `train_tiny_gpt2(pairs=...)`.

    Without them the attribute words of a caption never depend on anything earlier in a document,
    the tiny LM learns to ignore its context, and no prefix can steer it (a real GPT-2 learned to
    copy from context on the web). The attribute words are always kept; opener, order and ending
    words only sometimes, so the LM learns to take style from context too when it is there.
    """
    rng = random.Random(seed)
    out = []
    attribute_words = (
        set(SHAPES) | set(COLORS) | set(SIZES) | {w for p in POSITION_PHRASES.values() for w in p.split()}
    )
    for _ in range(n_scenes):
        caption = _random_caption(rng)
        words = list(dict.fromkeys(caption.replace(",", "").split()))
        keep = [w for w in words if w in attribute_words or rng.random() < 0.7]
        rng.shuffle(keep)
        out.append((" ".join(keep) + " :", caption))
    return out


def write(out_dir: str | os.PathLike, n: int, seed: int = 0, size: int = 64) -> Path:
    """Write `n` posts per user (PNGs + ``captions.jsonl``); returns the jsonl path.

    Each line: ``{"image", "captions": [caption], "user", "held_out", "objects"}``.

    Example:
        >>> write("data/users", n=20, seed=0)  # doctest: +SKIP
        PosixPath('data/users/captions.jsonl')
    """
    out = shapes.world_folder(out_dir, n, "post per user")
    records = []
    for user in USERS:
        for i, (scene, cap) in enumerate(posts(user, n, seed)):
            name = f"{user}_{i:05d}.png"
            shapes.write_png(out / name, render(scene, size))
            record = {"image": name, "captions": [cap], "user": user, "held_out": user in HELD_OUT_USERS}
            records.append({**record, **scene.to_record()})
    return shapes.write_jsonl(out / "captions.jsonl", records)
