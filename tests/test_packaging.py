"""A built wheel works on its own: embedded models, examples and named configs travel inside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What a checkout has that a build must not see (stale build/ trees leak deleted modules into wheels).
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "runs",
    "tmp",
)


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            ".",
        ],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("mmgpt2-*.whl")
    return wheel


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_captions_offline_with_its_own_models(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mmgpt2/py.typed" in names
    assert "mmgpt2/configs/clipcap-coco-transformer.json" in names
    assert "mmgpt2/assets/models/shapes-tiny/model.safetensors" in names
    assert "mmgpt2/assets/examples/shapes_0.png" in names

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(ROOT / "assets" / "examples" / "shapes_0.png", elsewhere / "photo.png")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "MMGPT2_ASSETS"} and not k.startswith("HF_")
    }
    # Only the installed copy is importable: no source tree on the path, no network.
    env.update(PYTHONPATH=str(target), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import mmgpt2, mmgpt2.paths as p; print(mmgpt2.__file__); print(p.assets_dir())",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    module_file, assets = where.stdout.split()
    assert Path(module_file).is_relative_to(target) and Path(assets) == target / "mmgpt2" / "assets"

    proc = subprocess.run(
        [sys.executable, str(target / "bin" / "mmgpt2"), "caption", "photo.png"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    image, caption = proc.stdout.strip().split("\t")
    assert image == "photo.png" and len(caption.split()) >= 3
