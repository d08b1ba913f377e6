"""Med-XPT on MIMIC-NLE: a frozen MedCLIP/BiomedCLIP encoder, a trained projector, a frozen GPT-2 and a KG.

The real run needs your credentialed local copies (nothing is downloaded but the public encoder
and GPT-2 weights):

    python recipes/medxpt_mimic_nle.py \\
        --mimic-nle /data/mimic-nle            # mimic-nle-{train,dev,test}.json
        --images /data/mimic-cxr-jpg           # files/pXX/pXXXXXXXX/sYYYYYYYY/*.jpg
        --metadata /data/mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv   # frontal views only
        --reports /data/mimic-cxr-reports.jsonl   # {"id": "s5...", "report": "..."} for the KG
        --encoder open_clip:hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224
        --lm gpt2 --out runs/medxpt

(`--encoder medclip:/path/to/medclip-vit` for MedCLIP; `--triplets kg.jsonl` instead of
`--reports` to use prepared triplets.) The KG is built from *training* studies only, and each
training image's own study is excluded from its retrieval, as in KG-LLaVA.

Smoke mode on the embedded chest world (no data needed, a few minutes on a CPU):

    python recipes/medxpt_mimic_nle.py --world --out runs/medxpt-world
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch


def mimic_examples(args, split: str) -> list[dict]:
    from mmgpt2.apps.medical.mimic_nle import read_mimic_nle, read_view_positions, study_images

    views = read_view_positions(args.metadata) if args.metadata else None
    out, missing = [], 0
    for rec in read_mimic_nle(Path(args.mimic_nle) / f"mimic-nle-{split}.json"):
        images = study_images(args.images, rec, view_positions=views)
        if not images:
            missing += 1
            continue
        out.append(
            {
                "image": str(images[0]),
                "study": rec.study_id,
                "diagnosis": rec.diagnosis_text,
                "explanation": rec.explanation,
            }
        )
    print(f"{split}: {len(out)} examples ({missing} without a frontal image under {args.images})")
    return out


def world_examples(out_dir: Path, split: str, n: int, seed: int) -> tuple[list[dict], dict[str, str]]:
    from mmgpt2.worlds import chest

    folder = out_dir / "world" / split
    recs = chest.make_records(n, seed, folder)
    ex = [
        {
            "image": str(folder / r["image"]),
            "study": r["id"],
            "diagnosis": r["diagnosis"],
            "explanation": r["explanation"],
        }
        for r in recs
    ]
    return ex, {r["id"]: r["report"] for r in recs}


def build_kg(args, encoder, train: list[dict], reports: dict[str, str] | None):
    from mmgpt2.apps.medical import KnowledgeGraph, read_triplets_jsonl

    studies = {e["study"] for e in train}
    if args.triplets:
        rows = [r for r in read_triplets_jsonl(args.triplets) if str(r.get("source_id")) in studies]
        return KnowledgeGraph.from_triplets(rows, encoder)
    if reports is None:
        if not args.reports:
            raise SystemExit(
                "give --reports (JSON lines {id, report}) or --triplets to build the knowledge graph"
            )
        reports = {}
        for line in Path(args.reports).read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                reports[str(row["id"])] = row["report"]
    # Only training studies' reports enter the datastore; test reports never do.
    return KnowledgeGraph.from_reports([(s, reports[s]) for s in sorted(studies) if s in reports], encoder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", action="store_true", help="smoke run on the embedded chest world")
    ap.add_argument("--mimic-nle"), ap.add_argument("--images"), ap.add_argument("--metadata")
    ap.add_argument("--reports"), ap.add_argument("--triplets")
    ap.add_argument(
        "--encoder", default="open_clip:hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    )
    ap.add_argument("--lm", default="gpt2")
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--prefix-length", type=int, default=10)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--no-kg", action="store_true", help="train without retrieved triplets (the ablation)")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()

    from mmgpt2.apps.medical import ExplanationDataset, MedicalExplainer
    from mmgpt2.data import FeatureStore, extract_features
    from mmgpt2.training import TrainConfig, train

    out = Path(args.out)
    reports = None
    if args.world:
        args.encoder, args.lm = "embedded:chest-clip", "embedded:chest-gpt2"
        args.max_steps = args.max_steps or 60
        args.batch_size, args.lr, args.prefix_length, args.layers = 16, 1e-3, 8, 2
        train_ex, reports = world_examples(out, "train", 300, seed=11)
        test_ex, _ = world_examples(out, "test", 40, seed=12)
    else:
        missing = [f for f in ("mimic_nle", "images") if not getattr(args, f)]
        if missing:
            raise SystemExit(
                f"give --{' --'.join(m.replace('_', '-') for m in missing)} (or --world for the smoke run)"
            )
        train_ex, test_ex = mimic_examples(args, "train"), mimic_examples(args, "test")

    # lead_eos: GPT-2 read its documents after <|endoftext|>, and so did the embedded chest-gpt2.
    model = MedicalExplainer.build(
        args.encoder,
        args.lm,
        prefix_length=args.prefix_length,
        num_layers=args.layers,
        num_heads=8 if not args.world else 4,
        generation={"max_new_tokens": 40},
        lead_eos=True,
    )
    store = extract_features(
        [e["image"] for e in train_ex + test_ex], model.encoder, out / "features", tokens=True
    )
    store = FeatureStore(out / "features")
    train_ex = [e for e in train_ex if e["image"] in store]
    if not args.no_kg:
        model.kg = build_kg(args, model.encoder, train_ex, reports)
        print(f"knowledge graph: {model.kg}")
    pooled = torch.stack([store.pooled(e["image"]) for e in train_ex])
    prompts, _ = model.prompts_for(
        pooled,
        [e["diagnosis"] for e in train_ex],
        use_kg=not args.no_kg,
        exclude_source=[e["study"] for e in train_ex],
    )
    items = [
        {"image": e["image"], "prompt": p, "explanation": e["explanation"]}
        for e, p in zip(train_ex, prompts, strict=True)
    ]
    final = train(
        model,
        ExplanationDataset(items, store),
        TrainConfig(
            out_dir=str(out / "run"),
            epochs=args.epochs,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_steps=min(500, (args.max_steps or 5000) // 10),
            resume=args.resume,
        ),
    )
    trained = MedicalExplainer.from_pretrained(final, encoder=model.encoder, lm=model.lm)
    trained.kg = model.kg
    trained.save_pretrained(out / "model")

    test_ex = [e for e in test_ex if e["image"] in store]
    pooled = torch.stack([store.pooled(e["image"]) for e in test_ex])
    tokens = torch.stack([store.tokens(e["image"]) for e in test_ex])
    preds = []
    for i in range(0, len(test_ex), 32):
        preds += trained.explain_features(
            pooled[i : i + 32],
            tokens[i : i + 32],
            [e["diagnosis"] for e in test_ex[i : i + 32]],
            use_kg=not args.no_kg,
        )
    rows = [
        {**e, "prediction": p["explanation"], "triplets": p["triplets"]}
        for e, p in zip(test_ex, preds, strict=True)
    ]
    (out / "test_predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        from mmgpt2.eval.captions import score_captions

        scores = score_captions(
            {str(i): r["prediction"] for i, r in enumerate(rows)},
            {str(i): [r["explanation"]] for i, r in enumerate(rows)},
        )
        print(json.dumps(scores, indent=2))
    except ImportError as err:
        print(f"scores skipped ({err}); predictions are in {out / 'test_predictions.jsonl'}")
    for r in random.Random(0).sample(rows, min(3, len(rows))):
        print(f"- {r['diagnosis']}: {r['prediction']!r} (truth: {r['explanation']!r})")
    print(f"saved the explainer to {out / 'model'}")


if __name__ == "__main__":
    main()
