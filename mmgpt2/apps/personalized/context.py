"""A user's prior-knowledge words: TF-IDF over their OTHER posts, IDF fit over the training users.

Attend2u (Park et al. 2017) and UAPT describe a user by the top-100 TF-IDF words of their posts.
Attend2u's published contexts were computed over *all* of a user's posts, the captioned one
included, which leaks the target caption into the input. Here a context is always computed from
an explicit list of posts, and `leave_one_out` builds the context of each post from the others.

Each training user is one document for the IDF (a word every user writes, such as "the", gets
weight 0); TF is the word's count in the user's posts.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mmgpt2.errors import Mmgpt2Error

#: Words are unicode letters/digits (with inner apostrophes), optionally a hashtag or mention;
#: emoji and pictographs are kept as single-symbol words because on Instagram they carry style.
_WORD = re.compile(r"[#@]?\w+(?:['’]\w+)*|[\U0001F000-\U0001FAFF\u2600-\u27BF]", re.UNICODE)

#: Bounds that keep a context computable in bounded time and memory whatever the history size.
MAX_POSTS = 10_000
MAX_CHARS_PER_POST = 2_000


def words(text: str, max_chars: int = MAX_CHARS_PER_POST) -> list[str]:
    """Lower-cased words of one post (first `max_chars` characters only).

    Example:
        >>> words("Sunny day at the beach #Summer ☀️")
        ['sunny', 'day', 'at', 'the', 'beach', '#summer', '☀']
    """
    return _WORD.findall(text[:max_chars].lower())


def count_words(posts: Iterable[str], max_posts: int = MAX_POSTS) -> Counter:
    """Word counts over at most `max_posts` posts (the first ones given)."""
    counts: Counter = Counter()
    for i, post in enumerate(posts):
        if i >= max_posts:
            break
        counts.update(words(post))
    return counts


@dataclass
class UserContextModel:
    """TF-IDF ranking of a user's words; `fit` on the training users, then `context(posts)`.

    Example:
        >>> model = UserContextModel(top_n=3).fit({"ann": ["red circle #art"], "bob": ["a blue square"]})
        >>> model.context(["my red circle #art", "red again"])  # words no training user wrote rank high
        ['again', 'my', 'red']
    """

    top_n: int = 100
    idf: dict[str, float] = field(default_factory=dict)
    num_users: int = 0

    def fit(self, users: dict[str, Sequence[str]], max_posts: int = MAX_POSTS) -> UserContextModel:
        """Document frequencies over users (each user's posts are one document)."""
        df: Counter = Counter()
        for posts in users.values():
            df.update(set(count_words(posts, max_posts)))
        self.num_users = len(users)
        n = self.num_users
        # Smoothed so a word every training user writes scores 0 and an unseen word scores highest.
        self.idf = {w: math.log((1 + n) / (1 + c)) for w, c in df.items()}
        return self

    def idf_of(self, word: str) -> float:
        return self.idf.get(word, math.log(1 + self.num_users))

    def rank(self, counts: Counter, top_n: int | None = None) -> list[str]:
        """Top words of a word-count table by tf * idf (ties by word, so results are deterministic)."""
        n = self.top_n if top_n is None else top_n
        scored = [(c * self.idf_of(w), w) for w, c in counts.items() if c > 0]
        scored = [(s, w) for s, w in scored if s > 0]
        scored.sort(key=lambda sw: (-sw[0], sw[1]))
        return [w for _, w in scored[:n]]

    def context(
        self, posts: Iterable[str], top_n: int | None = None, max_posts: int = MAX_POSTS
    ) -> list[str]:
        """Context words of a user from the posts given (pass only posts other than the captioned one)."""
        if not self.num_users:
            raise Mmgpt2Error("UserContextModel is not fitted: call fit(training_users) or load a user store")
        return self.rank(count_words(posts, max_posts), top_n)

    def leave_one_out(self, posts: Sequence[str], top_n: int | None = None) -> list[list[str]]:
        """For each post i, the context of the user computed from every post except i.

        One count over all posts, then each post's own words are subtracted: O(posts x vocabulary).
        """
        posts = list(posts)[:MAX_POSTS]
        per_post = [Counter(words(p)) for p in posts]
        total: Counter = Counter()
        for c in per_post:
            total.update(c)
        out = []
        for c in per_post:
            rest = total.copy()
            rest.subtract(c)
            out.append(self.rank(rest, top_n))
        return out

    def to_dict(self) -> dict:
        return {"top_n": self.top_n, "num_users": self.num_users, "idf": self.idf}

    @classmethod
    def from_dict(cls, data: dict) -> UserContextModel:
        return cls(
            top_n=int(data["top_n"]),
            idf={str(k): float(v) for k, v in data["idf"].items()},
            num_users=int(data["num_users"]),
        )
