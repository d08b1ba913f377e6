"""Opening user images safely: clear errors that name the file, bombs refused, every mode to RGB,
the pixels as a viewer shows them (EXIF orientation, colour profile, transparency on white)."""

from __future__ import annotations

import functools
import io
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from mmgpt2.errors import Mmgpt2Error

#: Pixels above this are refused (Pillow's own guard is only a warning below 2x its limit).
MAX_PIXELS = 12_000 * 12_000


class ImageError(Mmgpt2Error):
    """An input image that cannot be used; the message names the file and the reason."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB as a viewer shows it; transparency is composited on white.

    16-bit and float grayscale is stretched to its own range (sensor and X-ray images rarely fill
    the full 16 bits, and would otherwise look black). Palette transparency, ``tRNS`` keys and
    premultiplied alpha (``La``, ``RGBa``) are honoured.
    """
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        image = Image.fromarray(arr.astype(np.uint8))
    if image.mode == "La":  # Pillow converts premultiplied gray only to LA
        image = image.convert("LA")
    if image.mode in ("P", "PA", "RGBa") or "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _as_displayed(image: Image.Image) -> Image.Image:
    """Apply what a viewer applies before showing the pixels: the EXIF orientation (a phone photo
    is stored sideways with a tag saying so) and an embedded colour profile (converted to sRGB).
    A broken tag or profile is ignored, as viewers do."""
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - malformed EXIF: show the pixels as stored
        pass
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "CMYK"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            image = ImageCms.profileToProfile(image, source, _srgb(), outputMode="RGB")
        except Exception:  # noqa: BLE001 - an unusable profile: fall back to Pillow's conversion
            pass
    return image


@functools.lru_cache(maxsize=1)
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


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
        with warnings.catch_warnings():
            # Pillow warns from 89 MP at open; our own limit (checked next) is the rule that applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            w, h = image.size
            if w * h > max_pixels:
                raise ImageError(
                    f"{path}: {w}x{h} is {w * h / 1e6:.0f} megapixels, over the {max_pixels / 1e6:.0f} MP limit "
                    "(a decompression-bomb guard); downscale it first"
                )
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image.load()
            return to_rgb(_as_displayed(image))
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        claim = f"its header claims {int(pixels[1]) / 1e6:,.0f} megapixels" if pixels else str(err)
        raise ImageError(
            f"{path}: refused as a possible decompression bomb ({claim}, over the {max_pixels / 1e6:.0f} MP limit); "
            "downscale it first"
        ) from err
    except PermissionError as err:
        raise ImageError(f"{path}: cannot be read (permission denied)") from err
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


def image_batches(
    paths: Iterable[str | os.PathLike],
    batch_size: int,
    on_error: Callable[[str], None],
) -> Iterator[list[tuple[str, Image.Image]]]:
    """Readable images of `paths` in lists of up to `batch_size` ``(path, image)``, decoded lazily.

    At most one batch is decoded at a time, so memory is bounded by `batch_size`, not by the number
    of paths. Each unreadable file is passed to `on_error` (its reason, naming the path) and skipped.

    Example:
        >>> for batch in image_batches(["assets/examples/shapes_0.png", "missing.png"], 32, print):
        ...     print([path for path, _ in batch])
        missing.png: no such file
        ['assets/examples/shapes_0.png']
    """
    if batch_size < 1:
        raise Mmgpt2Error(f"batch_size={batch_size}: must be >= 1")
    batch: list[tuple[str, Image.Image]] = []
    for path, image, err in iter_images(paths):
        if err is not None:
            on_error(err)
            continue
        batch.append((path, image))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
