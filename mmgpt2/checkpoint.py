"""Self-describing checkpoints: `config.json` + `model.safetensors`, written atomically.

Only the trainable parts are stored; the frozen encoder and LM are named by their specs so the
folder alone rebuilds the whole pipeline.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mmgpt2.errors import ModelFolderError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` then rename into `path`, so a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; saved models should read like any file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n"))


def save_weights(path: str | os.PathLike, state: dict[str, torch.Tensor]) -> None:
    """Save a state dict as safetensors, atomically (tied/shared tensors are cloned)."""
    tensors = {k: v.detach().contiguous().clone().cpu() for k, v in state.items()}
    atomic_write(path, lambda p: save_file(tensors, str(p)))


def save_folder(folder: str | os.PathLike, config: dict[str, Any], state: dict[str, torch.Tensor]) -> Path:
    """Write `config.json` and `model.safetensors` into `folder` (the weights first, then the config)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / WEIGHTS_NAME, state)
    atomic_write_json(folder / CONFIG_NAME, config)
    return folder


def write_config(folder: str | os.PathLike, config: dict[str, Any]) -> Path:
    """Write ``config.json`` alone (a pipeline with no trainable weights), atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / CONFIG_NAME, config)
    return folder


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {CONFIG_NAME}; not an mmgpt2 model folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFolderError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise ModelFolderError(f"{path}: must hold a JSON object, not {type(config).__name__}")
    return config


def load_weights(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of ``model.safetensors`` (never unpickled); a damaged file is a `ModelFolderError`."""
    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {WEIGHTS_NAME}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFolderError(
            f"{path}: not a readable safetensors file ({err}); copy or re-save the model"
        ) from None
    check_finite(state, str(path))
    return state


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Refuse weights holding NaN or infinity (a diverged or damaged run), naming the tensors."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ModelFolderError(
            f"{source}: weights hold NaN or infinite values ({shown}); the training run diverged or the "
            "file is damaged: use an earlier checkpoint or retrain"
        )


def load_matching_state(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` strictly, with an error that names every mismatched tensor and its shapes."""
    own = module.state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    problems += [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    problems += [
        f"{k}: checkpoint dtype {state[k].dtype} vs model {v.dtype}"
        for k, v in own.items()
        if k in state and state[k].is_floating_point() != v.is_floating_point()
    ]
    if problems:
        raise ModelFolderError(f"{source}: weights do not fit the model: " + "; ".join(problems[:8]))
    module.load_state_dict(state)


def _backup_of(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.old")


def recover_folder(folder: str | os.PathLike) -> bool:
    """Put back the backup a kill between `replace_folder_atomic`'s two renames left; True if it did.

    While `folder` exists its backup may be half-deleted, but when `folder` is missing the backup is
    the complete previous version (see `replace_folder_atomic`), so restoring it loses nothing.
    """
    folder = Path(folder)
    backup = _backup_of(folder)
    if folder.exists() or not backup.is_dir():
        return False
    os.replace(backup, folder)
    return True


def replace_folder_atomic(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move the folder `src` into `dst`'s place, so that a kill at any moment leaves a complete `dst`
    or, between the two renames, only its complete backup ``.<dst>.old`` (`recover_folder`).

    Example:
        >>> import shutil, tempfile
        >>> from pathlib import Path
        >>> run = Path(tempfile.mkdtemp())
        >>> for name, step in [("checkpoint", "1"), (".checkpoint.writing", "2")]:  # the old one, the new one
        ...     (run / name).mkdir(); _ = (run / name / "step").write_text(step)
        >>> replace_folder_atomic(run / ".checkpoint.writing", run / "checkpoint")
        >>> sorted(p.name for p in run.iterdir()), (run / "checkpoint" / "step").read_text()
        (['checkpoint'], '2')
        >>> shutil.rmtree(run)
    """
    src, dst = Path(src), Path(dst)
    backup = _backup_of(dst)
    recover_folder(dst)  # first: deleting a backup while it is the only copy could leave half of one
    if backup.exists():
        shutil.rmtree(backup)  # a stale one, from a kill while it was being removed
    if dst.exists():
        os.replace(dst, backup)
    os.replace(src, dst)
    shutil.rmtree(backup, ignore_errors=True)


def copy_folder_atomic(src: Path, dst: Path) -> None:
    """Replace `dst` by a copy of `src` (`replace_folder_atomic` of a fresh copy)."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    replace_folder_atomic(tmp, dst)
