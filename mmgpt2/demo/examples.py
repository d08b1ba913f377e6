"""Example inputs for the demo: the shipped ones under `assets/examples/`, else small generated ones.

Generated examples (a few shapes images, one short video, a few chest X-rays) come from the
`mmgpt2.worlds` generators with fixed seeds, are written atomically into a cache folder
(``$MMGPT2_CACHE/demo_examples``, default ``~/.cache/mmgpt2``) and reused on the next start.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from mmgpt2.checkpoint import atomic_write
from mmgpt2.paths import assets_dir


def examples_dir() -> Path:
    """The embedded example images and user histories (`mmgpt2.paths.assets_dir` / examples)."""
    return assets_dir() / "examples"


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv")
#: Shipped files whose name contains one of these are X-rays, not shapes pictures.
XRAY_MARKERS = ("chest", "xray", "x-ray", "cxr")


def cache_dir() -> Path:
    """Where generated examples live (`MMGPT2_CACHE` overrides the root, as for video features)."""
    return Path(os.environ.get("MMGPT2_CACHE", Path.home() / ".cache" / "mmgpt2")) / "demo_examples"


def _shipped(suffixes: tuple[str, ...]) -> list[Path]:
    if not examples_dir().is_dir():
        return []
    return sorted(p for p in examples_dir().rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def _is_xray(path: Path) -> bool:
    return any(m in str(path.relative_to(examples_dir())).lower() for m in XRAY_MARKERS)


def _save_png(image, path: Path) -> Path:
    if not path.is_file():
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
    return path


def example_images(n: int = 4) -> list[str]:
    """Up to `n` pictures for the caption tabs (shipped first, else generated shapes scenes).

    Example:
        >>> example_images(2)
        ['.../assets/examples/shapes_0.png', '.../assets/examples/shapes_1.png']
    """
    shipped = [p for p in _shipped(IMAGE_SUFFIXES) if not _is_xray(p)]
    if shipped:
        return [str(p) for p in shipped[:n]]
    from mmgpt2.worlds import shapes

    rng = random.Random(0)
    folder = cache_dir() / "shapes"
    return [
        str(_save_png(shapes.render(shapes.make_scene(rng), size=128), folder / f"shapes_{i}.png"))
        for i in range(n)
    ]


def example_histories(n: int = 4, max_lines: int = 20) -> list[tuple[str, str]]:
    """Up to `n` shipped ``(user name, past captions)`` from ``assets/examples/users/*.txt`` (none: [])."""
    folder = examples_dir() / "users"
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.txt"))[:n]:
        lines = [
            x.strip() for x in path.read_text(encoding="utf-8", errors="replace").splitlines() if x.strip()
        ]
        out.append((path.stem, "\n".join(lines[:max_lines])))
    return out


def example_xrays(n: int = 3) -> list[tuple[str, str]]:
    """Up to `n` ``(image path, diagnosis)`` pairs for the medical tab (diagnosis "" when unknown)."""
    shipped = [p for p in _shipped(IMAGE_SUFFIXES) if _is_xray(p)]
    if shipped:
        return [(str(p), "") for p in shipped[:n]]
    from mmgpt2.worlds import chest

    rng = random.Random(0)
    folder = cache_dir() / "chest"
    out, seen = [], set()
    while len(out) < n and len(seen) < 50:  # distinct diagnoses make better examples
        case = chest.sample_case(rng, normal_rate=0.0)
        image = chest.render_case(case, rng)
        if case.diagnosis in seen:
            continue
        seen.add(case.diagnosis)
        name = case.diagnosis.lower().replace(" ", "_")
        out.append((str(_save_png(image, folder / f"chest_{name}.png")), case.diagnosis))
    return out


def example_video() -> str:
    """One short video for the dense captioning tab (shipped, else a generated 12 s shapes clip)."""
    shipped = _shipped(VIDEO_SUFFIXES)
    if shipped:
        return str(shipped[0])
    from mmgpt2.worlds import shapes, videos

    path = cache_dir() / "videos" / "shapes_clip.mp4"
    if not path.is_file():
        rng = random.Random(0)
        scenes = [shapes.make_scene(rng) for _ in range(3)]
        videos.write_clip(path, scenes, [0.0, 4.0, 8.0, 12.0], fps=8, size=64)
    return str(path)
