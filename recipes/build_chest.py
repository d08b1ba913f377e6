"""Build the chest world's embedded models: tokenizer, `chest-gpt2`, `chest-clip`, `chest-tiny` (+ KG).

Stages (each skipped when its output exists; `--force` redoes all):

1. a byte-level BPE tokenizer on the world's text (reports, prompts, explanations);
2. `assets/models/chest-gpt2`: a tiny GPT-2 pretrained on that text, then frozen;
3. `assets/models/chest-clip`: a tiny open_clip trained contrastively on (image, triplet text);
4. train/test chest data under `--build-dir`, their features (pooled + patch tokens);
5. the knowledge graph from the *training reports* (pattern extractor), triplets only;
6. `assets/models/chest-tiny`: the Med-XPT explainer trained with retrieved triplets in the prompt
   (the training image's own study excluded from its retrieval), shipped with its graph in `kg/`;
7. `<build-dir>/chest-tiny-nokg`: the same explainer, same budget, without triplets (for
   `benchmarks/medical.py`);
8. `<build-dir>/unseen-kg` and `unseen-nokg`: the pair again, trained only on explanations of
   finding kinds outside `chest.UNSEEN_KINDS` and only on diagnosis questions (the benchmark's
   unseen-kinds table).

Run: ``python recipes/build_chest.py`` (about 25 minutes on one CPU core; ``--only gpt2`` and
``--only clip`` can run side by side, then ``--only data``, then ``--only kg``, ``--only nokg`` and
``--only unseen``);
``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import torch
from tiny_models import folder_size_mb, train_tiny_clip, train_tiny_gpt2, train_tokenizer

from mmgpt2.paths import models_dir
from mmgpt2.worlds import chest

CLIP_CFG = {
    "embed_dim": 64,
    # 64 px in 16 px patches: a 4x4 grid is enough to tell the side and the lobe of a finding, and
    # small enough to train in minutes on a busy 2-core machine.
    "vision_cfg": {
        "image_size": 64,
        "patch_size": 16,
        "width": 64,
        "layers": 2,
        "head_width": 32,
        "mlp_ratio": 4.0,
    },
    "text_cfg": {"context_length": 32, "width": 64, "heads": 2, "layers": 1, "mlp_ratio": 4.0},
}
ALL_TRIPLETS = sorted({chest.triplet_line(c) for c in chest.all_cases() if c.kind})


def clip_text(case: chest.ChestCase) -> str:
    return chest.triplet_line(case) if case.kind else "clear lungs with no acute finding"


def corpus(n: int, seed: int) -> list[str]:
    """Domain text for the tokenizer and the frozen GPT-2: reports and prompt + explanation documents."""
    from mmgpt2.apps.medical.prompt import build_prompt

    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        case = chest.sample_case(rng)
        texts.append(case.report(rng))
        triplets = chest.distractor_triplets(case, rng, 7) if rng.random() < 0.6 else None
        diagnosis = case.diagnosis if rng.random() < 0.8 else None
        texts.append(build_prompt(triplets, diagnosis) + " " + case.explanation(rng))
    return texts


def report_explanation_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """(report, explanation) of one case: pretraining on them teaches the frozen GPT-2 to take the
    finding from whatever precedes the explanation, the slot the image prefix fills later (see
    `tiny_models.train_tiny_gpt2`)."""
    rng = random.Random(seed)
    return [(c.report(rng), c.explanation(rng)) for c in (chest.sample_case(rng) for _ in range(n)) if c.kind]


class ClipBatches:
    """Batches from a pool of pre-rendered cases (rendering each batch afresh would double CLIP time).

    Half the picks are followed by a case of the same finding kind with another triplet (other
    side, lobe or severity): random batches rarely hold such near misses, and without them the
    tiny CLIP learns the kind of a finding but not which triplet of that kind it is.
    """

    def __init__(self, n: int, seed: int = 100, hard_negatives: float = 0.5):
        rng = random.Random(seed)
        cases = [chest.sample_case(rng) for _ in range(n)]
        self.pool = [(chest.render_case(c, rng).convert("RGB"), clip_text(c)) for c in cases]
        self.by_kind: dict[str | None, list[int]] = {}
        for i, c in enumerate(cases):
            self.by_kind.setdefault(c.kind, []).append(i)
        self.kind_of = [c.kind for c in cases]
        self.hard_negatives = hard_negatives

    def __call__(self, rng: random.Random, n: int):
        picks: list[int] = []
        while len(picks) < n:
            i = rng.randrange(len(self.pool))
            picks.append(i)
            same = self.by_kind[self.kind_of[i]]
            if len(picks) < n and rng.random() < self.hard_negatives:
                twins = [j for j in rng.sample(same, min(8, len(same))) if self.pool[j][1] != self.pool[i][1]]
                if twins:
                    picks.append(twins[0])
        return [self.pool[i][0] for i in picks], [self.pool[i][1] for i in picks]


def train_explainer(
    encoder,
    lm,
    kg,
    records,
    store,
    out_dir: Path,
    steps: int,
    use_kg: bool,
    seed: int = 0,
    open_question_share: float = 0.25,
):
    """Train one explainer on `records`; `open_question_share` of them are asked "what does this
    chest x-ray show?" instead of the diagnosis question, so `explain(diagnosis=None)` is a question
    the explainer has seen (trained on diagnosis questions only, it answered "clear lungs" to an
    effusion when asked the open one)."""
    from mmgpt2.apps.medical import ExplanationDataset, MedicalExplainer
    from mmgpt2.training import TrainConfig, train

    torch.manual_seed(seed)
    # lead_eos: chest-gpt2 read every pretraining document after an EOS (see MedicalExplainer.prefix)
    model = MedicalExplainer.build(
        encoder,
        lm,
        prefix_length=8,
        num_layers=2,
        num_heads=4,
        generation={"max_new_tokens": 32},
        kg=kg if use_kg else None,
        lead_eos=True,
    )
    paths = [r["path"] for r in records]
    pooled = torch.stack([store.pooled(p) for p in paths])
    rng = random.Random(seed)
    diagnoses = [None if rng.random() < open_question_share else r["diagnosis"] for r in records]
    prompts, _ = model.prompts_for(
        pooled, diagnoses, use_kg=use_kg, exclude_source=[r["id"] for r in records]
    )
    items = [
        {"image": p, "prompt": q, "explanation": r["explanation"]}
        for p, q, r in zip(paths, prompts, records, strict=True)
    ]
    run_dir = out_dir.with_name(f".{out_dir.name}.run")
    final = train(
        model,
        ExplanationDataset(items, store),
        TrainConfig(
            out_dir=str(run_dir),
            max_steps=steps,
            batch_size=16,
            lr=1e-3,
            warmup_steps=max(1, steps // 10),
            save_every=10**9,
            seed=seed,
        ),
    )
    trained = MedicalExplainer.from_pretrained(final, encoder=encoder, lm=lm)
    trained.kg = kg if use_kg else None
    trained.save_pretrained(out_dir)
    import shutil

    shutil.rmtree(run_dir, ignore_errors=True)
    return out_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default="build/chest")
    ap.add_argument(
        "--quick", action="store_true", help="tiny step counts: a smoke run, not shippable models"
    )
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--n-train", type=int, default=1500)
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--explainer-steps", type=int, default=600)
    ap.add_argument("--clip-steps", type=int, default=1500)
    ap.add_argument("--gpt2-steps", type=int, default=1000)
    # 4 x 128: the 2-layer, 64-wide first build could not copy the top triplet's severity from
    # ~60 tokens back and wrote the most common one instead.
    ap.add_argument("--gpt2-layers", type=int, default=4)
    ap.add_argument("--gpt2-width", type=int, default=128)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (2-thread kernels crawl on a busy 2-core box)"
    )
    ap.add_argument(
        "--gpt2-prefix-slot",
        type=int,
        default=8,
        help="soft vectors after the EOS in pretraining (the explainer's prefix length; 0: none)",
    )
    ap.add_argument(
        "--only",
        choices=["gpt2", "clip", "data", "kg", "nokg", "unseen"],
        help="run one stage: gpt2 and clip can run in parallel, then data, then kg, nokg and unseen in parallel",
    )
    args = ap.parse_args()
    torch.set_num_threads(max(1, args.threads))
    q = args.quick
    if args.quick:  # a smoke run must never overwrite the shipped models
        os.environ["MMGPT2_ASSETS"] = str(Path("build/chest-quick/assets").resolve())
    build = Path(args.build_dir)
    build.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    times = {}

    def stage(name, out: Path, fn):
        if out.exists() and not args.force:
            print(f"[skip] {name}: {out} exists")
            return
        s = time.time()
        fn()
        times[name] = time.time() - s
        print(f"[done] {name} in {times[name]:.0f}s")

    tok = build / "tokenizer"
    texts = corpus(300 if q else 4000, seed=0)
    stage("tokenizer", tok, lambda: train_tokenizer(texts, vocab_size=700, out_dir=tok))
    gpt2_dir = models_dir() / "chest-gpt2"
    if args.only != "clip":
        stage(
            "chest-gpt2",
            gpt2_dir,
            lambda: train_tiny_gpt2(
                texts,
                tok,
                gpt2_dir,
                n_layer=args.gpt2_layers,
                n_embd=args.gpt2_width,
                n_head=4,
                n_positions=160,
                steps=20 if q else args.gpt2_steps,
                batch_size=16 if q else 32,
                pairs=report_explanation_pairs(300 if q else 4000, seed=3),
                prefix_slot=args.gpt2_prefix_slot,
            ),
        )
    if args.only == "gpt2":
        return
    clip_dir = models_dir() / "chest-clip"
    stage(
        "chest-clip",
        clip_dir,
        lambda: train_tiny_clip(
            ClipBatches(300 if q else 4000),
            tok,
            clip_dir,
            model_cfg=CLIP_CFG,
            steps=20 if q else args.clip_steps,
            batch_size=32 if q else 64,
            lr=2e-3,
        ),
    )
    if args.only == "clip":
        return

    from mmgpt2.apps.medical import KnowledgeGraph, PatternExtractor
    from mmgpt2.data import extract_features
    from mmgpt2.encoders import load_encoder
    from mmgpt2.lm import load_lm

    encoder, lm = load_encoder("embedded:chest-clip"), load_lm("embedded:chest-gpt2")
    n_train, n_test = (200, 50) if q else (args.n_train, args.n_test)
    splits = {}
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        folder = build / split
        stage(
            f"{split} data",
            folder / "records.jsonl",
            lambda f=folder, n=n, s=seed: chest.make_records(n, s, f),
        )
        recs = [json.loads(x) for x in (folder / "records.jsonl").read_text().splitlines()]
        for r in recs:
            r["path"] = str(folder / r["image"])
        splits[split] = recs
    feats = build / f"features-{encoder.weights_fingerprint()}"  # a retrained chest-clip keeps its spec
    stage(
        "features",
        feats / "index.json",
        lambda: extract_features(
            [r["path"] for s in splits.values() for r in s], encoder, feats, tokens=True
        ),
    )
    from mmgpt2.data import FeatureStore

    store = FeatureStore(feats)
    # The graph holds triplets extracted from the training reports only: never test reports, never images.
    kg = KnowledgeGraph.from_reports(
        [(r["id"], r["report"]) for r in splits["train"]], encoder, extractor=PatternExtractor()
    )
    print(f"knowledge graph: {kg}")
    steps = 30 if q else args.explainer_steps
    if args.only == "data":
        return
    if args.only in (None, "kg"):
        stage(
            "chest-tiny",
            models_dir() / "chest-tiny",
            lambda: train_explainer(
                encoder, lm, kg, splits["train"], store, models_dir() / "chest-tiny", steps, use_kg=True
            ),
        )
    if args.only in (None, "nokg"):
        stage(
            "chest-tiny-nokg",
            build / "chest-tiny-nokg",
            lambda: train_explainer(
                encoder, lm, kg, splits["train"], store, build / "chest-tiny-nokg", steps, use_kg=False
            ),
        )
    if args.only in (None, "unseen"):
        # Med-XPT's task as MIMIC-NLE poses it: the suspected diagnosis is always given. Mixing in
        # open questions makes the projector encode the finding kind itself, and for kinds it never
        # saw that pulls the text away from the retrieved triplet (exact finding 77% -> 57% with the KG).
        seen = [r for r in splits["train"] if r["case"]["kind"] not in chest.UNSEEN_KINDS]
        for use_kg in (True, False):
            out = build / f"unseen-{'kg' if use_kg else 'nokg'}"
            stage(
                out.name,
                out,
                lambda o=out, u=use_kg: train_explainer(
                    encoder, lm, kg, seen, store, o, steps, use_kg=u, open_question_share=0.0
                ),
            )
    if args.only:
        return
    sizes = {n: folder_size_mb(models_dir() / n) for n in ("chest-clip", "chest-gpt2", "chest-tiny")}
    print(
        "asset sizes (MB):",
        {k: round(v, 2) for k, v in sizes.items()},
        "total",
        round(sum(sizes.values()), 2),
    )
    print("stage times (s):", {k: round(v) for k, v in times.items()}, f"total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
