"""Training examples for personalized captioning: (image features, caption, leave-one-out context)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from mmgpt2.apps.personalized.context import UserContextModel
from mmgpt2.data.datasets import FeatureDataset
from mmgpt2.errors import Mmgpt2Error


@dataclass
class UserPost:
    user: str
    image: str
    caption: str
    id: str = ""


def leave_one_out_contexts(posts: Sequence[UserPost], model: UserContextModel) -> list[list[str]]:
    """The context of each post's author computed from the author's OTHER posts in `posts`.

    Example:
        >>> posts = [UserPost("ann", "a.png", "wow a red dot #art"), UserPost("ann", "b.png", "wow so red"),
        ...          UserPost("bo", "c.png", "a blue box")]
        >>> texts = {"ann": [p.caption for p in posts[:2]], "bo": [posts[2].caption]}
        >>> leave_one_out_contexts(posts, UserContextModel().fit(texts))  # post i's context skips post i
        [['red', 'so', 'wow'], ['#art', 'dot', 'red', 'wow'], []]
    """
    by_user: dict[str, list[int]] = {}
    for i, p in enumerate(posts):
        by_user.setdefault(p.user, []).append(i)
    out: list[list[str]] = [[] for _ in posts]
    for idx in by_user.values():
        for i, ctx in zip(idx, model.leave_one_out([posts[i].caption for i in idx]), strict=True):
            out[i] = ctx
    return out


class PersonalizedFeatureDataset(FeatureDataset):
    """One example per post: cached image features, the caption, and the author's context words.

    Pass `contexts` from `leave_one_out_contexts` (training) or the user's stored context
    (new images of a known user). Posts whose image is not in the feature cache are dropped.
    """

    def __init__(
        self, posts: Sequence[UserPost], contexts: Sequence[Sequence[str]], store, use_tokens: bool = True
    ):
        if len(posts) != len(contexts):
            raise Mmgpt2Error(f"{len(posts)} posts but {len(contexts)} contexts")
        super().__init__(store, use_tokens)
        self.items = [
            (p.image, {"captions": p.caption.strip(), "context": " ".join(c)})
            for p, c in zip(posts, contexts, strict=True)
            if p.image in store and p.caption.strip()
        ]
        if len(self.items) < len(posts):
            warnings.warn(
                f"dropped {len(posts) - len(self.items)} posts with no cached image or an empty caption",
                stacklevel=2,
            )
        if not self.items:
            raise Mmgpt2Error("no training posts left (no image in the feature cache or every caption empty)")
