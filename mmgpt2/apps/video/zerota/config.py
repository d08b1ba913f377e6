"""ZeroTA's settings (`ZeroTAConfig`) and what it returns (`Event`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmgpt2.config import Config
from mmgpt2.errors import ConfigError

_AT_LEAST_0 = {"min": 0}
_AT_LEAST_1 = {"min": 1}
_POSITIVE = {"min": 1e-6}


@dataclass
class ZeroTAConfig(Config):
    """Settings of the test-time optimisation (defaults tuned on the embedded shapes models).

    Example:
        >>> ZeroTAConfig(events=4, steps=40, hard_prompt="A video of").events
        4
        >>> ZeroTAConfig.from_dict({"events": 0})
        Traceback (most recent call last):
        ...
        mmgpt2.errors.ConfigError: ZeroTAConfig.events=0: must be >= 1
    """

    events: int = field(default=3, metadata=_AT_LEAST_1)
    steps: int = field(default=4, metadata=_AT_LEAST_0)
    # context: [soft prompt | projected moment | BOS + hard prompt]
    soft_prompt_init: str = "a picture of"
    moment_tokens: int = field(default=2, metadata=_AT_LEAST_1)
    hard_prompt: str = ""
    bos: bool = True
    # Soft prompt and moment tokens all at position 0 (with BOS), so the caption keeps the positions
    # GPT-2 saw in pretraining; the tiny embedded GPT-2 only ever saw text right after a BOS at 0.
    shared_prefix_position: bool = True
    prompt_in_caption: bool = True
    # candidates
    samples_per_event: int = field(default=3, metadata=_AT_LEAST_0)
    guided_top_k: int = field(default=8, metadata=_AT_LEAST_1)
    guided_clip_weight: float = field(default=1.0, metadata=_AT_LEAST_0)
    # proposals GPT-2 gives less than this probability never win, and where only its first one is
    # left CLIP is not asked (no endings written): fewer rollouts, placed where the LM hesitates
    guided_min_prob: float = field(default=0.01, metadata={"min": 0.0, "max": 1.0})
    # CLIP judges each token GPT-2 proposes by the caption GPT-2 finishes greedily after it
    lookahead: bool = True
    # endings per proposal: the greedy one plus (n - 1) sampled ones; the best-matching counts
    lookahead_rollouts: int = field(default=2, metadata=_AT_LEAST_0)
    # speed (see benchmarks/zerota.py): all rollouts of a token step in one batch that starts from
    # the KV cache of the pass that proposed the tokens; every CLIP text embedded once per video
    shared_rollouts: bool = True
    text_cache: bool = True
    # stop optimising once every event's guided caption has stayed the same for this many
    # regenerations in a row and no segment edge moved more than 1% of the video meanwhile (0: never)
    patience: int = field(default=0, metadata=_AT_LEAST_0)
    # after the final choice, passes of word-by-word edits: at each position GPT-2 proposes its
    # top-k tokens and CLIP judges the whole edited caption (0 disables)
    refine_passes: int = field(default=2, metadata=_AT_LEAST_0)
    # each pass ends with two-word edits, this many per position and per caption (0: none); see
    # `mmgpt2.lm.guided.refine`. The LM judges edits by the caption's words alone (no prefix): the
    # prefix is a rough fit of the moment after a few steps, and CLIP judges what the words say.
    refine_pairs: int = field(default=2, metadata=_AT_LEAST_0)
    # how many of each event's best candidates (by the final choice's score) are refined
    refine_candidates: int = field(default=2, metadata=_AT_LEAST_0)
    refine_clip_weight: float = field(default=2.0, metadata=_AT_LEAST_0)
    regenerate_every: int = field(default=4, metadata=_AT_LEAST_1)
    max_new_tokens: int = field(default=14, metadata=_AT_LEAST_1)
    sample_top_k: int = field(default=20, metadata=_AT_LEAST_0)
    sample_temperature: float = field(default=1.0, metadata=_POSITIVE)
    final_samples: int = field(default=12, metadata=_AT_LEAST_0)
    # final choice among an event's candidates: CLIP cosine + this x mean token log-prob under the
    # unprefixed LM (prefers fluent text when CLIP hesitates between close candidates)
    fluency_weight: float = field(default=0.05, metadata=_AT_LEAST_0)
    # optimisation
    lr_mask: float = field(default=0.08, metadata=_AT_LEAST_0)
    lr_prefix: float = field(default=0.02, metadata=_AT_LEAST_0)
    sharpness: tuple[float, float] = (15.0, 120.0)
    clip_temperature: float = field(default=0.02, metadata=_POSITIVE)
    w_match: float = field(default=1.0, metadata=_AT_LEAST_0)
    w_distill: float = field(default=1.0, metadata=_AT_LEAST_0)
    w_language: float = field(default=1.0, metadata=_AT_LEAST_0)
    w_iou: float = field(default=2.0, metadata=_AT_LEAST_0)
    w_coverage: float = field(default=1.0, metadata=_AT_LEAST_0)
    # projection initialisation
    projection_vocab: int = field(default=4000, metadata={"min": 8})
    projection_ridge: float = field(default=0.05, metadata=_AT_LEAST_0)
    # post-processing
    nms_tiou: float = field(default=0.6, metadata={"min": 0.0, "max": 1.0})
    merge_same_caption: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.sharpness, list):  # JSON has no tuples
            self.sharpness = tuple(self.sharpness)
        super().__post_init__()
        if len(self.sharpness) != 2 or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in self.sharpness
        ):
            raise ConfigError(
                f"ZeroTAConfig.sharpness={list(self.sharpness)!r}: must be two positive numbers [start, end]"
            )


@dataclass
class Event:
    """One captioned event: `start`/`end` in seconds and the caption's CLIP `score` (cosine).

    Example:
        >>> Event("a red circle", 0.0, 4.25, 0.31).to_activitynet()["timestamp"]
        [0.0, 4.25]
    """

    sentence: str
    start: float
    end: float
    score: float

    def to_activitynet(self) -> dict:
        return {
            "sentence": self.sentence,
            "timestamp": [round(self.start, 3), round(self.end, 3)],
            "score": self.score,
        }
