"""Training the small trainable parts of any pipeline, resumably, on accelerate."""

from mmgpt2.training.config import TrainConfig
from mmgpt2.training.loop import train
from mmgpt2.training.state import ResumeError

__all__ = ["ResumeError", "TrainConfig", "train"]
