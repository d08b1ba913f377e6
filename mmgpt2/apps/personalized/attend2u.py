"""Readers for the Attend2u personalized captioning data (Park et al. 2017), in the layout it ships in.

Instagram (``insta-caption-{train,test1,test2}.json``)::

    {user: {post_id: {"caption": str | [tokens], "tags": [tags] | "space separated tags"}}}

with images ``images/{user}_@_{post_id}`` (no extension). YFCC100M (``yfcc-caption-{train,test}.json``;
one test split, no test1/test2)::

    {user_id: [{"title", "description", "user tags", "page url", ...}, ...]}

with values URL-encoded as in YFCC100M, the post id the photo id at the end of ``page url``
(``http://www.flickr.com/photos/<user>/<photo_id>/``), and images ``images/{user_id}_{photo_id}``.

Text is normalised as Attend2u's own preprocessing does before training and scoring
(``scripts/generate_dataset.py`` and ``generate_yfcc_dataset.py``), so scores sit next to its tables:

- Instagram (`normalize_instagram`): lowercase; every ``@mention`` becomes ``@username``; ``#`` and
  ``@`` start new tokens; ``! ? , . "`` are dropped; ``_`` becomes ``-`` and a lone ``-`` is
  dropped; emoji stay, each its own token; any other symbol separates tokens. (Attend2u's
  Python 2 code wrote emoji as escape codes and broke non-ASCII letters into escape fragments;
  here both stay the characters they are.)
- YFCC100M (`normalize_yfcc`): URL-decoded (``unquote_plus``), links and HTML dropped, lowercase,
  punctuation and emoji dropped, accents folded to ASCII (letters with no ASCII base, e.g. CJK, are
  dropped; Attend2u transliterated them with ``unidecode``), every number becomes ``0`` and a number
  standing alone is dropped, ``_`` becomes ``-``. The caption is the title when it has 3-20
  tokens, else the description when it has 3-20, else the title (`yfcc_caption`), as in Attend2u;
  a title that is only a camera file name (``IMG_0520``, ``DSC01234.JPG``) counts as no title.

Splits follow Attend2u: **test1** holds every post of users never seen in training (unseen users),
**test2** holds held-out posts of training users (unseen posts); YFCC's **test** may hold either.
`load_attend2u_splits` reads the shipped files and makes sure no post id or image of a test split
is also trained on; `split_posts` cuts your own splits reproducibly.
"""

from __future__ import annotations

import os
import random
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote_plus, urlparse

from mmgpt2.apps.personalized.dataset import UserPost
from mmgpt2.data.records import read_json
from mmgpt2.errors import Mmgpt2Error

#: Where Attend2u keeps each dataset's image, relative to the images folder.
IMAGE_PATTERNS = {"instagram": "{user}_@_{post}", "yfcc": "{user}_{post}"}
#: The split files each dataset ships with (Attend2u's ``json/`` folder).
SPLIT_FILES = {
    "instagram": {
        "train": "insta-caption-train.json",
        "test1": "insta-caption-test1.json",
        "test2": "insta-caption-test2.json",
    },
    "yfcc": {"train": "yfcc-caption-train.json", "test": "yfcc-caption-test.json"},
}
#: Tried after the bare name, for copies whose images were saved with an extension.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
#: Attend2u's YFCC rule: a title or description is a caption when it has this many tokens.
YFCC_CAPTION_TOKENS = (3, 20)

_HTML = re.compile(r"<[^>]+>")
_URL = re.compile(r"(?i)\b((?:https?://|www\d{0,3}[.]|[a-z0-9.\-]+[.][a-z]{2,4}/)(?:[^\s()<>\"']+))")
_HREF = re.compile(r"<a href=\"(.*?)\".*?>(.*?)</a>", re.IGNORECASE)
_EMOJI = re.compile("([\u2600-\u27bf\U0001f300-\U0001faff\U0001f000-\U0001f2ff])")
_CAMERA_NAME = re.compile(
    r"^\s*(img|dsc|dscf|dscn|dsci|_dsc|_mg|imgp|pict|p|sam|cimg|dcp|hpim|mvc|dji|gopr|photo|image|picture)"
    r"[\s_\-]*\d+[a-z]?(\.(jpe?g|png|tiff?|raw|cr2|nef))?\s*$",
    re.IGNORECASE,
)


def _joined(text) -> str:
    """Attend2u stores some captions as token lists."""
    if isinstance(text, (list, tuple)):
        return " ".join(str(t) for t in text)
    return "" if text is None else str(text)


def normalize_instagram(text: str | Sequence[str]) -> str:
    """An Instagram caption as Attend2u tokenizes it (see the module docstring), tokens joined by spaces.

    Example:
        >>> normalize_instagram("Sunset w/ @Jo_Doe!! #beach ☀️")
        'sunset w @username #beach ☀'
    """
    text = _HTML.sub(" ", _joined(text))
    text = text.replace("#", " #").replace("@", " @").replace("\n", " ").lower()
    text = re.sub(r"@[a-z0-9._]+", "@username", text)
    text = _EMOJI.sub(r" \1 ", text)
    text = re.sub(r"[-_]", "-", text)
    text = re.sub(r"[!?,.\"]", " ", text)
    text = re.sub(r"(?<![^\W_])-(?![^\W_])", " ", text)  # a '-' with no letter or digit beside it
    text = re.sub(r"[^\w#@'\-\u2600-\u27bf\U0001f300-\U0001faff\U0001f000-\U0001f2ff]+", " ", text)
    return " ".join(text.split())


def _ascii_fold(text: str) -> str:
    """Accented letters to their ASCII base (Attend2u ran `unidecode`); other non-ASCII is dropped."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def normalize_yfcc(text: str | Sequence[str]) -> str:
    """A YFCC100M title or description as Attend2u tokenizes it (see the module docstring).

    Example:
        >>> normalize_yfcc("Sunset+at+Mallory+Square%2C+Key+West+2010")
        'sunset at mallory square key west'
    """
    text = unquote_plus(_joined(text))
    text = _URL.sub("", _HREF.sub("", text))
    text = _HTML.sub(" ", text)
    text = re.sub(r"[\[\]+)(~=]", " ", text).lower()
    text = re.sub(r"[.*,!?\"@#'|:;)(]", "", text)
    text = _ascii_fold(_EMOJI.sub(" ", text))
    text = re.sub(r"[\\/]", "", text)
    text = re.sub(r"\d+", "0", text)
    text = re.sub(r"(?<![a-z])0(?![a-z])", "", text)
    text = re.sub(r"[-_]", "-", text)
    text = re.sub(r"(?<![a-z0-9])-(?![a-z0-9])", "", text)
    return " ".join(text.split())


def yfcc_caption(title: str, description: str) -> str:
    """Attend2u's choice: the title with 3-20 tokens, else the description with 3-20, else the title.

    Both are raw YFCC100M values; a title that is only a camera file name counts as empty.

    Example:
        >>> yfcc_caption("IMG_0520", "Our+dog+on+the+beach")
        'our dog on the beach'
    """
    low, high = YFCC_CAPTION_TOKENS
    raw_title = unquote_plus(_joined(title))
    title = "" if _CAMERA_NAME.match(raw_title) else normalize_yfcc(raw_title)
    description = normalize_yfcc(description)
    if low <= len(title.split()) <= high:
        return title
    if low <= len(description.split()) <= high:
        return description
    return title


def yfcc_photo_id(page_url: str) -> str:
    """The photo id at the end of a Flickr ``page url`` (``.../photos/<user>/<photo_id>/``).

    Example:
        >>> yfcc_photo_id("http://www.flickr.com/photos/35468147630%40N01/4420523880/")
        '4420523880'
    """
    parts = [p for p in urlparse(unquote_plus(str(page_url))).path.split("/") if p]
    return parts[-1] if parts else ""


def _load_json(path: str | os.PathLike, what: str) -> dict:
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise Mmgpt2Error(f"{path}: expected a JSON object keyed by user id, got {type(data).__name__}")
    return data


class ImageFolder:
    """Finds post images by name in one folder, listed once (a million stat calls would be slow).

    A name is found as is (Attend2u's images have no extension) or with a common image suffix.
    """

    def __init__(self, folder: str | os.PathLike | None):
        self.folder = Path(folder) if folder else None
        self.names: set[str] = set()
        if self.folder is not None and self.folder.is_dir():
            with os.scandir(self.folder) as entries:
                self.names = {e.name for e in entries}

    def path(self, name: str) -> str:
        """The image's path; a file that is not there keeps the bare name (reported later as missing)."""
        if self.folder is None:
            return name
        for candidate in (name, *(name + s for s in IMAGE_SUFFIXES)):
            if candidate in self.names:
                return str(self.folder / candidate)
        return str(self.folder / name)

    def __contains__(self, path: str) -> bool:
        return Path(path).name in self.names


def _as_folder(image_dir) -> ImageFolder:
    return image_dir if isinstance(image_dir, ImageFolder) else ImageFolder(image_dir)


def _tags(value) -> list[str]:
    """Tags as a list; a string holds them separated by spaces (or commas)."""
    if isinstance(value, str):
        value = re.split(r"[\s,]+", value)
    return [str(t).strip().lstrip("#") for t in value or [] if str(t).strip().lstrip("#")]


def read_instagram(
    path: str | os.PathLike,
    image_dir: str | os.PathLike | ImageFolder | None = None,
    image_pattern: str = IMAGE_PATTERNS["instagram"],
    with_tags: bool = False,
) -> list[UserPost]:
    """Posts of an Attend2u Instagram JSON file, captions normalised; `with_tags` appends the hashtags.

    Example:
        >>> posts = read_instagram("json/insta-caption-train.json", image_dir="images")  # doctest: +SKIP
        >>> posts[0].id, posts[0].image, posts[0].caption  # doctest: +SKIP
        ('1000235325480011', 'images/kozzie_@_1000235325480011', 'my new bike #ride')
    """
    data = _load_json(path, "Attend2u Instagram JSON")
    folder = _as_folder(image_dir)
    out = []
    for user, user_posts in data.items():
        if not isinstance(user_posts, dict):
            raise Mmgpt2Error(
                f"{path}: user {user!r} maps to {type(user_posts).__name__}, expected {{post_id: {{...}}}} "
                "(is this a YFCC100M file? use --kind yfcc)"
            )
        for post, item in user_posts.items():
            item = item if isinstance(item, dict) else {"caption": item}
            caption = _joined(item.get("caption"))
            if with_tags:
                caption = " ".join([caption] + ["#" + t for t in _tags(item.get("tags"))])
            image = folder.path(image_pattern.format(user=user, post=post))
            out.append(UserPost(str(user), image, normalize_instagram(caption), str(post)))
    return out


def read_yfcc(
    path: str | os.PathLike,
    image_dir: str | os.PathLike | ImageFolder | None = None,
    image_pattern: str = IMAGE_PATTERNS["yfcc"],
) -> list[UserPost]:
    """Posts of an Attend2u YFCC100M JSON file: id from ``page url``, caption by Attend2u's rule.

    Example:
        >>> posts = read_yfcc("json/yfcc-caption-test.json", image_dir="images")  # doctest: +SKIP
        >>> posts[0].id, posts[0].image  # doctest: +SKIP
        ('4420523880', 'images/35468147630@N01_4420523880')
    """
    data = _load_json(path, "Attend2u YFCC100M JSON")
    folder = _as_folder(image_dir)
    out = []
    for user, items in data.items():
        if not isinstance(items, list):
            raise Mmgpt2Error(
                f"{path}: user {user!r} maps to {type(items).__name__}, expected a list of photos "
                "(is this an Instagram file? use --kind instagram)"
            )
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not item.get("page url"):
                raise Mmgpt2Error(
                    f"{path}: user {user!r} photo {i} has no 'page url' (YFCC100M posts are objects with "
                    "'title', 'description', 'user tags' and 'page url')"
                )
            post = yfcc_photo_id(item["page url"])
            caption = yfcc_caption(item.get("title", ""), item.get("description", ""))
            image = folder.path(image_pattern.format(user=user, post=post))
            out.append(UserPost(str(user), image, caption, post))
    return out


def split_posts(
    posts: Sequence[UserPost], test1_users: float = 0.1, test2_posts: float = 0.1, seed: int = 0
) -> dict[str, list[UserPost]]:
    """Attend2u-style splits: ``train``, ``test1`` (unseen users), ``test2`` (unseen posts of train users).

    Deterministic for a seed. Each training user keeps at least one training post.

    Example:
        >>> from mmgpt2.apps.personalized.dataset import UserPost
        >>> posts = [UserPost(f"u{u}", f"u{u}_{i}.jpg", "a caption", f"{u}-{i}") for u in range(10) for i in range(10)]
        >>> splits = split_posts(posts, test1_users=0.1, test2_posts=0.1)
        >>> {k: len(v) for k, v in splits.items()}  # 1 of 10 users unseen; 1 in 10 of the others' posts held out
        {'train': 81, 'test1': 10, 'test2': 9}
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
    report: dict | None = None,
    **kwargs,
) -> dict[str, list[UserPost]]:
    """Read the shipped split files, e.g. ``{"train": ..., "test1": ..., "test2": ...}``, and check them.

    Raises if a test1 user also appears in train (test1 must be unseen users) or a test2 user does
    not (test2 must be unseen posts of known users). A post repeated inside a split is kept once;
    a training post whose id or image is also in a test split is dropped from training (the test
    split stays as published). What was dropped is listed in `report` when one is given.

    Example:
        >>> splits = load_attend2u_splits({"train": "json/yfcc-caption-train.json",  # doctest: +SKIP
        ...                                "test": "json/yfcc-caption-test.json"}, kind="yfcc", image_dir="images")
    """
    reader = {"instagram": read_instagram, "yfcc": read_yfcc}.get(kind)
    if reader is None:
        raise Mmgpt2Error(f"unknown Attend2u kind {kind!r}; use 'instagram' or 'yfcc'")
    folder = ImageFolder(image_dir) if image_dir else None
    splits = {name: _unique(reader(path, image_dir=folder, **kwargs)) for name, path in files.items()}
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
        tested = [p for name, posts in splits.items() if name != "train" for p in posts]
        test_ids, test_images = {p.id for p in tested}, {p.image for p in tested}
        shared = [p for p in splits["train"] if p.id in test_ids or p.image in test_images]
        if shared:
            splits["train"] = [
                p for p in splits["train"] if p.id not in test_ids and p.image not in test_images
            ]
        if report is not None:
            report["dropped_from_train"] = [p.id for p in shared]
    return splits


def _unique(posts: list[UserPost]) -> list[UserPost]:
    """One post per (user, id): a post listed twice would be trained or scored twice."""
    seen: set[tuple[str, str]] = set()
    out = []
    for p in posts:
        if (p.user, p.id) not in seen:
            seen.add((p.user, p.id))
            out.append(p)
    return out


def posts_by_user(posts: Sequence[UserPost]) -> dict[str, list[str]]:
    """Captions grouped by user, in input order (the input of `UserStore.build` / IDF fitting)."""
    out: dict[str, list[str]] = {}
    for p in posts:
        out.setdefault(p.user, []).append(p.caption)
    return out
