"""The demo's models: found by task, loaded once on first use, shared by every request.

Frozen parts are shared too: `shapes-tiny` and `shapes-video-zerota` both use
``embedded:shapes-clip`` and ``embedded:shapes-gpt2``, which are loaded once for both. Each model
has its own lock, so two requests never run the same model at the same time (Gradio's queue with
``default_concurrency_limit=1`` already serialises each button; the lock also covers requests that
overran their time cap and still run in the background).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmgpt2.checkpoint import read_config
from mmgpt2.paths import list_embedded_models, models_dir

#: Demo task -> the saved model type it runs, and the embedded model shown first.
TASKS: dict[str, tuple[str, str]] = {
    "caption": ("prefix_captioner", "shapes-tiny"),
    "personalized": ("personalized_captioner", "shapes-users-tiny"),
    "video": ("dense_video_captioner", "shapes-video-zerota"),
    "medical": ("medical_explainer", "chest-tiny"),
}


class ModelNotInstalled(LookupError):
    """No model for a demo task is present; the message says how to get one."""


def model_type(folder: str | os.PathLike) -> str | None:
    """The ``type`` in a model folder's config.json, or None if it is not an mmgpt2 model."""
    try:
        return read_config(folder).get("type")
    except (FileNotFoundError, ValueError):
        return None


@dataclass
class ModelRegistry:
    """Lazy, cached, thread-safe access to the models of each demo task.

    `extra` are more model folders (e.g. a captioner trained on COCO with real CLIP and GPT-2):
    each is offered in the tab whose task matches its saved type.

    Example:
        >>> models = ModelRegistry()
        >>> models.choices("caption")
        ['shapes-tiny', 'shapes-tiny-split', 'shapes-tiny-transformer']
        >>> with models.lock("shapes-tiny"):
        ...     models.get("shapes-tiny").caption(["assets/examples/shapes_0.png"])
        ['a picture of a large yellow circle in the center']
    """

    extra: list[str] = field(default_factory=list)
    device: str | None = None
    _models: dict[str, Any] = field(default_factory=dict, repr=False)
    _parts: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    _locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _load_locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _folders(self) -> dict[str, Path]:
        """Display name -> folder: embedded models by name, extra ones by the path given."""
        found = {name: models_dir() / name for name in list_embedded_models()}
        for path in self.extra:
            found[str(path)] = Path(path)
        return found

    def folder(self, name: str) -> Path:
        """The folder of model `name` (`ModelNotInstalled` if there is none)."""
        folders = self._folders()
        if name not in folders:
            raise ModelNotInstalled(
                f"model {name!r} is not installed; known: {', '.join(sorted(folders)) or 'none'}"
            )
        return folders[name]

    def choices(self, task: str) -> list[str]:
        """Models that can serve `task`, the task's embedded default first (empty: none installed)."""
        kind, default = TASKS[task]
        names = [n for n, folder in self._folders().items() if model_type(folder) == kind]
        return sorted(names, key=lambda n: (n != default, n))

    def available(self, task: str) -> bool:
        return bool(self.choices(task))

    def missing_message(self, task: str) -> str:
        kind, default = TASKS[task]
        return (
            f"The {task} model is not installed: no `{kind}` model under {models_dir()} "
            f"(the embedded one is `{default}`, built by `python recipes/build_worlds.py`), "
            "and none was given with `mmgpt2 demo --model DIR`."
        )

    def lock(self, name: str) -> threading.Lock:
        """The lock to hold while running model `name`."""
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def get(self, name: str, task: str | None = None) -> Any:
        """Model `name` (loaded on first call, then cached); `task` checks that it fits the tab."""
        with self._guard:
            if name in self._models:
                return self._models[name]
        folder = self.folder(name)
        with self._guard:
            load_lock = self._load_locks.setdefault(name, threading.Lock())
        with load_lock:  # one loader per model; other models load in parallel
            with self._guard:
                if name in self._models:
                    return self._models[name]
            model = self._load(folder)
            if task is not None and model.kind != TASKS[task][0]:
                raise ModelNotInstalled(f"model {name!r} is a {model.kind!r}, not a {TASKS[task][0]!r}")
            with self._guard:
                self._models[name] = model
        return model

    def _part(self, kind: str, spec: str) -> Any:
        """A frozen encoder or LM, loaded once per spec and shared between models."""
        from mmgpt2.encoders import load_encoder
        from mmgpt2.lm import load_lm

        with self._guard:
            if (kind, spec) in self._parts:
                return self._parts[(kind, spec)]
        part = (load_encoder if kind == "encoder" else load_lm)(spec, self.device)
        with self._guard:
            return self._parts.setdefault((kind, spec), part)

    def _load(self, folder: Path) -> Any:
        config = read_config(folder)
        encoder = self._part("encoder", config["encoder"])
        lm = self._part("lm", config["lm"])
        from mmgpt2.registry import PIPELINES

        if config.get("type") not in PIPELINES:
            raise ModelNotInstalled(
                f"{folder}: unknown model type {config.get('type')!r}; known: {PIPELINES.names()}"
            )
        return PIPELINES[config["type"]].from_pretrained(folder, device=self.device, encoder=encoder, lm=lm)

    def loaded(self) -> list[str]:
        """Names of the models already in memory."""
        with self._guard:
            return sorted(self._models)
