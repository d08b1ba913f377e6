"""User context for personalized captioning: TF-IDF context words and the store that keeps them."""

from .context import MAX_CHARS_PER_POST, MAX_POSTS, UserContextModel, count_words, words
from .dataset import PersonalizedFeatureDataset, UserPost, leave_one_out_contexts
from .store import UserStore, read_history

__all__ = [
    "MAX_CHARS_PER_POST",
    "MAX_POSTS",
    "PersonalizedFeatureDataset",
    "UserContextModel",
    "UserPost",
    "UserStore",
    "count_words",
    "leave_one_out_contexts",
    "read_history",
    "words",
]
