"""Med-XPT on MIMIC-NLE: a frozen MedCLIP/BiomedCLIP encoder, a trained projector, a frozen GPT-2 and a KG.

The real run reads your credentialed local copies as PhysioNet ships them, with no conversion
step (nothing is downloaded but the public encoder and GPT-2 weights):

    python recipes/medxpt_mimic_nle.py \\
        --mimic-nle /data/mimic-nle               # mimic-nle-{train,dev,test}.json (maximek3/MIMIC-NLE)
        --images /data/mimic-cxr-jpg/2.0.0        # files/p1X/p1XXXXXXX/sYYYYYYYY/<dicom_id>.jpg
        --reports /data/mimic-cxr/2.0.0           # files/p1X/p1XXXXXXX/sYYYYYYYY.txt, for the KG
        --out runs/medxpt

The setup comes from the named config ``medxpt-mimic-nle`` (BiomedCLIP + GPT-2, top-7 triplets);
flags given here override it (``--encoder medclip:/path/to/medclip`` for MedCLIP). Each study's
image is its frontal view, PA before AP, from ``mimic-cxr-2.0.0-metadata.csv(.gz)`` (``--metadata``,
found by itself in the ``--images`` folder); without it the recipe says loudly that it takes each
study's first image by file name, which is often a lateral view. The KG is built from the
*training* studies' reports only (FINDINGS and IMPRESSION, unwrapped and split into sentences;
``--triplets kg.jsonl`` uses prepared triplets instead), and each training image's own study is
excluded from its retrieval, as in KG-LLaVA. A diagnosis that MIMIC-NLE's ``img_labels`` marks
uncertain is asked about as uncertain ("why does this chest x-ray suggest possible edema?").

The prefix, the prompt (7 triplets + the question) and the explanation must fit the LM's context:
GPT-2 has 1024 positions, but the embedded ``embedded:chest-gpt2`` only 160, too few for
real-length triplets. The recipe checks every example before training and stops with a message
naming the LM to use (``--lm gpt2``) or ``--kg-k`` to lower.

Writes OUT/predictions.json (``[{"id": sentence_ID, "image", "prediction", "references", "diagnosis",
"study", "triplets"}]``), OUT/scores.json (test explanations not scored are listed by id with the
reason) and the trained explainer with its KG in OUT/model.

Smoke mode on the embedded chest world (no data needed, a few minutes on a CPU):

    python recipes/medxpt_mimic_nle.py --world --out runs/medxpt-world
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipe_common, when imported from elsewhere

import recipe_common as common  # noqa: E402

CONFIG = "medxpt-mimic-nle"
METADATA_NAMES = ("mimic-cxr-2.0.0-metadata.csv.gz", "mimic-cxr-2.0.0-metadata.csv")
NO_METADATA = (
    "WARNING: no mimic-cxr-2.0.0-metadata.csv(.gz) given (--metadata) or found in {images}: the view "
    "positions are unknown, so each study's FIRST image by file name is used, and in MIMIC-CXR that is "
    "often a LATERAL view. Pass --metadata for frontal views (PA, then AP)."
)


def find_metadata(args) -> Path | None:
    if args.metadata:
        return Path(args.metadata)
    for name in METADATA_NAMES:
        if (Path(args.images) / name).is_file():
            return Path(args.images) / name
    return None


def mimic_examples(args, split: str, views, unscored: dict[str, str]) -> list:
    """One example per MIMIC-NLE explanation of `split` with a usable image; the others go to `unscored`."""
    from mmgpt2.apps.medical.mimic_nle import read_mimic_nle, study_images

    records = common.limited(read_mimic_nle(Path(args.mimic_nle) / f"mimic-nle-{split}.json"), args.limit)
    out = []
    for rec in records:
        images = study_images(args.images, rec, view_positions=views)
        if not images:
            unscored[rec.sentence_id] = "no frontal image" if views is not None else "no image"
            continue
        out.append(
            {
                "id": rec.sentence_id,
                "image": str(images[0]),
                "study": rec.study_id,
                "diagnosis": rec.diagnosis_text,
                "explanation": rec.explanation,
                "record": rec,
            }
        )
    print(
        f"{split}: {len(out)} explanations with an image ({len(records) - len(out)} without, under {args.images})"
    )
    return out


def world_examples(out_dir: Path, split: str, n: int, seed: int) -> tuple[list[dict], dict[str, str]]:
    from mmgpt2.worlds import chest

    folder = out_dir / "world" / split
    recs = chest.make_records(n, seed, folder)
    ex = [
        {
            "id": r["id"],
            "image": str(folder / r["image"]),
            "study": r["id"],
            "diagnosis": r["diagnosis"],
            "explanation": r["explanation"],
        }
        for r in recs
    ]
    return ex, {r["id"]: r["report"] for r in recs}


def build_kg(args, encoder, train: list[dict], reports: dict[str, str] | None):
    """The KG from the training studies only: prepared triplets, or the reports folder read directly."""
    from mmgpt2.apps.medical import KnowledgeGraph, read_triplets_jsonl
    from mmgpt2.apps.medical.mimic_nle import read_study_reports
    from mmgpt2.errors import Mmgpt2Error

    studies = {e["study"] for e in train}
    if args.triplets:
        rows = [r for r in read_triplets_jsonl(args.triplets) if str(r.get("source_id")) in studies]
        return KnowledgeGraph.from_triplets(rows, encoder)
    if reports is None:
        if not args.reports:
            raise Mmgpt2Error(
                "give --reports (MIMIC-CXR's reports folder, files/p1X/p1XXXXXXX/sYYYYYYYY.txt) or "
                "--triplets to build the knowledge graph, or --no-kg"
            )
        reports, missing = read_study_reports(args.reports, [e["record"] for e in train])
        print(f"knowledge graph from {len(reports)} training reports ({len(missing)} studies without one)")
    # Only training studies' reports enter the datastore; test reports never do.
    return KnowledgeGraph.from_reports([(s, reports[s]) for s in sorted(studies) if s in reports], encoder)


def check_prompt_room(model, prompts: list[str], explanations: list[str | None], max_new_tokens: int) -> None:
    """Stop before training when prefix + prompt + explanation (or the generation budget) overflow the LM.

    The LM would otherwise cut explanations short in training (a warning per batch) and have no
    room to answer at test time.
    """
    from mmgpt2.errors import Mmgpt2Error

    lm = model.lm
    prefix = model.mapper.config.prefix_length + int(model.lead_eos)
    prompt_ids = lm.tokenize(prompts)
    answer_ids = lm.tokenize([" " + e.strip() if e else "" for e in explanations], add_eos=True)
    needed = [
        prefix + len(p) + max(len(a) if e else 0, max_new_tokens)
        for p, a, e in zip(prompt_ids, answer_ids, explanations, strict=True)
    ]
    over = [i for i, n in enumerate(needed) if n > lm.max_positions]
    if over:
        worst = max(over, key=lambda i: needed[i])
        room = lm.max_positions - prefix - len(prompt_ids[worst])
        raise Mmgpt2Error(
            f"{len(over)} of {len(prompts)} prompts leave too little room in the LM's context ({lm.spec!r}: "
            f"{lm.max_positions} tokens): the worst has a {prefix}-token prefix and a {len(prompt_ids[worst])}-token prompt, leaving "
            f"{room} tokens for a {needed[worst] - prefix - len(prompt_ids[worst])}-token explanation; use an LM "
            "with a longer context (--lm gpt2: 1024 positions), fewer triplets (--kg-k), or --no-kg"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", action="store_true", help="smoke run on the embedded chest world")
    ap.add_argument("--mimic-nle", help="folder of mimic-nle-{train,dev,test}.json")
    ap.add_argument("--images", help="MIMIC-CXR-JPG folder holding files/ (and the metadata CSV)")
    ap.add_argument("--metadata", help="mimic-cxr-2.0.0-metadata.csv(.gz) (default: found in --images)")
    ap.add_argument("--reports", help="MIMIC-CXR reports folder holding files/p1X/p1XXXXXXX/sYYYYYYYY.txt")
    ap.add_argument("--triplets", help="prepared triplets JSON lines instead of --reports")
    common.add_model_arguments(ap, CONFIG)
    common.add_train_arguments(ap)
    ap.add_argument("--prefix-length", type=int)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--kg-k", type=int, help="triplets in each prompt (default: the config's, 7)")
    ap.add_argument(
        "--max-new-tokens", type=int, help="explanation length at test time (default: the config's)"
    )
    ap.add_argument("--no-kg", action="store_true", help="train without retrieved triplets (the ablation)")
    args = ap.parse_args(argv)

    import torch

    from mmgpt2.apps.medical import ExplanationDataset, MedicalExplainer
    from mmgpt2.apps.medical.mimic_nle import read_view_positions
    from mmgpt2.configs import build_from_config
    from mmgpt2.data import extract_features
    from mmgpt2.eval.captions import score_captions
    from mmgpt2.training import train

    named = common.load_config(args)
    out = args.out
    reports = None
    unscored: dict[str, str] = {}
    overrides = {"prefix_length": args.prefix_length, "num_layers": args.layers, "kg_k": args.kg_k}
    if args.world:
        args.encoder, args.lm = "embedded:chest-clip", "embedded:chest-gpt2"
        args.max_steps = args.max_steps or 60
        args.batch_size, args.lr = args.batch_size or 16, args.lr or 1e-3
        overrides = {
            "prefix_length": 8,
            "num_layers": 2,
            "num_heads": 4,
            **{k: v for k, v in overrides.items() if v},
        }
        train_ex, reports = world_examples(out, "train", 300, seed=11)
        test_ex, _ = world_examples(out, "test", 40, seed=12)
    else:
        missing = [f for f in ("mimic_nle", "images") if not getattr(args, f)]
        if missing:
            ap.error(
                f"give --{' --'.join(m.replace('_', '-') for m in missing)} (or --world for the smoke run)"
            )
        metadata = find_metadata(args)
        views = read_view_positions(metadata) if metadata else None
        if views is None:
            print(NO_METADATA.format(images=args.images), file=sys.stderr)
        train_ex = mimic_examples(args, "train", views, {})
        test_ex = mimic_examples(args, "test", views, unscored)

    settings = common.build_settings(named, **overrides)
    generation = dict(settings.get("generation", {}))
    if args.max_new_tokens:
        generation["max_new_tokens"] = args.max_new_tokens
    settings["generation"] = generation
    common.seed_everything(named, args)
    model = build_from_config(named, args.encoder, args.lm, **settings)
    store = extract_features(
        [e["image"] for e in train_ex + test_ex], model.encoder, out / "features", tokens=True
    )
    unscored.update({e["id"]: "image unreadable" for e in test_ex if e["image"] not in store})
    train_ex = [e for e in train_ex if e["image"] in store]
    test_ex = [e for e in test_ex if e["image"] in store]
    if not args.no_kg:
        model.kg = build_kg(args, model.encoder, train_ex, reports)
        print(f"knowledge graph: {model.kg}")

    def prompts_of(examples: list[dict], exclude_own: bool) -> list[str]:
        if not examples:
            return []
        pooled = torch.stack([store.pooled(e["image"]) for e in examples])
        exclude = [e["study"] for e in examples] if exclude_own else None
        return model.prompts_for(
            pooled, [e["diagnosis"] for e in examples], use_kg=not args.no_kg, exclude_source=exclude
        )[0]

    train_prompts, test_prompts = prompts_of(train_ex, True), prompts_of(test_ex, False)
    check_prompt_room(
        model,
        train_prompts + test_prompts,
        [e["explanation"] for e in train_ex] + [None] * len(test_prompts),
        generation.get("max_new_tokens", 40),
    )
    items = [
        {"image": e["image"], "prompt": p, "explanation": e["explanation"]}
        for e, p in zip(train_ex, train_prompts, strict=True)
    ]
    final = train(model, ExplanationDataset(items, store), common.train_config(named, args, out / "run"))
    trained = MedicalExplainer.from_pretrained(final, encoder=model.encoder, lm=model.lm)
    trained.kg = model.kg
    trained.save_pretrained(out / "model")

    preds = []
    for i in range(0, len(test_ex), 32):
        chunk = test_ex[i : i + 32]
        preds += trained.explain_features(
            torch.stack([store.pooled(e["image"]) for e in chunk]),
            torch.stack([store.tokens(e["image"]) for e in chunk]),
            [e["diagnosis"] for e in chunk],
            use_kg=not args.no_kg,
        )
    rows = [
        {
            "id": e["id"],
            "image": e["image"],
            "prediction": p["explanation"],
            "references": [e["explanation"]],
            "diagnosis": e["diagnosis"],
            "study": e["study"],
            "triplets": p["triplets"],
        }
        for e, p in zip(test_ex, preds, strict=True)
    ]
    scores: dict = {}
    if rows:
        scores = score_captions(
            {r["id"]: r["prediction"] for r in rows},
            {r["id"]: r["references"] for r in rows},
            common.metrics(args),
        )
    scores["explanations_scored"] = len(rows)
    scores["unscored"] = unscored
    common.write_results(out, rows, scores)
    for r in random.Random(0).sample(rows, min(3, len(rows))):
        print(f"- {r['diagnosis']}: {r['prediction']!r} (truth: {r['references'][0]!r})")
    print(f"saved the explainer to {out / 'model'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(common.run_main(main))
