"""Where the embedded assets live, and how a model name or folder resolves to a folder."""

from __future__ import annotations

import os
from pathlib import Path

#: Folder of the embedded tiny models and examples. `MMGPT2_ASSETS` overrides it, so an installed
#: (non-editable) package can point at a checkout's `assets/`.
ASSETS_DIR = Path(os.environ.get("MMGPT2_ASSETS", Path(__file__).resolve().parents[1] / "assets"))
MODELS_DIR = ASSETS_DIR / "models"


def embedded_model_dir(name: str) -> Path:
    """Folder of the embedded model `name` (e.g. ``"shapes-clip"``); raises with the known names."""
    path = MODELS_DIR / name
    if not path.is_dir():
        known = ", ".join(list_embedded_models()) or "none (run recipes/build_worlds.py)"
        raise FileNotFoundError(f"no embedded model named {name!r} under {MODELS_DIR}; known: {known}")
    return path


def list_embedded_models() -> list[str]:
    """Names of every embedded model folder under `assets/models`."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if p.is_dir() and not p.name.startswith("."))


def resolve_model_dir(name_or_dir: str | os.PathLike) -> Path:
    """A local folder, an embedded model name, or a Hugging Face Hub repo id (downloaded)."""
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    if (MODELS_DIR / str(name_or_dir)).is_dir():
        return MODELS_DIR / str(name_or_dir)
    if "/" in str(name_or_dir) and not path.exists():
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name_or_dir)))
    known = ", ".join(list_embedded_models()) or "none"
    raise FileNotFoundError(
        f"{name_or_dir!r} is neither a folder, an embedded model ({known}) nor a Hub repo id"
    )
