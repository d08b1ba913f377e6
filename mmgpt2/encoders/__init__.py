"""Frozen vision(-text) encoders behind one interface and one factory."""

from mmgpt2.encoders.base import VisionEncoder
from mmgpt2.encoders.factory import SPEC_HELP, load_encoder

__all__ = ["VisionEncoder", "load_encoder", "SPEC_HELP"]
