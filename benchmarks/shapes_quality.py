"""Caption quality of the shipped shapes captioners on held-out scenes (seeds the recipe never uses).

Prints BLEU-4 / METEOR / CIDEr (pycocoevalcap) and attribute accuracy (every attribute word of
every object right), one- vs two-object scenes, for each shipped mapper side by side, next to a
baseline measured in the same run: zero-shot retrieval of the nearest canonical caption with the
tiny CLIP's own text tower (all 240 one-object and 9,216 two-object canonical captions).

Usage:
    python benchmarks/shapes_quality.py            # 500 scenes (250 one-object, 250 two-object)
    python benchmarks/shapes_quality.py --n 100    # quicker
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from mmgpt2.worlds import shapes

SEED = 90_000  # held out: recipes/build_worlds.py uses seeds < 10


@torch.no_grad()
def retrieval_baseline(encoder, pooled: torch.Tensor, candidates: list[str]) -> list[str]:
    text = torch.cat([encoder.encode_text(candidates[i : i + 512]) for i in range(0, len(candidates), 512)])
    sims = torch.nn.functional.normalize(pooled, dim=-1) @ torch.nn.functional.normalize(text, dim=-1).t()
    return [candidates[i] for i in sims.argmax(1).tolist()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n", type=int, default=500, help="held-out scenes, half one-object, half two-object"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from mmgpt2.apps.captioning.model import PrefixCaptioner
    from mmgpt2.paths import list_embedded_models

    names = [
        n
        for n in ("shapes-tiny", "shapes-tiny-mlp", "shapes-tiny-transformer")
        if n in list_embedded_models()
    ]
    first = PrefixCaptioner.from_pretrained(names[0])
    models = {names[0]: first} | {
        n: PrefixCaptioner.from_pretrained(n, encoder=first.encoder, lm=first.lm) for n in names[1:]
    }
    rng = random.Random(SEED)
    groups = {k: [shapes.make_scene(rng, n_objects=k) for _ in range(args.n // 2)] for k in (1, 2)}
    feats = {k: first.encode_images([shapes.render(s) for s in scenes]) for k, scenes in groups.items()}

    systems: dict[str, dict[int, list[str]]] = {}
    timings: dict[str, float] = {}
    start = time.time()
    cands = shapes.canonical_captions(1) + shapes.canonical_captions(2)
    systems["baseline: CLIP retrieval"] = {
        k: retrieval_baseline(first.encoder, feats[k][0], cands) for k in groups
    }
    timings["baseline: CLIP retrieval"] = time.time() - start
    for name, model in models.items():
        mapper = model.mapper.config.type
        start = time.time()
        systems[f"{name} ({mapper})"] = {k: model.caption_features(*feats[k]) for k in groups}
        timings[f"{name} ({mapper})"] = time.time() - start

    from mmgpt2.eval import score_caption_groups

    ids = {k: [f"{k}-{i}" for i in range(len(scenes))] for k, scenes in groups.items()}
    refs = {
        k: {i: shapes.captions(s) for i, s in zip(ids[k], scenes, strict=True)}
        for k, scenes in groups.items()
    }
    scores = score_caption_groups(  # one corpus per (system, scene kind), one Java start-up
        {
            f"{system}|{k}": (dict(zip(ids[k], preds[k], strict=True)), refs[k])
            for system, preds in systems.items()
            for k in groups
        },
        metrics=("BLEU-4", "METEOR", "CIDEr"),
    )
    rows = []
    for system, preds in systems.items():
        row = {"system": system}
        for k, scenes in groups.items():
            row |= {f"{m} ({k}-obj)": v for m, v in scores[f"{system}|{k}"].items()}
            row[f"attr acc ({k}-obj)"] = sum(
                shapes.attribute_accuracy(p, s) for p, s in zip(preds[k], scenes, strict=True)
            ) / len(scenes)
        row["s/100 img"] = 100 * timings[system] / args.n
        rows.append(row)

    cols = [c for c in rows[0] if c != "system"]
    base = rows[0]
    print(f"\nshapes world, {args.n} held-out scenes (seed {SEED}); ratio = system / baseline (same run)\n")
    print(f"{'system':34s}" + "".join(f"{c:>18s}" for c in cols))
    for row in rows:
        print(f"{row['system']:34s}" + "".join(f"{row[c]:18.3f}" for c in cols))
        if row is not base:
            ratios = [row[c] / base[c] if base[c] else float("nan") for c in cols]
            print(f"{'  ratio vs baseline':34s}" + "".join(f"{r:17.2f}x" for r in ratios))
    print("\nexamples (two-object):")
    for i in range(3):
        print(f"  truth: {shapes.captions(groups[2][i])[0]}")
        for system, preds in systems.items():
            print(f"    {system:32s} {preds[2][i]}")


if __name__ == "__main__":
    main()
