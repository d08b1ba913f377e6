"""Imports every application so `load_pipeline` knows each saved model type."""

from . import captioner, medical, personalized  # noqa: F401
from .video import captioner as video_captioner  # noqa: F401
