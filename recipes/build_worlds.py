"""Build the shapes world's embedded models from a seed: tiny CLIP, tokenizer + tiny GPT-2, captioners.

Stages (run in this order, each reads what the previous wrote):
  clip       byte-level BPE tokenizer + tiny open_clip model          -> assets/models/shapes-clip
  lm         tiny GPT-2 pretrained on the world's captions, frozen     -> assets/models/shapes-gpt2
  captioner  PrefixCaptioner with an MLP and a transformer mapper; the one with the better
             attribute accuracy on held-out scenes ships as shapes-tiny -> assets/models/shapes-tiny(-mlp|-transformer)
  examples   a few example PNGs                                         -> assets/examples/

Usage:
    python recipes/build_worlds.py                    # everything (~15-25 min on 2 CPU cores)
    python recipes/build_worlds.py --stage captioner  # only retrain the captioners
    python recipes/build_worlds.py --smoke            # a few steps of every stage into a temp dir (CI)

One thread is the default: on a shared 2-core machine PyTorch's 2-thread kernels spin against
other processes and run 10-20x slower than one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("clip", "lm", "captioner", "examples")

FULL = {
    "corpus_scenes": 20000,
    "vocab_size": 512,
    "clip_steps": 450,
    "clip_batch": 64,
    "lm_steps": 500,
    "lm_batch": 32,
    "train_scenes": 4000,
    "cap_steps": 4000,
    "cap_batch": 32,
    "select_scenes": 200,
    "retrieval_scenes": 300,
}
SMOKE = {
    "corpus_scenes": 200,
    "vocab_size": 300,
    "clip_steps": 2,
    "clip_batch": 8,
    "lm_steps": 2,
    "lm_batch": 8,
    "train_scenes": 16,
    "cap_steps": 2,
    "cap_batch": 8,
    "select_scenes": 6,
    "retrieval_scenes": 8,
}
#: Seeds of each data stream; benchmarks use seeds >= 10_000 so they never see training scenes.
SEEDS = {"corpus": 1, "clip": 2, "train": 3, "select": 4, "retrieval": 5, "examples": 6}
MAPPERS = {
    "mlp": {"type": "mlp", "prefix_length": 8},
    "transformer": {
        "type": "transformer",
        "prefix_length": 8,
        "clip_length": 8,
        "num_layers": 4,
        "num_heads": 4,
    },
    # Reads the 16 patch tokens, not only the pooled vector: the tiny CLIP's pooled embedding keeps
    # colour and position but loses much of shape and size (its retrieval is ~70%).
    "query_guided": {"type": "query_guided", "prefix_length": 8, "hidden_dim": 128, "num_layers": 2, "num_heads": 4},
}


def log(msg: str) -> None:
    print(f"[build_worlds {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def tokenizer_dir(work: Path, cfg: dict) -> Path:
    """The world's BPE tokenizer (deterministic, ~1 s), trained once per work dir."""
    from mmgpt2.worlds import shapes, tiny_models

    folder = work / "shapes-tokenizer"
    if not (folder / "tokenizer.json").is_file():
        texts = shapes.caption_corpus(cfg["corpus_scenes"], SEEDS["corpus"])
        tiny_models.train_tokenizer(texts, cfg["vocab_size"], folder)
    return folder


def stage_clip(models: Path, work: Path, cfg: dict, seed: int) -> None:
    from mmgpt2.worlds import shapes, tiny_models

    out = models / "shapes-clip"
    start = time.time()
    tiny_models.train_tiny_clip(
        shapes.make_batch,
        tokenizer_dir(work, cfg),
        out,
        steps=cfg["clip_steps"],
        batch_size=cfg["clip_batch"],
        seed=seed,
    )
    # Exact-caption retrieval among every canonical one-object caption (4 x 6 x 2 x 5 = 240).
    rng = random.Random(SEEDS["retrieval"])
    scenes = [shapes.make_scene(rng, n_objects=1) for _ in range(cfg["retrieval_scenes"])]
    candidates = sorted(
        f"a {size} {color} {shape} {shapes.POSITION_PHRASES[pos]}"
        for shape in shapes.SHAPES
        for color in shapes.COLORS
        for size in shapes.SIZES
        for pos in shapes.POSITIONS
    )
    acc = tiny_models.clip_retrieval_accuracy(
        out, [shapes.render(s) for s in scenes], [shapes.captions(s)[0] for s in scenes], candidates
    )
    log(
        f"shapes-clip: {time.time() - start:.0f} s, {tiny_models.folder_size_mb(out):.1f} MB, "
        f"one-object exact-caption retrieval among {len(candidates)} captions: {acc:.1%}"
    )


def stage_lm(models: Path, work: Path, cfg: dict, seed: int) -> None:
    from mmgpt2.worlds import shapes, tiny_models

    out = models / "shapes-gpt2"
    start = time.time()
    texts = shapes.caption_corpus(cfg["corpus_scenes"], SEEDS["corpus"])
    pairs = shapes.paraphrase_pairs(cfg["corpus_scenes"], SEEDS["corpus"] + 100)
    tiny_models.train_tiny_gpt2(
        texts,
        tokenizer_dir(work, cfg),
        out,
        n_layer=4,
        n_embd=128,
        n_head=4,
        steps=cfg["lm_steps"],
        batch_size=cfg["lm_batch"],
        seed=seed,
        pairs=pairs,
    )
    log(
        f"shapes-gpt2: {time.time() - start:.0f} s, {tiny_models.folder_size_mb(out):.1f} MB, {len(texts)} captions"
    )


def attribute_score(captioner, n: int, seed: int) -> dict[str, float]:
    """Greedy captions of `n` fresh scenes of each kind; fraction with every attribute right."""
    from mmgpt2.worlds import shapes

    rng = random.Random(seed)
    out = {}
    for k in (1, 2):
        scenes = [shapes.make_scene(rng, n_objects=k) for _ in range(n)]
        preds = captioner.caption([shapes.render(s) for s in scenes])
        out[f"{k}-object"] = (
            sum(shapes.attribute_accuracy(p, s) for p, s in zip(preds, scenes, strict=True)) / n
        )
    return out


def to_fp16(folder: Path) -> None:
    """Store the trained mapper in fp16 (loading casts back to fp32) to keep assets/ small."""
    from safetensors.torch import load_file, save_file

    from mmgpt2.checkpoint import WEIGHTS_NAME, atomic_write

    path = folder / WEIGHTS_NAME
    state = {
        k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(str(path)).items()
    }
    atomic_write(path, lambda p: save_file(state, str(p)))


def stage_captioner(models: Path, work: Path, cfg: dict, seed: int) -> None:
    from mmgpt2.captioner import PrefixCaptioner
    from mmgpt2.checkpoint import copy_folder_atomic
    from mmgpt2.data import FeatureCaptionDataset, extract_features, read_jsonl
    from mmgpt2.training import TrainConfig, train
    from mmgpt2.worlds import shapes, tiny_models

    data = work / "shapes-train"
    jsonl = shapes.write(data, cfg["train_scenes"], seed=SEEDS["train"])
    records = read_jsonl(jsonl)
    base = PrefixCaptioner.build("embedded:shapes-clip", "embedded:shapes-gpt2", mapper="mlp")
    store = extract_features([r.image for r in records], base.encoder, work / "features-tokens", tokens=True, progress=True)
    results = {}
    for name in cfg.get("mappers") or list(MAPPERS):
        mapper_cfg = MAPPERS[name]
        start = time.time()
        mapper_kwargs = {k: v for k, v in mapper_cfg.items() if k != "type"}
        cap = PrefixCaptioner.build(
            base.encoder,
            base.lm,
            mapper=mapper_cfg["type"],
            generation={"max_new_tokens": 24},
            **mapper_kwargs,
        )
        dataset = FeatureCaptionDataset(records, store, use_tokens=cap.uses_tokens)
        config = TrainConfig(
            out_dir=str(work / f"run-{name}"),
            max_steps=cfg["cap_steps"],
            batch_size=cfg["cap_batch"],
            lr=2e-3,
            warmup_steps=max(1, cfg["cap_steps"] // 20),
            weight_decay=0.01,
            save_every=10**9,
            seed=seed,
        )
        final = train(cap, dataset, config)
        to_fp16(final)
        trained = PrefixCaptioner.from_pretrained(final, encoder=base.encoder, lm=base.lm)
        score = attribute_score(trained, cfg["select_scenes"], SEEDS["select"])
        results[name] = (final, score)
        log(
            f"captioner {name}: {time.time() - start:.0f} s, {tiny_models.folder_size_mb(final):.1f} MB, "
            f"held-out attribute accuracy " + ", ".join(f"{k} {v:.1%}" for k, v in score.items())
        )
    best = max(results, key=lambda n: sum(results[n][1].values()))
    for name, (final, _) in results.items():
        target = models / ("shapes-tiny" if name == best else f"shapes-tiny-{name}")
        copy_folder_atomic(final, target)
    stale = models / f"shapes-tiny-{best}"
    if stale.is_dir():  # a previous build may have shipped the other mapper as best
        shutil.rmtree(stale)
    (models / "shapes-tiny" / "selection.json").write_text(
        json.dumps({name: score for name, (_, score) in results.items()} | {"shipped": best}, indent=2) + "\n"
    )
    log(f"shipped the {best} mapper as shapes-tiny")


def stage_examples(assets: Path, cfg: dict) -> None:  # noqa: ARG001 - same signature family
    from mmgpt2.checkpoint import atomic_write
    from mmgpt2.worlds import shapes

    out = assets / "examples"
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEEDS["examples"])
    truth = {}
    for i in range(6):
        scene = shapes.make_scene(rng, n_objects=1 if i < 3 else 2)
        name = f"shapes_{i}.png"
        atomic_write(out / name, lambda p, s=scene: shapes.render(s).save(p, format="PNG"))
        truth[name] = shapes.captions(scene)[0]
    log("examples: " + "; ".join(f"{k}: {v}" for k, v in truth.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--stage", nargs="+", choices=STAGES, default=list(STAGES), help="stages to run (default: all)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a few steps of every stage into a temporary folder"
    )
    parser.add_argument(
        "--assets", type=Path, default=None, help="assets folder to write (default: the repo's assets/)"
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="scratch folder (default: build/worlds)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1; see the module docstring)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--mappers", nargs="+", choices=list(MAPPERS), default=None, help="captioner mappers to train (default: all)"
    )
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="mmgpt2-worlds-smoke-")) if args.smoke else None
    assets = (tmp / "assets") if tmp else (args.assets or ROOT / "assets").resolve()
    work = (tmp / "work") if tmp else (args.work_dir or ROOT / "build" / "worlds").resolve()
    models = assets / "models"
    models.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    # Must precede the first mmgpt2 import: embedded:NAME specs resolve under this folder.
    os.environ["MMGPT2_ASSETS"] = str(assets)
    import torch

    torch.set_num_threads(max(1, args.threads))
    cfg = {**(SMOKE if args.smoke else FULL), "mappers": args.mappers}
    start = time.time()
    try:
        for stage in STAGES:
            if stage not in args.stage:
                continue
            log(f"stage {stage}")
            if stage == "clip":
                stage_clip(models, work, cfg, args.seed)
            elif stage == "lm":
                stage_lm(models, work, cfg, args.seed)
            elif stage == "captioner":
                stage_captioner(models, work, cfg, args.seed)
            else:
                stage_examples(assets, cfg)
        log(f"done in {time.time() - start:.0f} s; models under {models}")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
