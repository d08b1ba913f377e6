"""Where the embedded assets live, and how a model name or folder resolves to a folder.

Paths are resolved when asked, never at import, so setting ``MMGPT2_ASSETS`` at any time (a
recipe's smoke run, a test) redirects everything after it.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def assets_dir() -> Path:
    """Folder of the embedded tiny models and examples.

    ``MMGPT2_ASSETS`` wins; else the assets installed inside the package (a wheel); else the
    source tree's ``assets/`` (an editable install or a checkout).
    """
    if os.environ.get("MMGPT2_ASSETS"):
        return Path(os.environ["MMGPT2_ASSETS"])
    packaged = _PACKAGE / "assets"
    return packaged if (packaged / "models").is_dir() else _PACKAGE.parent / "assets"


def models_dir() -> Path:
    """Folder of the embedded models (``<assets>/models``)."""
    return assets_dir() / "models"


def embedded_model_dir(name: str) -> Path:
    """Folder of the embedded model `name` (e.g. ``"shapes-clip"``); raises with the known names."""
    path = models_dir() / name
    if not path.is_dir():
        known = ", ".join(list_embedded_models()) or "none (run recipes/build_worlds.py)"
        raise FileNotFoundError(f"no embedded model named {name!r} under {models_dir()}; known: {known}")
    return path


def list_embedded_models() -> list[str]:
    """Names of every embedded model folder under `models_dir()`."""
    folder = models_dir()
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def resolve_model_dir(name_or_dir: str | os.PathLike) -> Path:
    """A local folder, an embedded model name, or a Hugging Face Hub repo id (downloaded)."""
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    if (models_dir() / str(name_or_dir)).is_dir():
        return models_dir() / str(name_or_dir)
    if "/" in str(name_or_dir) and not path.exists():
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name_or_dir)))
    known = ", ".join(list_embedded_models()) or "none"
    raise FileNotFoundError(
        f"{name_or_dir!r} is neither a folder, an embedded model ({known}) nor a Hub repo id"
    )
