"""Where the embedded assets live, and how a model name or folder resolves to a folder.

Paths are resolved when asked, never at import, so setting ``MMGPT2_ASSETS`` at any time (a
recipe's smoke run, a test) redirects everything after it.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmgpt2.errors import ModelFolderError

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


def looks_like_path(name: str) -> bool:
    """Whether `name` can only be meant as a local path, not a Hub repo id (``namespace/name``).

    Example:
        >>> looks_like_path("models/run1"), looks_like_path("./run1"), looks_like_path("gpt2")
        (False, True, False)
    """
    if name.startswith((".", "/", "~")) or "\\" in name or os.path.isabs(name) or name.endswith("/"):
        return True
    parts = name.split("/")
    return len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).is_dir())


def resolve_model_dir(name_or_dir: str | os.PathLike) -> Path:
    """A local folder, an embedded model name, or a Hugging Face Hub repo id (downloaded).

    A name that can only be a path (``./x``, ``/abs/x``, ``a/b/c``, or ``a/b`` where ``a`` is a
    local folder) is never sent to the Hub: if it is missing, the error says so.
    """
    name = str(name_or_dir)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelFolderError(
            f"{name}: is a file, not a model folder (expected config.json inside a folder)"
        )
    if (models_dir() / name).is_dir():
        return models_dir() / name
    known = ", ".join(list_embedded_models()) or "none"
    if looks_like_path(name) or isinstance(name_or_dir, os.PathLike):
        raise FileNotFoundError(
            f"{name}: no such model folder; give an existing folder or an embedded model ({known})"
        )
    if "/" in name:
        return _hub_snapshot(name)
    raise FileNotFoundError(f"{name!r} is neither a folder, an embedded model ({known}) nor a Hub repo id")


def _hub_snapshot(repo_id: str) -> Path:
    """The downloaded (or cached) Hub snapshot of `repo_id`; any Hub failure is a one-line error."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id))
    except Exception as err:  # noqa: BLE001 - offline, unknown repo, bad id, network: all the user's to fix
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelFolderError(
            f"{repo_id}: not a local folder or embedded model, and the Hugging Face Hub could not provide it "
            f"({reason})"
        ) from err
