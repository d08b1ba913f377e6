"""Resumable training state: trainable weights, optimizer, scheduler, RNG and step, saved atomically.

Folder ``checkpoint/``: ``model.safetensors``, ``optimizer.pt`` and ``scheduler.pt`` (plain state
dicts, loaded with ``weights_only=True``), ``rng.safetensors`` and ``trainer_state.json``. It is
written into ``.checkpoint.writing`` and moved into place by `replace_folder_atomic`, so a kill at
any moment keeps the previous checkpoint (or its backup, which `restore_interrupted_save` puts back).
``trainer_state.json`` also records what makes two runs the same run (`RUN_IDENTITY`): a resume
under other values could not continue the same sequence of batches, so it is refused.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mmgpt2.checkpoint import recover_folder, replace_folder_atomic
from mmgpt2.errors import Mmgpt2Error

STATE_NAME = "trainer_state.json"
#: What fixes the order and size of the batches; with the same values a resumed run continues the
#: interrupted one batch for batch, and with other values it cannot.
RUN_IDENTITY = ("seed", "batch_size", "dataset_size", "dataset_fingerprint", "num_processes")


class ResumeError(Mmgpt2Error):
    """A checkpoint cannot be resumed: it is damaged or comes from another run."""


def restore_interrupted_save(folder: Path) -> bool:
    """Put back the checkpoint a kill between two renames left only as its backup (main process only)."""
    return recover_folder(folder)


def has_checkpoint(folder: Path) -> bool:
    return (folder / STATE_NAME).is_file()


def save_training_state(
    folder: Path,
    model,
    optimizer,
    scheduler,
    step: int,
    epoch: int,
    batches_in_epoch: int,
    run: dict[str, Any],
) -> None:
    """Write the state of step `step` into `folder`, replacing the previous one atomically."""
    tmp = folder.with_name(f".{folder.name}.writing")
    shutil.rmtree(tmp, ignore_errors=True)  # a half-written one from a kill
    tmp.mkdir(parents=True)
    save_file(
        {k: v.contiguous().cpu() for k, v in model.trainable_state_dict().items()},
        str(tmp / "model.safetensors"),
    )
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    rng = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():  # dropout on a GPU draws from the CUDA generators
        rng.update({f"torch_cuda_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(rng, str(tmp / "rng.safetensors"))
    np_state = np.random.get_state()
    state = {
        "step": step,
        "epoch": epoch,
        "batches_in_epoch": batches_in_epoch,
        "run": run,
        "python_rng": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    (tmp / STATE_NAME).write_text(json.dumps(state))
    replace_folder_atomic(tmp, folder)


def read_trainer_state(folder: Path) -> dict[str, Any]:
    """``trainer_state.json`` of a checkpoint; a damaged one is a `ResumeError` naming the file."""
    path = folder / STATE_NAME
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        [int(state[k]) for k in ("step", "epoch", "batches_in_epoch")]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
        raise ResumeError(
            f"{path}: damaged training state ({type(err).__name__}: {err}); "
            "delete the folder to start over, or train into a new output folder"
        ) from None
    return state


def check_same_run(folder: Path, state: dict[str, Any], run: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint made with another seed, batch size, dataset or process count."""
    saved = state.get("run") or {}  # older checkpoints recorded less (or nothing): compare what is there
    changed = [
        "training data changed"
        if k == "dataset_fingerprint"
        else f"{k.replace('_', ' ')} {saved[k]} -> {run[k]}"
        for k in RUN_IDENTITY
        if k in saved and k in run and saved[k] != run[k]
    ]
    if changed:
        raise ResumeError(
            f"{folder}: cannot continue this run ({'; '.join(changed)}): a resume needs the same seed, "
            "batch size, training data and process count; restore them, or train into a new output folder"
        )


def load_training_state(folder: Path, model, optimizer, scheduler) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and every RNG from `folder`; returns its trainer state."""
    state = read_trainer_state(folder)
    model.load_trainable_state_dict(_read(folder / "model.safetensors", load_file), source=str(folder))
    try:
        optimizer.load_state_dict(_read(folder / "optimizer.pt", torch.load, weights_only=True))
        scheduler.load_state_dict(_read(folder / "scheduler.pt", torch.load, weights_only=True))
    except (KeyError, ValueError, TypeError) as err:
        if isinstance(err, Mmgpt2Error):
            raise
        raise ResumeError(f"{folder}: optimizer or scheduler state does not fit this run ({err})") from None
    rng = _read(folder / "rng.safetensors", load_file)
    torch.set_rng_state(rng["torch_cpu"])
    cuda = [rng[k] for k in sorted(rng) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    v, internal, gauss = state["python_rng"]
    random.setstate((v, tuple(internal), gauss))
    kind, keys, *rest = state["numpy_rng"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    return state


def _read(path: Path, load, **kwargs):
    """`load(path)`, with a damaged or missing file named in a `ResumeError`."""
    try:
        return load(str(path), **kwargs)
    except (SafetensorError, OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ResumeError(
            f"{path}: unreadable checkpoint file ({first_line}); "
            "delete the folder to start over, or train into a new output folder"
        ) from None
