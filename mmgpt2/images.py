"""Opening user images safely: clear errors that name the file, bombs refused, every mode to RGB."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mmgpt2.errors import Mmgpt2Error

#: Pixels above this are refused (Pillow's own guard is only a warning below 2x its limit).
MAX_PIXELS = 12_000 * 12_000


class ImageError(Mmgpt2Error):
    """An input image that cannot be used; the message names the file and the reason."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode (L, LA, P, RGBA, I;16, I, F, CMYK) -> 8-bit RGB; alpha is composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        image = Image.fromarray(arr.astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | os.PathLike | Image.Image, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open `path` as an RGB image, or raise `ImageError` naming the file and what is wrong.

    Example:
        >>> load_image("assets/examples/shapes_0.png").mode
        'RGB'
    """
    if isinstance(path, Image.Image):
        return to_rgb(path)
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    try:
        with Image.open(path) as image:
            w, h = image.size
            if w * h > max_pixels:
                raise ImageError(
                    f"{path}: {w}x{h} is {w * h / 1e6:.0f} megapixels, over the {max_pixels / 1e6:.0f} MP limit "
                    "(a decompression-bomb guard); downscale it first"
                )
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image.load()
            return to_rgb(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(
            f"{path}: refused as a possible decompression bomb ({err}); downscale it first"
        ) from err
    except UnidentifiedImageError as err:
        raise ImageError(f"{path}: not an image Pillow can read ({path.suffix or 'no extension'})") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: corrupt or truncated image ({err})") from err


def iter_images(paths: Iterable[str | os.PathLike]) -> Iterator[tuple[str, Image.Image | None, str | None]]:
    """Yield ``(path, image, None)`` or ``(path, None, reason)``: one bad file never stops a batch."""
    for p in paths:
        try:
            yield str(p), load_image(p), None
        except ImageError as err:
            yield str(p), None, str(err)
