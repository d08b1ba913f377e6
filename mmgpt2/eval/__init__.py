"""Evaluation: caption metrics (pycocoevalcap), dense video metrics, retrieval recall."""

from mmgpt2.eval.captions import METRICS, score_caption_groups, score_captions
from mmgpt2.eval.java import JavaMissingError, require_java

__all__ = ["METRICS", "JavaMissingError", "require_java", "score_caption_groups", "score_captions"]
