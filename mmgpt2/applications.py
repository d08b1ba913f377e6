"""Imports every application so `load_pipeline` knows each saved model type."""

from . import captioner  # noqa: F401
