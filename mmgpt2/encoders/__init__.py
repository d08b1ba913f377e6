"""Frozen vision(-text) encoders behind one interface and one factory."""

from .base import VisionEncoder
from .factory import SPEC_HELP, load_encoder

__all__ = ["VisionEncoder", "load_encoder", "SPEC_HELP"]
