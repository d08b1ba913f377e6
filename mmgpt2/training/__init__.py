"""Training the small trainable parts of any pipeline, resumably, on accelerate."""

from .config import TrainConfig
from .loop import train

__all__ = ["TrainConfig", "train"]
