"""Build the users world's embedded models: `users-gpt2` and `shapes-users-tiny` (UAPT on shapes).

Stages (each skipped when its output exists; `--force` redoes all):

1. a byte-level BPE tokenizer and `assets/models/users-gpt2`, a tiny GPT-2 pretrained on captions
   of random scenes in *every* style combination (the world's language, not who writes what);
2. training posts of the 16 training users and held-out test scenes, rendered under `--build-dir`,
   and their features from the frozen embedded `shapes-clip` (pooled + patch tokens);
3. the `UserStore`: IDF over the training users; each training example's context comes from the
   author's OTHER posts (leave-one-out), the stored context (for new images) from all of them;
4. `assets/models/shapes-users-tiny`: the `PersonalizedCaptioner` (query-guided mapper + fusion),
   trained with `mmgpt2.training.train`, saved in fp16 with `users.json`;
5. `assets/examples/users/<name>.txt`: histories of the held-out users (one caption per line),
   for ``mmgpt2 caption IMG --model shapes-users-tiny --user-history FILE``.

`benchmarks/personalized.py` imports `prepare` and `TRAIN` from here to train its ClipCap baseline
on the same data with the same budget.

Run: ``python recipes/build_users.py`` (a few minutes on 2 CPU cores); ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from tiny_models import folder_size_mb, train_tiny_gpt2, train_tokenizer

from mmgpt2.apps.personalized import UserPost, UserStore, leave_one_out_contexts
from mmgpt2.checkpoint import atomic_write, copy_folder_atomic
from mmgpt2.paths import assets_dir, models_dir
from mmgpt2.worlds import users
from mmgpt2.worlds.shapes import render

ENCODER = "embedded:shapes-clip"
LM = "embedded:users-gpt2"
#: Settings shared with the benchmark's baseline (same data, same steps, same batch, same lr).
TRAIN = {"max_steps": 1200, "batch_size": 32, "lr": 1e-3, "warmup_steps": 100, "seed": 0}
MODEL = {
    "prefix_length": 6,
    "hidden_dim": 128,
    "num_layers": 2,
    "num_heads": 4,
    "fusion": {"num_layers": 1, "num_heads": 4, "max_context_tokens": 160},
    "context_dropout": 0.1,
}
GENERATION = {"max_new_tokens": 24}
N_POSTS, N_HISTORY, N_TEST, SEED = 120, 120, 60, 0


def build_lm(build_dir: Path, force: bool, quick: bool) -> None:
    out = models_dir() / "users-gpt2"
    texts = users.text_corpus(3000 if quick else 20000, seed=SEED + 1)
    tok_dir = build_dir / "users-tokenizer"
    if quick and not (models_dir() / "shapes-clip").is_dir():
        # The smoke run has its own assets folder: a few-step stand-in for the shipped shapes-clip.
        from tiny_models import train_tiny_clip

        from mmgpt2.worlds.shapes import make_batch

        train_tokenizer(texts, vocab_size=400, out_dir=tok_dir)
        train_tiny_clip(make_batch, tok_dir, models_dir() / "shapes-clip", steps=3, batch_size=16)
    if out.is_dir() and not force:
        return
    train_tokenizer(texts, vocab_size=400, out_dir=tok_dir)
    pairs = users.keyword_pairs(3000 if quick else 20000, seed=SEED + 2)
    train_tiny_gpt2(
        texts,
        tok_dir,
        out,
        n_layer=2 if quick else 3,
        n_embd=128,
        n_head=4,
        steps=30 if quick else 2000,
        batch_size=48,
        n_positions=64,
        seed=SEED,
        pairs=pairs,
        pair_share=0.7,
    )


def prepare(build_dir: Path, quick: bool = False) -> dict:
    """Render the posts and test scenes, extract features; returns posts, histories, test records, store."""
    from mmgpt2.data import extract_features
    from mmgpt2.encoders import load_encoder

    n_posts, n_test = (12, 8) if quick else (N_POSTS, N_TEST)
    img_dir = build_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)

    def save(scene, name: str) -> str:
        path = img_dir / name
        if not path.is_file():
            atomic_write(path, lambda p: render(scene).save(p, format="PNG"))
        return str(path)

    train = [
        UserPost(u, save(s, f"{u}_{i:04d}.png"), c, f"{u}_{i}")
        for u in users.TRAIN_USERS
        for i, (s, c) in enumerate(users.posts(u, n_posts, seed=SEED))
    ]
    histories = {u: [c for _, c in users.posts(u, N_HISTORY, seed=SEED)] for u in users.HELD_OUT_USERS}
    import random

    rng = random.Random(f"test-{SEED}")
    test = []
    for i in range(n_test):
        scene = users.make_scene(rng, n_objects=1)
        test.append(
            {
                "image": save(scene, f"test_{i:04d}.png"),
                "scene": scene,
                "refs": {u: users.caption_as(u, scene) for u in users.USERS},
            }
        )
    encoder = load_encoder(ENCODER)
    # Keyed by the weights: a rebuilt shapes-clip keeps its spec but must not reuse old features.
    store = extract_features(
        [p.image for p in train] + [t["image"] for t in test],
        encoder,
        build_dir / f"features-{encoder.weights_fingerprint()}",
        tokens=True,
    )
    user_store = UserStore.build({u: [p.caption for p in train if p.user == u] for u in users.TRAIN_USERS})
    return {
        "train": train,
        "histories": histories,
        "test": test,
        "features": store,
        "users": user_store,
        "encoder": encoder,
    }


def train_personalized(data: dict, out_dir: Path, quick: bool = False):
    from mmgpt2.apps.personalized import PersonalizedFeatureDataset
    from mmgpt2.apps.personalized.model import PersonalizedCaptioner
    from mmgpt2.lm import load_lm
    from mmgpt2.training import train

    contexts = leave_one_out_contexts(data["train"], data["users"].model)
    dataset = PersonalizedFeatureDataset(data["train"], contexts, data["features"], use_tokens=True)
    cfg = {k: v for k, v in MODEL.items() if k not in ("fusion", "context_dropout")}
    torch.manual_seed(TRAIN["seed"])
    model = PersonalizedCaptioner.build(
        data["encoder"],
        load_lm(LM),
        data["users"],
        fusion=MODEL["fusion"],
        context_dropout=MODEL["context_dropout"],
        generation=GENERATION,
        **cfg,
    )
    steps = 20 if quick else TRAIN["max_steps"]
    final = train(
        model,
        dataset,
        train_config(out_dir, steps),
    )
    return model.eval(), final


def train_config(out_dir: Path, steps: int):
    """`TrainConfig` of the users world's mappers (`TRAIN`); the benchmark's baseline trains alike."""
    from mmgpt2.training import TrainConfig

    return TrainConfig(
        out_dir=str(out_dir),
        max_steps=steps,
        batch_size=TRAIN["batch_size"],
        lr=TRAIN["lr"],
        warmup_steps=TRAIN["warmup_steps"],
        seed=TRAIN["seed"],
        save_every=10**9,  # one checkpoint, at the end
    )


def save_fp16(model, dest: Path, build_dir: Path) -> None:
    """Write the model with fp16 weights (loaders cast back to fp32) and swap it in atomically."""
    stage = build_dir / "fp16-stage"
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for m in (model.mapper, model.fusion):
        m.half()
    model.save_pretrained(stage)
    model.float()
    model.load_state_dict(state)
    copy_folder_atomic(stage, dest)


def write_examples(histories: dict[str, list[str]]) -> None:
    folder = assets_dir() / "examples" / "users"
    for user, history in histories.items():
        atomic_write(
            folder / f"{user}.txt",
            lambda p, h=history: p.write_text("\n".join(h[:40]) + "\n", encoding="utf-8"),
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", default="build/users")
    parser.add_argument("--force", action="store_true", help="rebuild even what exists")
    parser.add_argument(
        "--quick", action="store_true", help="tiny smoke run into build/users-quick (not shipped)"
    )
    args = parser.parse_args(argv)
    if args.quick:  # a smoke run must never overwrite the shipped models
        os.environ["MMGPT2_ASSETS"] = str(Path("build/users-quick/assets").resolve())
    # One thread: on a shared 2-core machine two-thread kernels spin against other processes.
    torch.set_num_threads(1)
    build_dir = Path(args.build_dir + ("-quick" if args.quick else ""))
    t0 = time.time()
    build_lm(build_dir, args.force, args.quick)
    print(f"users-gpt2 ready ({time.time() - t0:.0f}s)")
    data = prepare(build_dir, args.quick)
    print(f"{len(data['train'])} training posts, {len(data['test'])} test scenes ({time.time() - t0:.0f}s)")
    dest = models_dir() / "shapes-users-tiny"
    if dest.is_dir() and not args.force:
        print(f"{dest} exists; --force to retrain")
    else:
        model, _ = train_personalized(data, build_dir / "run", args.quick)
        save_fp16(model, dest, build_dir)
    write_examples(data["histories"])
    sizes = {n: round(folder_size_mb(models_dir() / n), 2) for n in ("users-gpt2", "shapes-users-tiny")}
    print(json.dumps({"seconds": round(time.time() - t0), "size_mb": sizes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
