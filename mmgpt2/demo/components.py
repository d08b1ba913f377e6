"""Image inputs whose bad uploads give a clear message in the page.

`gr.Image` opens the upload with Pillow before the handler runs; a corrupt or non-image file then
fails inside Gradio with a bare "Error". `checked_image` gives a stock `gr.Image` whose
preprocessing turns that failure into a `gr.Error` naming the file. (A subclass would be neater,
but the browser picks the widget by class name, and a subclass gets no widget.)
"""

from __future__ import annotations

import types
from typing import Any

import gradio as gr
from PIL import Image


def _checked_preprocess(self: gr.Image, payload: Any) -> Any:
    try:
        return gr.Image.preprocess(self, payload)
    except gr.Error:
        raise
    except Image.DecompressionBombError as err:  # not an OSError: it would reach the page as a bare "Error"
        name = getattr(payload, "orig_name", None) or "the upload"
        raise gr.Error(
            f"{name}: refused as a possible decompression bomb (more pixels than this demo decodes); "
            "downscale it first",
            title="Image too large",
            print_exception=False,
        ) from err
    except (OSError, ValueError, SyntaxError) as err:  # PIL's UnidentifiedImageError is an OSError
        name = getattr(payload, "orig_name", None) or "the upload"
        raise gr.Error(
            f"{name}: not an image this demo can read ({type(err).__name__}); upload a PNG, JPEG or WebP picture",
            title="Cannot read this image",
            print_exception=False,
        ) from err


def checked_image(**kwargs: Any) -> gr.Image:
    """`gr.Image(type="filepath", image_mode=None, **kwargs)` with a clear error for unreadable uploads.

    ``image_mode=None``: Gradio only reads the header and hands over the file as uploaded; the
    handler opens it with `mmgpt2.images.load_image` (decompression-bomb guard, every mode).

    Example:
        >>> with gr.Blocks():
        ...     image = checked_image(label="Image")
    """
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    # Bound to the instance (a deep copy of the component rebinds to the copy).
    image.preprocess = types.MethodType(_checked_preprocess, image)
    return image
