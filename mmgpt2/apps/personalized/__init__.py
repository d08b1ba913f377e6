"""Personalized captioning (User-Aware Prefix-Tuning): everything that is only its own.

Modules, in data-flow order: `context` (a user's TF-IDF context words), `store` (every known user's
context, saved with the model), `attend2u` (the Attend2u Instagram / YFCC100M readers), `dataset`
(training examples), `query_guided` (the mapper over patch tokens), `fusion` (merges the visual
prefix with the user's words) and `model` (`PersonalizedCaptioner`).

Example:
    >>> from mmgpt2.apps.personalized import PersonalizedCaptioner
    >>> PersonalizedCaptioner.from_pretrained("shapes-users-tiny").users[:2]
    ['ada', 'bo']
"""

from __future__ import annotations

from mmgpt2.registry import lazy_module

_EXPORTS = {
    "PersonalizedCaptioner": "mmgpt2.apps.personalized.model:PersonalizedCaptioner",
    "PersonalizedCaptionerConfig": "mmgpt2.apps.personalized.model:PersonalizedCaptionerConfig",
    "UserContextModel": "mmgpt2.apps.personalized.context:UserContextModel",
    "MAX_CHARS_PER_POST": "mmgpt2.apps.personalized.context:MAX_CHARS_PER_POST",
    "MAX_POSTS": "mmgpt2.apps.personalized.context:MAX_POSTS",
    "count_words": "mmgpt2.apps.personalized.context:count_words",
    "words": "mmgpt2.apps.personalized.context:words",
    "UserStore": "mmgpt2.apps.personalized.store:UserStore",
    "read_history": "mmgpt2.apps.personalized.store:read_history",
    "UserPost": "mmgpt2.apps.personalized.dataset:UserPost",
    "PersonalizedFeatureDataset": "mmgpt2.apps.personalized.dataset:PersonalizedFeatureDataset",
    "leave_one_out_contexts": "mmgpt2.apps.personalized.dataset:leave_one_out_contexts",
    "QueryGuidedMapper": "mmgpt2.apps.personalized.query_guided:QueryGuidedMapper",
    "FusionTransformer": "mmgpt2.apps.personalized.fusion:FusionTransformer",
}

__getattr__ = lazy_module(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
