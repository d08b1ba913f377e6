"""Evaluation: caption metrics (pycocoevalcap), dense video metrics, retrieval recall."""

from .captions import METRICS, score_caption_groups, score_captions
from .java import JavaMissingError, require_java

__all__ = ["METRICS", "JavaMissingError", "require_java", "score_caption_groups", "score_captions"]
