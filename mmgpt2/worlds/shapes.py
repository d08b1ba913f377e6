"""The shapes world: coloured shapes with a size and a position, and captions that name them.

One-object scenes ("a small red circle at the top") and two-object scenes joined by a relation
("a small red circle to the left of a large blue square"). Every caption template uses the
attribute words themselves, so a caption can be checked word by word against the scene
(`attribute_accuracy`). Mild noise (background tint, colour and position jitter, pixel noise)
keeps the images from being a lookup table. Everything is seeded and deterministic.

Example:
    >>> rng = random.Random(0)
    >>> scene = make_scene(rng)
    >>> image = render(scene)            # 64x64 PIL image
    >>> captions(scene)[0]
    'a small blue cross above a large yellow cross'
    >>> attribute_accuracy(captions(scene)[0], scene)
    True
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mmgpt2.errors import Mmgpt2Error

SHAPES = ("circle", "square", "triangle", "cross")
COLORS = {
    "red": (215, 35, 35),
    "green": (40, 160, 60),
    "blue": (40, 70, 215),
    "yellow": (235, 200, 20),
    "purple": (135, 50, 175),
    "orange": (245, 130, 20),
}
SIZES = {"small": 0.12, "large": 0.2}  # radius as a fraction of the image side
#: Centre of each position as a fraction of the image side (x, y).
POSITIONS = {
    "top": (0.5, 0.18),
    "bottom": (0.5, 0.82),
    "left": (0.18, 0.5),
    "right": (0.82, 0.5),
    "center": (0.5, 0.5),
}
POSITION_PHRASES = {
    "top": "at the top",
    "bottom": "at the bottom",
    "left": "on the left",
    "right": "on the right",
    "center": "in the center",
}
#: Position pairs a two-object scene may use, and the relation of the first object to the second.
PAIR_RELATIONS = {
    ("left", "right"): "to the left of",
    ("left", "center"): "to the left of",
    ("center", "right"): "to the left of",
    ("top", "bottom"): "above",
    ("top", "center"): "above",
    ("center", "bottom"): "above",
}
INVERSE = {"to the left of": "to the right of", "above": "below"}
INVERSE_ANY = {**INVERSE, **{v: k for k, v in INVERSE.items()}}
RELATIONS = ("to the left of", "to the right of", "above", "below")

ONE_OBJECT_TEMPLATES = (
    "a {obj} {pos}",
    "there is a {obj} {pos}",
    "a picture of a {obj} {pos}",
    "{pos} there is a {obj}",
)
TWO_OBJECT_TEMPLATES = (
    "a {a} {rel} a {b}",
    "there is a {a} {rel} a {b}",
    "a picture of a {a} {rel} a {b}",
    "a {a} is {rel} a {b}",
)


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene: the four attributes its caption names."""

    shape: str
    color: str
    size: str
    position: str

    def phrase(self) -> str:
        return f"{self.size} {self.color} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """Objects plus the nuisance parameters (tint, jitter, noise seed) that make rendering exact."""

    objects: tuple[ShapeObject, ...]
    background: tuple[int, int, int]
    jitter: tuple[tuple[float, float, float, int, int, int], ...]  # per object: dx, dy, dscale, dr, dg, db
    noise_seed: int = 0
    relation: str | None = None  # two-object scenes: relation of objects[0] to objects[1]

    def object_dicts(self) -> list[dict[str, str]]:
        return [asdict(o) for o in self.objects]

    def to_record(self) -> dict:
        """``{"objects": [...]}`` plus ``"relation"`` for two objects: what `scene_from_record` reads."""
        return {"objects": self.object_dicts(), **({"relation": self.relation} if self.relation else {})}


def make_scene(rng: random.Random, n_objects: int | None = None) -> Scene:
    """A random scene with 1 or 2 objects (`n_objects`, default: either, equally likely).

    Example:
        >>> make_scene(random.Random(3), n_objects=2).relation
        'to the left of'
    """
    n = n_objects if n_objects is not None else rng.choice((1, 2))
    if n not in (1, 2):
        raise Mmgpt2Error(f"n_objects={n}: the shapes world has one- and two-object scenes only")
    if n == 1:
        positions: tuple[str, ...] = (rng.choice(tuple(POSITIONS)),)
        relation = None
    else:
        pair = rng.choice(tuple(PAIR_RELATIONS))
        relation = PAIR_RELATIONS[pair]
        if rng.random() < 0.5:  # name either object first
            pair, relation = (pair[1], pair[0]), INVERSE[relation]
        positions = pair
    objects = tuple(
        ShapeObject(rng.choice(SHAPES), rng.choice(tuple(COLORS)), rng.choice(tuple(SIZES)), pos)
        for pos in positions
    )
    background = tuple(rng.randint(205, 250) for _ in range(3))
    jitter = tuple(
        (rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04), rng.uniform(-0.1, 0.1))
        + tuple(rng.randint(-20, 20) for _ in range(3))
        for _ in objects
    )
    return Scene(objects, background, jitter, noise_seed=rng.randrange(2**31), relation=relation)


def _draw(
    draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill: tuple[int, int, int]
) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.88  # same visual area class as the circle
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=fill)
    elif shape == "cross":
        t = r * 0.38
        draw.rectangle([cx - r, cy - t, cx + r, cy + t], fill=fill)
        draw.rectangle([cx - t, cy - r, cx + t, cy + r], fill=fill)
    else:
        raise Mmgpt2Error(f"unknown shape {shape!r}; known: {SHAPES}")


def render(scene: Scene, size: int = 64) -> Image.Image:
    """Draw `scene` as a `size` x `size` RGB image (deterministic for a given scene).

    Example:
        >>> render(make_scene(random.Random(0)), size=128).size
        (128, 128)
    """
    image = Image.new("RGB", (size, size), scene.background)
    draw = ImageDraw.Draw(image)
    # Large objects first so a small one next to them is never hidden.
    order = sorted(range(len(scene.objects)), key=lambda i: -SIZES[scene.objects[i].size])
    for i in order:
        obj, (dx, dy, ds, *dc) = scene.objects[i], scene.jitter[i]
        px, py = POSITIONS[obj.position]
        r = SIZES[obj.size] * (1 + ds) * size
        fill = tuple(int(np.clip(c + d, 0, 255)) for c, d in zip(COLORS[obj.color], dc, strict=True))
        _draw(draw, obj.shape, (px + dx) * size, (py + dy) * size, r, fill)
    pixels = np.asarray(image, dtype=np.int16)
    noise = np.random.default_rng(scene.noise_seed).integers(-8, 9, size=pixels.shape, dtype=np.int16)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def reading_order(scene: Scene) -> tuple[ShapeObject, str, ShapeObject]:
    """A two-object scene as ``(first, relation, second)`` in reading order: left to right, top to bottom.

    Which object a scene names first is random (`make_scene`); captions always name them in reading
    order, so an image has one object order and a captioner never averages two (naming one
    object's colour with the other's shape).

    Example:
        >>> first, relation, second = reading_order(make_scene(random.Random(3), n_objects=2))
        >>> relation in ("to the left of", "above")
        True
    """
    if len(scene.objects) != 2:
        raise Mmgpt2Error(f"reading_order needs a two-object scene, got {len(scene.objects)} objects")
    a, b = scene.objects
    rel = scene.relation or ""
    if rel in INVERSE:
        return a, rel, b
    return b, INVERSE_ANY[rel], a


def captions(scene: Scene) -> list[str]:
    """Every paraphrase of `scene`; the first is the canonical one.

    Two-object scenes name their objects in reading order (`reading_order`), in every paraphrase.

    Example:
        >>> captions(make_scene(random.Random(0), n_objects=1))[:2]
        ['a large red cross on the right', 'there is a large red cross on the right']
    """
    if len(scene.objects) == 1:
        obj = scene.objects[0]
        return [t.format(obj=obj.phrase(), pos=POSITION_PHRASES[obj.position]) for t in ONE_OBJECT_TEMPLATES]
    a, rel, b = reading_order(scene)
    return [t.format(a=a.phrase(), rel=rel, b=b.phrase()) for t in TWO_OBJECT_TEMPLATES]


_WORD = re.compile(r"[a-z]+")


def _attributes(text: str) -> tuple[list[str], list[str], list[str], list[str]]:
    words = _WORD.findall(text.lower())
    shapes = [w for w in words if w in SHAPES]
    colors = [w for w in words if w in COLORS]
    sizes = [w for w in words if w in SIZES]
    positions = [p for p, phrase in POSITION_PHRASES.items() if phrase in " ".join(words)]
    return shapes, colors, sizes, positions


def _describes(text: str, obj: ShapeObject, with_position: bool) -> bool:
    shapes, colors, sizes, positions = _attributes(text)
    ok = shapes == [obj.shape] and colors == [obj.color] and sizes == [obj.size]
    return ok and (positions == [obj.position] if with_position else not positions)


def attribute_accuracy(caption: str, scene: Scene) -> bool:
    """True when `caption` names every attribute of every object right, and nothing else.

    One-object scenes: exactly the object's shape, colour, size and position words. Two-object
    scenes: ``<object> <relation> <object>``, each side naming exactly one object's shape, colour
    and size, and the relation true of that order (positions are implied by the relation).

    Example:
        >>> scene = make_scene(random.Random(0), n_objects=1)
        >>> attribute_accuracy(captions(scene)[0], scene), attribute_accuracy("a blue cat", scene)
        (True, False)
    """
    text = " ".join(_WORD.findall(caption.lower()))
    if len(scene.objects) == 1:
        return _describes(text, scene.objects[0], with_position=True)
    found = [r for r in RELATIONS if f" {r} " in f" {text} "]
    if len(found) != 1:
        return False
    rel = found[0]
    left, _, right = text.partition(rel)
    a, b = scene.objects
    truth = {(a, b): scene.relation, (b, a): INVERSE_ANY.get(scene.relation or "", "")}
    return any(
        truth[(x, y)] == rel and _describes(left, x, False) and _describes(right, y, False)
        for x, y in ((a, b), (b, a))
    )


def write(out_dir: str | os.PathLike, n: int, seed: int = 0, size: int = 64) -> Path:
    """Write `n` scenes as PNGs plus `captions.jsonl` into `out_dir`; returns the jsonl path.

    Each jsonl line: ``{"image": "00000.png", "captions": [...], "objects": [{"shape", "color",
    "size", "position"}, ...]}`` (two-object lines also carry ``"relation"``).

    Example:
        >>> write("data/shapes", n=100, seed=1)  # doctest: +SKIP
        PosixPath('data/shapes/captions.jsonl')
    """
    out = world_folder(out_dir, n, "scene")
    rng = random.Random(seed)
    records = []
    for i in range(n):
        scene = make_scene(rng)
        name = f"{i:05d}.png"
        write_png(out / name, render(scene, size))
        records.append({"image": name, "captions": captions(scene), **scene.to_record()})
    return write_jsonl(out / "captions.jsonl", records)


def world_folder(out_dir: str | os.PathLike, n: int, what: str) -> Path:
    """The output folder of a world's `write`, created, after checking that `n` >= 1."""
    if n < 1:
        raise Mmgpt2Error(f"n={n}: need at least one {what}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_png(path: Path, image: Image.Image) -> None:
    from mmgpt2.checkpoint import atomic_write

    atomic_write(path, lambda p: image.save(p, format="PNG"))


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """Write one JSON object per line (UTF-8, atomically); returns `path`."""
    from mmgpt2.checkpoint import atomic_write

    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    return path


def scene_from_record(record: dict) -> Scene:
    """Rebuild a scene's attributes from a `captions.jsonl` line (for scoring; no rendering noise)."""
    objects = tuple(ShapeObject(**o) for o in record["objects"])
    zero = tuple((0.0, 0.0, 0.0, 0, 0, 0) for _ in objects)
    return Scene(objects, (255, 255, 255), zero, relation=record.get("relation"))


def caption_corpus(n_scenes: int, seed: int) -> list[str]:
    """All paraphrases of `n_scenes` random scenes, deduplicated in first-seen order.

    Example:
        >>> len(caption_corpus(100, seed=0)) > 100
        True
    """
    rng = random.Random(seed)
    texts: dict[str, None] = {}
    for _ in range(n_scenes):
        for c in captions(make_scene(rng)):
            texts.setdefault(c)
    return list(texts)


def canonical_captions(n_objects: int) -> list[str]:
    """Every canonical (first-template) caption of a one- or two-object scene, sorted.

    One object: 4 shapes x 6 colours x 2 sizes x 5 positions = 240 captions. Two objects: every
    ordered pair of the 48 object phrases with every relation (9,216). The candidate set for
    zero-shot CLIP retrieval.

    Example:
        >>> len(canonical_captions(1)), canonical_captions(1)[0]
        (240, 'a large blue circle at the bottom')
    """
    objects = [f"{z} {c} {s}" for s in SHAPES for c in COLORS for z in SIZES]
    if n_objects == 1:
        return sorted(f"a {o} {phrase}" for o in objects for phrase in POSITION_PHRASES.values())
    if n_objects == 2:
        return sorted(f"a {a} {r} a {b}" for a in objects for b in objects for r in RELATIONS)
    raise Mmgpt2Error(f"n_objects={n_objects}: the shapes world has one- and two-object scenes only")


def paraphrase_pairs(n_scenes: int, seed: int, keyword_share: float = 0.5) -> list[tuple[str, str]]:
    """(context, caption) pairs: two random paraphrases of each of `n_scenes` scenes.

    Pretraining the tiny GPT-2 on them teaches it to take content from what precedes a caption,
    the slot a captioner's prefix fills (see `tiny_models.train_tiny_gpt2`). For `keyword_share`
    of the scenes the context is the attribute words alone (`keywords`): a prefix is closer to a
    bag of content than to a sentence, and copying a whole sentence can be learned by position
    alone, without reading which colour or size it names. Both sides name the objects in the
    same (reading) order, so the copy is never ambiguous.

    Example:
        >>> context, caption = paraphrase_pairs(1, seed=0)[0]
    """
    rng = random.Random(seed)
    out = []
    for _ in range(n_scenes):
        scene = make_scene(rng)
        caps = captions(scene)
        if rng.random() < keyword_share:
            out.append((keywords(scene, rng), rng.choice(caps)))
        else:
            out.append((rng.choice(caps), rng.choice(caps)))
    return out


def keywords(scene: Scene, rng: random.Random) -> str:
    """The attribute words of `scene`: shuffled for one object, in caption order for two.

    Two objects keep their order (``small red circle to the left of large blue square``): a bag
    of seven words cannot say which colour goes with which shape.

    Example:
        >>> keywords(make_scene(random.Random(3), n_objects=2), random.Random(0))
        'large blue square to the left of small purple circle'
    """
    if len(scene.objects) == 2:
        a, rel, b = reading_order(scene)
        return f"{a.phrase()} {rel} {b.phrase()}"
    o = scene.objects[0]
    words = [o.shape, o.color, o.size, POSITION_PHRASES[o.position]]
    rng.shuffle(words)
    return " ".join(words)


def hard_negative(rng: random.Random, scene: Scene) -> Scene:
    """A scene that differs from `scene` in exactly one thing a caption names.

    One attribute (shape, colour or size) of one object changes, or, in a two-object scene, the
    two objects swap places (the same words in the other order). Contrastive batches of random
    scenes almost never hold two scenes this close, so a tiny CLIP trained on them alone learns
    colour and position and little else; pairing each scene with such a twin forces it to tell
    shapes, sizes and object order apart (a NegCLIP-style hard negative).

    Example:
        >>> scene = make_scene(random.Random(0), n_objects=1)
        >>> captions(hard_negative(random.Random(1), scene))[0] != captions(scene)[0]
        True
    """
    if (
        len(scene.objects) == 2
        and scene.objects[0].phrase() != scene.objects[1].phrase()
        and rng.random() < 0.25
    ):
        a, b = scene.objects
        swapped = (replace(a, position=b.position), replace(b, position=a.position))
        return replace(
            scene,
            objects=swapped,
            relation=INVERSE_ANY[scene.relation or ""],
            noise_seed=rng.randrange(2**31),
        )
    choices = {"shape": SHAPES, "color": tuple(COLORS), "size": tuple(SIZES)}
    i = rng.randrange(len(scene.objects))
    obj = scene.objects[i]
    key = rng.choice(tuple(choices))
    value = rng.choice([v for v in choices[key] if v != getattr(obj, key)])
    objects = list(scene.objects)
    objects[i] = replace(obj, **{key: value})
    return replace(scene, objects=tuple(objects), noise_seed=rng.randrange(2**31))


def make_batch(
    rng: random.Random, batch_size: int, hard_negatives: float = 0.5
) -> tuple[list[Image.Image], list[str]]:
    """Images and one random paraphrase each: the batch maker for `tiny_models.train_tiny_clip`.

    After each random scene, with probability `hard_negatives`, comes its `hard_negative` twin.

    Example:
        >>> images, texts = make_batch(random.Random(0), 4)
    """
    scenes: list[Scene] = []
    while len(scenes) < batch_size:
        scenes.append(make_scene(rng))
        if len(scenes) < batch_size and rng.random() < hard_negatives:
            scenes.append(hard_negative(rng, scenes[-1]))
    return [render(s) for s in scenes], [rng.choice(captions(s)) for s in scenes]
