"""`UserStore`: the context words of every known user plus the TF-IDF model, saved as one JSON file.

A personalized captioner ships its store beside its weights, so a user id alone is enough at
inference, and the IDF is there to build contexts for users it has never seen.
"""

from __future__ import annotations

import codecs
import json
import os
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path

from mmgpt2.apps.personalized.context import MAX_CHARS_PER_POST, MAX_POSTS, UserContextModel
from mmgpt2.checkpoint import atomic_write_json
from mmgpt2.errors import Mmgpt2Error

STORE_FORMAT = "mmgpt2-user-store"


def read_history(path: str | os.PathLike, max_posts: int = MAX_POSTS) -> list[str]:
    """A user's past captions from a text file, one per line, blank lines skipped.

    Streams the file and keeps only the last `max_posts` non-blank lines (the most recent, when
    the file is in time order), each cut to `MAX_CHARS_PER_POST` characters, so memory stays
    bounded however long the file is. Undecodable bytes are replaced, not fatal.

    Example:
        >>> read_history("assets/examples/users/quinn.txt")[:2]
        ["omg on the left there's a large green square ✨✨", "omg in the center there's a large orange square ✨✨"]
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "no such history file"
        raise FileNotFoundError(f"{path}: {what} (expected a text file, one past caption per line)")
    encoding = _text_encoding(path)
    kept: deque[str] = deque(maxlen=max_posts)
    with open(path, encoding=encoding, errors="replace") as f:
        for line in f:
            line = line[:MAX_CHARS_PER_POST].strip()
            if line:
                kept.append(line)
    return list(kept)


#: Bytes of a history file looked at to tell text from binary data.
SNIFF_BYTES = 64 * 1024
#: Share of control characters (NUL, ESC, ...; not tabs or line breaks) allowed in a text file.
#: Text in any encoding has next to none; images, archives and random bytes have 5-50%.
MAX_CONTROL = 0.02


def _text_encoding(path: Path) -> str:
    """The encoding to read a history file with (UTF-8, or UTF-16/32 with a byte-order mark).

    Refuses binary data (an image, an archive, random bytes): its "words" would silently steer the
    captions. Undecodable bytes in text (a stray Latin-1 accent) are replaced, not fatal.
    """
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    encoding = "utf-8"
    for bom, name in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                      (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
                      (codecs.BOM_UTF8, "utf-8-sig")):  # fmt: skip
        if head.startswith(bom):
            encoding = name
            break
    text = head.decode(encoding, errors="replace")
    control = sum(1 for ch in text if (ch < " " and ch not in "\t\n\r\f\v") or ch == "\x7f")
    if text and control / len(text) > MAX_CONTROL:
        raise Mmgpt2Error(
            f"{path}: does not look like text ({control / len(text):.0%} of its first {len(head):,} bytes are "
            "control characters); give a text file (UTF-8), one past caption per line"
        )
    return encoding


class UserStore:
    """Context words by user id, plus the `UserContextModel` that made them.

    Example:
        >>> import os, tempfile
        >>> store = UserStore.build({"ann": ["red circle #art", "tiny red dot"], "bob": ["a blue square"]}, top_n=100)
        >>> store["ann"][:2]  # words bob never wrote rank first
        ['red', '#art']
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     store.save(os.path.join(tmp, "users.json"))
        ...     UserStore.load(os.path.join(tmp, "users.json")).users == store.users
        True
    """

    def __init__(self, model: UserContextModel, users: dict[str, list[str]] | None = None):
        self.model = model
        self.users: dict[str, list[str]] = dict(users or {})

    @classmethod
    def build(cls, posts_by_user: dict[str, Sequence[str]], top_n: int = 100) -> UserStore:
        """Fit the IDF over these users and store each user's context from all of their posts.

        These stored contexts are for captioning *new* images of the user; training examples must
        use `model.leave_one_out` so a caption never sees itself.
        """
        model = UserContextModel(top_n=top_n).fit(posts_by_user)
        return cls(model, {str(u): model.context(p) for u, p in posts_by_user.items()})

    def __contains__(self, user: object) -> bool:
        return user in self.users

    def __getitem__(self, user: str) -> list[str]:
        if user not in self.users:
            raise KeyError(self.unknown_user_message(user))
        return self.users[user]

    def __len__(self) -> int:
        return len(self.users)

    def ids(self) -> list[str]:
        return sorted(self.users)

    def unknown_user_message(self, user: str) -> str:
        known = self.ids()
        shown = ", ".join(known[:50]) + (f", ... ({len(known)} in all)" if len(known) > 50 else "")
        return (
            f"unknown user {user!r}; known users: {shown or 'none'}. For a new user pass their past "
            "captions (a list of strings) or context words instead of an id"
        )

    def add(self, user: str, posts: Iterable[str]) -> list[str]:
        """Compute and remember a (new) user's context from their posts."""
        self.users[str(user)] = self.model.context(posts)
        return self.users[str(user)]

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(
            path,
            {
                "format": STORE_FORMAT,
                "version": 1,
                "context_model": self.model.to_dict(),
                "users": self.users,
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> UserStore:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no user store file") from None
        except json.JSONDecodeError as err:
            raise Mmgpt2Error(f"{path}: user store is not valid JSON ({err})") from err
        if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
            raise Mmgpt2Error(f"{path}: not an mmgpt2 user store (missing format={STORE_FORMAT!r})")
        try:
            users = {str(u): [str(w) for w in ws] for u, ws in data.get("users", {}).items()}
            return cls(UserContextModel.from_dict(data["context_model"]), users)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise Mmgpt2Error(
                f"{path}: damaged user store ({type(err).__name__}: {err}); save the model again"
            ) from None
