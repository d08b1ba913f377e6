"""Resumable training state: trainable weights, optimizer, scheduler, RNG and step, saved atomically.

Folder ``checkpoint/``: ``model.safetensors``, ``optimizer.pt`` and ``scheduler.pt`` (plain state
dicts, loaded with ``weights_only=True``), ``rng.safetensors`` and ``trainer_state.json``. It is
written into a temporary folder and renamed into place, so a crash mid-save keeps the previous one.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mmgpt2.checkpoint import copy_folder_atomic


def save_training_state(
    folder: Path, model, optimizer, scheduler, step: int, epoch: int, batches_in_epoch: int
) -> None:
    tmp = folder.with_name(f".{folder.name}.writing")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous().cpu() for k, v in model.trainable_state_dict().items()},
        str(tmp / "model.safetensors"),
    )
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    save_file({"torch_cpu": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    np_state = np.random.get_state()
    state = {
        "step": step,
        "epoch": epoch,
        "batches_in_epoch": batches_in_epoch,
        "python_rng": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    (tmp / "trainer_state.json").write_text(json.dumps(state))
    copy_folder_atomic(tmp, folder)
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


def load_training_state(folder: Path, model, optimizer, scheduler) -> dict[str, Any]:
    if not (folder / "trainer_state.json").is_file():
        raise FileNotFoundError(f"{folder}: no trainer_state.json; nothing to resume from")
    model.load_trainable_state_dict(load_file(str(folder / "model.safetensors")), source=str(folder))
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    torch.set_rng_state(load_file(str(folder / "rng.safetensors"))["torch_cpu"])
    state = json.loads((folder / "trainer_state.json").read_text())
    v, internal, gauss = state["python_rng"]
    random.setstate((v, tuple(internal), gauss))
    kind, keys, *rest = state["numpy_rng"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    return state
