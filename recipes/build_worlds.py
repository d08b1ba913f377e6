"""Build the shapes world's embedded models from a seed: tiny CLIP, tokenizer + tiny GPT-2, captioners.

Stages (run in this order, each reads what the previous wrote):
  clip       byte-level BPE tokenizer + tiny open_clip model          -> assets/models/shapes-clip
  lm         tiny GPT-2 pretrained on the world's captions, frozen     -> assets/models/shapes-gpt2
             (clip and lm train side by side, one process and one core each)
  captioner  PrefixCaptioners (`--mappers`, default: the MLP); across runs on the same frozen
             weights, the one with the best attribute accuracy on held-out scenes ships as
             shapes-tiny, the others as shapes-tiny-<mapper>            -> assets/models/shapes-tiny*
  examples   a few example PNGs                                         -> assets/examples/

Usage:
    python recipes/build_worlds.py                    # everything (~23 min on 2 CPU cores)
    python recipes/build_worlds.py --stage captioner --mappers transformer   # add the transformer mapper (~15 min)
    python recipes/build_worlds.py --smoke            # a few steps of every stage into a temp dir (CI)

One thread per process is the default: on a shared 2-core machine PyTorch's 2-thread kernels spin
against other processes and run 10-20x slower than one thread.
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
    "clip_steps": 1200,
    "clip_batch": 128,
    "lm_steps": 2000,
    "lm_batch": 48,
    "train_scenes": 12000,
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
    # Reads the 16 patch tokens, not only the pooled vector (opt-in: `--mappers query_guided`).
    "query_guided": {
        "type": "query_guided",
        "prefix_length": 8,
        "hidden_dim": 128,
        "num_layers": 2,
        "num_heads": 4,
    },
}


#: Trained by default: the MLP alone keeps the whole recipe inside 30 minutes on 2 cores.
DEFAULT_MAPPERS = ("mlp",)


def log(msg: str) -> None:
    print(f"[build_worlds {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def tokenizer_dir(work: Path, cfg: dict) -> Path:
    """The world's BPE tokenizer (deterministic, ~1 s), trained once per work dir."""
    import tiny_models

    from mmgpt2.worlds import shapes

    folder = work / "shapes-tokenizer"
    if not (folder / "tokenizer.json").is_file():
        texts = shapes.caption_corpus(cfg["corpus_scenes"], SEEDS["corpus"])
        tiny_models.train_tokenizer(texts, cfg["vocab_size"], folder)
    return folder


def stage_clip(models: Path, work: Path, cfg: dict, seed: int) -> None:
    import tiny_models

    from mmgpt2.worlds import shapes

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
    candidates = shapes.canonical_captions(1)
    acc = tiny_models.clip_retrieval_accuracy(
        out, [shapes.render(s) for s in scenes], [shapes.captions(s)[0] for s in scenes], candidates
    )
    log(
        f"shapes-clip: {time.time() - start:.0f} s, {tiny_models.folder_size_mb(out):.1f} MB, "
        f"one-object exact-caption retrieval among {len(candidates)} captions: {acc:.1%}"
    )


def stage_lm(models: Path, work: Path, cfg: dict, seed: int) -> None:
    """Tiny GPT-2 on the world's captions plus paraphrase pairs (``EOS context EOS caption EOS``).

    The pairs teach the frozen LM to take content from its context, the slot a prefix fills (see
    `tiny_models.train_tiny_gpt2`). Context and caption name a scene's objects in the same order
    (`shapes.reading_order`): when the caption could name either object first, the LM copied only
    38% of two-object contexts right, mixing the two orders word by word; with one order, 100%.
    """
    import tiny_models

    from mmgpt2.worlds import shapes

    out = models / "shapes-gpt2"
    start = time.time()
    texts = shapes.caption_corpus(cfg["corpus_scenes"], SEEDS["corpus"])
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
        pairs=shapes.paraphrase_pairs(cfg["corpus_scenes"], SEEDS["corpus"] + 100),
        pair_share=0.7,
        separate_pairs=True,
    )
    log(
        f"shapes-gpt2: {time.time() - start:.0f} s, {tiny_models.folder_size_mb(out):.1f} MB, {len(texts)} captions, "
        f"copies a held-out context: one-object {copy_accuracy(cfg['select_scenes'], 1):.1%}, "
        f"two-object {copy_accuracy(cfg['select_scenes'], 2):.1%}"
    )


def copy_accuracy(n: int, n_objects: int) -> float:
    """Share of `n` held-out contexts the frozen LM continues with a right caption.

    A prefix can only steer a frozen LM that takes content from its context; this measures that
    ability directly, before any mapper is trained. One-object contexts alternate between a
    paraphrase and the attribute words in a shuffled order; two-object contexts are paraphrases.
    Each is followed by EOS, as in the LM's pretraining pairs (``separate_pairs``).
    """
    import torch

    from mmgpt2.lm import load_lm
    from mmgpt2.worlds import shapes

    lm = load_lm("embedded:shapes-gpt2")
    rng = random.Random(SEEDS["select"] + n_objects)
    good = 0
    for i in range(n):
        scene = shapes.make_scene(rng, n_objects=n_objects)
        if n_objects == 1 and i % 2 == 0:
            context = shapes.keywords(scene, rng)
        else:
            context = rng.choice(shapes.captions(scene))
        ids = torch.tensor([[lm.eos_token_id, *lm.tokenizer.encode(context), lm.eos_token_id]])
        out = lm.model.generate(
            ids,
            max_new_tokens=24,
            do_sample=False,
            eos_token_id=lm.eos_token_id,
            pad_token_id=lm.eos_token_id,
        )
        text = lm.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        good += shapes.attribute_accuracy(text, scene)
    return good / n


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
    import tiny_models

    from mmgpt2.apps.captioning.model import PrefixCaptioner
    from mmgpt2.data import FeatureCaptionDataset, extract_features, read_jsonl
    from mmgpt2.training import TrainConfig, train
    from mmgpt2.worlds import shapes

    data = work / "shapes-train"
    jsonl = shapes.write(data, cfg["train_scenes"], seed=SEEDS["train"])
    records = read_jsonl(jsonl)
    base = PrefixCaptioner.build("embedded:shapes-clip", "embedded:shapes-gpt2", mapper="mlp")
    # Keyed by the weights: a retrained shapes-clip must not reuse the old features.
    feature_dir = work / f"features-{base.encoder.weights_fingerprint()}"
    store = extract_features(
        [r.image for r in records], base.encoder, feature_dir, tokens=True, progress=True
    )
    results = {}
    for name in cfg["mappers"]:
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
    ship(models, work, results)


def frozen_fingerprint(models: Path) -> str:
    """Hash of the frozen CLIP and GPT-2 weights: captioners trained on other weights are stale."""
    import hashlib

    digest = hashlib.sha256()
    for name in ("shapes-clip", "shapes-gpt2"):
        for path in sorted((models / name).glob("*.safetensors")):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ship(models: Path, work: Path, results: dict[str, tuple[Path, dict[str, float]]]) -> None:
    """Ship the best mapper as shapes-tiny and every other one as shapes-tiny-<name>.

    Scores accumulate in `work/selection.json` across runs, so retraining one mapper (``--mappers
    transformer``) competes with the others trained earlier on the same frozen weights instead of
    overwriting shapes-tiny unseen.
    """
    from mmgpt2.checkpoint import atomic_write_json, copy_folder_atomic

    fingerprint = frozen_fingerprint(models)
    ledger_path = work / "selection.json"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.is_file() else {}
    ledger = {
        n: e for n, e in ledger.items() if e.get("frozen") == fingerprint and Path(e["folder"]).is_dir()
    }
    for name, (final, score) in results.items():
        ledger[name] = {"folder": str(final), "score": score, "frozen": fingerprint}
    atomic_write_json(ledger_path, ledger)
    best = max(ledger, key=lambda n: sum(ledger[n]["score"].values()))
    for name, entry in ledger.items():
        target = models / ("shapes-tiny" if name == best else f"shapes-tiny-{name}")
        copy_folder_atomic(Path(entry["folder"]), target)
    for stale in models.glob("shapes-tiny-*"):
        if stale.name != "shapes-tiny" and stale.name.removeprefix("shapes-tiny-") not in set(ledger) - {
            best
        }:
            shutil.rmtree(stale)
    selection = {name: entry["score"] for name, entry in ledger.items()} | {"shipped": best}
    atomic_write_json(models / "shapes-tiny" / "selection.json", selection)
    log(f"shipped the {best} mapper as shapes-tiny; others: {sorted(set(ledger) - {best}) or 'none'}")


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


def _run_stage(fn, stage_args: tuple, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    fn(*stage_args)


def run_side_by_side(jobs: list[tuple], threads: int) -> None:
    """Run stage functions in parallel processes (spawned: no forked torch state); re-raise failures."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in [pool.submit(_run_stage, fn, stage_args, threads) for fn, stage_args in jobs]:
            future.result()


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
        "--sequential",
        action="store_true",
        help="train the CLIP and the LM one after the other (default: side by side)",
    )
    parser.add_argument(
        "--mappers",
        nargs="+",
        choices=list(MAPPERS),
        default=None,
        help=f"captioner mappers to train (default: {' '.join(DEFAULT_MAPPERS)}; each adds 8-15 min)",
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
    # The smoke run trains every mapper (a few steps each) so CI covers them all.
    mappers = args.mappers or (list(MAPPERS) if args.smoke else list(DEFAULT_MAPPERS))
    cfg = {**(SMOKE if args.smoke else FULL), "mappers": mappers}
    start = time.time()
    try:
        todo = [s for s in STAGES if s in args.stage]
        if {"clip", "lm"} <= set(todo) and not args.sequential:
            # Independent once the tokenizer exists: one process each, one core each.
            tokenizer_dir(work, cfg)
            log("stages clip and lm, side by side")
            run_side_by_side(
                [(stage_clip, (models, work, cfg, args.seed)), (stage_lm, (models, work, cfg, args.seed))],
                threads=max(1, args.threads),
            )
            todo = [s for s in todo if s not in ("clip", "lm")]
        for stage in todo:
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
