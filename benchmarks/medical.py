"""Med-XPT on the chest world: KG retrieval, explanations with vs without the KG, datastore scale.

Four tables, each with its baseline measured in the same run:

1. retrieval: recall@1 / recall@7 of the exact correct triplet (finding + diagnosis) and of a
   triplet with the right diagnosis, for held-out chest images queried against the shipped KG
   (built from training reports only); baseline: the same KG ranked at random.
2. explanations: BLEU-4, METEOR, ROUGE-L, CIDEr and the share naming the right finding (exact
   finding phrase: severity, side, kind), `chest-tiny` (with KG) vs the no-KG explainer trained
   with the same budget by `recipes/build_chest.py`, asked about the diagnosis and asked the open
   question (`diagnosis=None`); references are the three phrasings of the case's explanation.
3. unseen finding kinds: the same pair of explainers trained on every kind but
   `chest.UNSEEN_KINDS` (their images and reports still train chest-clip and fill the KG) and on
   diagnosis questions only, scored on held-out images of those kinds and of the others.
4. scale: build throughput, top-7 latency and recall@7 against exact search of `KnowledgeGraph`
   with its flat and IVF indexes at `--scale` clustered random vectors, against a NumPy
   matmul + argpartition baseline.

Usage:
    python recipes/build_chest.py                  # once: models, held-out data, the no-KG variant
    python benchmarks/medical.py                   # all three tables
    python benchmarks/medical.py --skip-scale      # only the chest-world tables
    python benchmarks/medical.py --scale 100000    # a smaller scale test
"""

from __future__ import annotations

import argparse
import json
import random
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

HELD_OUT_SEED = 777  # recipes/build_chest.py uses seeds 0-2 and 100


def held_out(n: int):
    from mmgpt2.worlds import chest

    rng = random.Random(HELD_OUT_SEED)
    cases = [chest.sample_case(rng) for _ in range(n)]
    images = [chest.render_case(c, rng).convert("RGB") for c in cases]
    return cases, images


def references(case) -> list[str]:
    if case.kind is None:
        return [case.explanation(random.Random(0))]
    return [
        f"{case.finding} {v} {case.diagnosis.lower()}"
        for v in ("suggesting", "consistent with", "in keeping with")
    ]


def score(preds: dict[str, str], refs: dict[str, list[str]]) -> dict[str, float]:
    try:
        from mmgpt2.eval.captions import score_captions
    except ImportError:  # the lead's module not there yet: the same pycocoevalcap scorers directly
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.meteor.meteor import Meteor
        from pycocoevalcap.rouge.rouge import Rouge

        def score_captions(p, r):
            gts, res = {k: r[k] for k in p}, {k: [p[k]] for k in p}
            out = dict(zip(["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"], Bleu(4).compute_score(gts, res)[0]))
            out["METEOR"] = Meteor().compute_score(gts, res)[0]
            out["ROUGE_L"] = Rouge().compute_score(gts, res)[0]
            out["CIDEr"] = Cider().compute_score(gts, res)[0]
            return out

    s = score_captions(preds, refs)
    pick = lambda *names: next((float(s[n]) for n in names if n in s), float("nan"))  # noqa: E731
    return {
        "BLEU-4": pick("BLEU-4", "Bleu_4", "bleu4"),
        "METEOR": pick("METEOR", "meteor"),
        "ROUGE-L": pick("ROUGE_L", "ROUGE-L", "rouge_l"),
        "CIDEr": pick("CIDEr", "cider"),
    }


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in r) + " |")


def retrieval_and_explanations(args) -> None:
    from mmgpt2.apps.medical.model import MedicalExplainer

    model = MedicalExplainer.from_pretrained(args.model)
    nokg_dir = Path(args.nokg)
    if not nokg_dir.is_dir():
        raise SystemExit(f"{nokg_dir}: no no-KG explainer; run `python recipes/build_chest.py` first")
    nokg = MedicalExplainer.from_pretrained(nokg_dir, encoder=model.encoder, lm=model.lm)
    kg = model.kg
    cases, images = held_out(args.n)
    t = time.perf_counter()
    pooled, tokens = [], []
    for i in range(0, len(images), 64):
        p, tk = model.encode_images(images[i : i + 64])
        pooled.append(p)
        tokens.append(tk)
    pooled, tokens = torch.cat(pooled), torch.cat(tokens)
    encode_s = time.perf_counter() - t

    # 1. retrieval
    hits = kg.query(pooled, k=7)
    rng = np.random.default_rng(0)
    found = [c for c in cases if c.kind]
    idx = [i for i, c in enumerate(cases) if c.kind]
    rows = []
    for name, ranked in (
        (
            "random ranking (baseline)",
            [[kg.triplets[j].key for j in rng.permutation(len(kg))[:7]] for _ in idx],
        ),
        (
            "chest-clip image embedding",
            [[(h["head"], h["relation"], h["tail"]) for h in hits[i]] for i in idx],
        ),
    ):
        exact = [(c.finding, "suggestive_of", c.diagnosis.lower()) for c in found]
        diag = [c.diagnosis.lower() for c in found]
        r1 = np.mean([r[:1] == [e] for r, e in zip(ranked, exact)])
        r7 = np.mean([e in r for r, e in zip(ranked, exact)])
        d1 = np.mean([bool(r) and r[0][2] == d for r, d in zip(ranked, diag)])
        d7 = np.mean([any(x[2] == d for x in r) for r, d in zip(ranked, diag)])
        rows.append([name, float(r1), float(r7), float(d1), float(d7)])
    table(
        f"KG retrieval on {len(found)} held-out chest images with a finding (KG: {len(kg)} distinct triplets)",
        ["query", "exact triplet R@1", "exact triplet R@7", "right diagnosis R@1", "right diagnosis R@7"],
        rows,
    )
    print(f"\nrecall@7 (exact triplet) vs random: {rows[1][2]:.3f} vs {rows[0][2]:.3f}; target >= 0.90")

    # 2. explanations, every finding kind in the explainers' training data
    diagnoses = [c.diagnosis for c in cases]
    runs, rows = {}, []
    for question, asked in (("diagnosis question", diagnoses), ("open question", [None] * len(cases))):
        for name, key, m in (
            ("no KG (baseline, same budget)", "nokg", nokg),
            ("with KG (chest-tiny)", "kg", model),
        ):
            runs[key, question] = explain_all(m, key == "kg", pooled, tokens, asked)
            rows.append(explanation_row(f"{name}, {question}", cases, *runs[key, question]))
    table(
        f"Explanations on {len(cases)} held-out chest images (greedy, 32 new tokens; diagnosis question: "
        "'why does this chest x-ray suggest <diagnosis>?', open question: 'what does this chest x-ray show?')",
        [
            "explainer, question",
            "BLEU-4",
            "METEOR",
            "ROUGE-L",
            "CIDEr",
            "names exact finding",
            "names finding w/o severity",
            "images/s",
        ],
        rows,
    )
    base, ours = rows[:2]
    print(
        f"\nKG vs no KG (diagnosis question): CIDEr {ours[4]:.3f} vs {base[4]:.3f} (x{ours[4] / max(base[4], 1e-9):.2f}); "
        f"exact finding named {ours[5]:.1%} vs {base[5]:.1%}; image encoding {encode_s:.1f}s"
    )
    for name, key in (("no KG", "nokg"), ("with KG", "kg")):
        print(f"\n{name}, first 3:")
        for i in range(3):
            print(f"  truth: {cases[i].finding!r}\n  pred:  {runs[key, 'diagnosis question'][0][i]!r}")

    # 3. finding kinds with no training explanation: the graph (built from reports) knows them
    unseen_dirs = {key: Path(args.unseen.format(key)) for key in ("nokg", "kg")}
    if not all(d.is_dir() for d in unseen_dirs.values()):
        print(
            f"\n(no {' / '.join(map(str, unseen_dirs.values()))}: run `python recipes/build_chest.py --only unseen`)"
        )
        return
    from mmgpt2.worlds.chest import UNSEEN_KINDS

    rows = []
    for name, key in (("no KG (baseline, same budget)", "nokg"), ("with KG", "kg")):
        m = MedicalExplainer.from_pretrained(
            unseen_dirs[key], encoder=model.encoder, lm=model.lm, kg=kg if key == "kg" else None
        )
        texts, speed = explain_all(m, key == "kg", pooled, tokens, diagnoses)
        for subset, keep in (
            ("unseen kinds", lambda c: c.kind in UNSEEN_KINDS),
            ("seen kinds", lambda c: c.kind and c.kind not in UNSEEN_KINDS),
        ):
            idx = [i for i, c in enumerate(cases) if keep(c)]
            row = explanation_row(
                f"{name}, {subset} ({len(idx)} images)",
                [cases[i] for i in idx],
                [texts[i] for i in idx],
                speed,
            )
            rows.append(row[:-1])  # images/s is the whole run's, not the subset's
    table(
        f"Explanations for finding kinds absent from the explainers' training explanations ({', '.join(UNSEEN_KINDS)}); "
        "the KG, built from all training reports, has them (diagnosis question; explainers trained on diagnosis questions only)",
        [
            "explainer, images",
            "BLEU-4",
            "METEOR",
            "ROUGE-L",
            "CIDEr",
            "names exact finding",
            "names finding w/o severity",
        ],
        rows,
    )


def explain_all(model, use_kg: bool, pooled, tokens, diagnoses) -> tuple[list[str], float]:
    """Greedy explanations for every image (32 new tokens) and the images/s it ran at."""
    t = time.perf_counter()
    preds = []
    for i in range(0, len(diagnoses), 32):
        preds += model.explain_features(
            pooled[i : i + 32], tokens[i : i + 32], diagnoses[i : i + 32], use_kg=use_kg, max_new_tokens=32
        )
    return [p["explanation"] for p in preds], len(diagnoses) / (time.perf_counter() - t)


def explanation_row(name: str, cases, texts: list[str], images_per_s: float) -> list:
    """[name, BLEU-4, METEOR, ROUGE-L, CIDEr, share naming the exact finding, ... without severity, images/s]."""
    s = score({str(i): t for i, t in enumerate(texts)}, {str(i): references(c) for i, c in enumerate(cases)})
    found = [(c, t) for c, t in zip(cases, texts) if c.kind]
    named = np.mean([c.finding in t for c, t in found])
    kind_side = np.mean([all(w in t for w in c.finding.split()[1:]) for c, t in found])
    return [
        name,
        s["BLEU-4"],
        s["METEOR"],
        s["ROUGE-L"],
        s["CIDEr"],
        float(named),
        float(kind_side),
        f"{images_per_s:.1f}",
    ]


def scale(args) -> None:
    import faiss

    from mmgpt2.apps.medical import KnowledgeGraph, Triplet
    from mmgpt2.apps.medical.kg import IVF_FROM

    n, d = args.scale, args.dim
    rng = np.random.default_rng(0)
    # Clustered vectors (like triplet embeddings, which group by finding) rather than isotropic
    # noise, where every approximate index degenerates.
    centres = rng.standard_normal((2000, d), dtype=np.float32)
    vectors = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.standard_normal((n, d), dtype=np.float32)
    triplets = [Triplet(f"h{i}", "suggestive_of", f"t{i}", [f"s{i}"]) for i in range(n)]
    queries = centres[rng.integers(0, len(centres), args.queries)] + 0.35 * rng.standard_normal(
        (args.queries, d), dtype=np.float32
    )
    t = time.perf_counter()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    base_build_s = time.perf_counter() - t

    def numpy_top7(q):
        scores = unit @ (q / np.linalg.norm(q))
        top = np.argpartition(-scores, 7)[:7]
        return top[np.argsort(-scores[top])]

    def per_query(fn) -> float:
        t = time.perf_counter()
        for q in queries:
            fn(q)
        return (time.perf_counter() - t) / len(queries) * 1000

    base_ms = per_query(numpy_top7)
    truth = [set(f"h{j}" for j in numpy_top7(q)) for q in queries]
    rows = [
        [
            "NumPy normalize + matmul/argpartition (baseline)",
            f"{n / base_build_s:,.0f}",
            f"{base_ms:.2f}",
            "-",
            "1.000",
            "1.00x",
        ]
    ]
    for kind in ("flat", "ivf"):
        t = time.perf_counter()
        kg = KnowledgeGraph(triplets, vectors, "random", index=kind)
        build_s = time.perf_counter() - t
        kg.query(queries[0], k=7)  # warm-up
        ms = per_query(partial(kg.query, k=7))
        t = time.perf_counter()
        hits = kg.query(queries, k=7)
        batch_ms = (time.perf_counter() - t) / len(queries) * 1000
        recall = np.mean([len(truth[i] & {h["head"] for h in hits[i]}) / 7 for i in range(len(queries))])
        label = (
            "KnowledgeGraph flat (IndexFlatIP, exact)"
            if kind == "flat"
            else f"KnowledgeGraph IVF (nprobe {kg.index.nprobe})"
        )
        rows.append(
            [
                label,
                f"{n / build_s:,.0f}",
                f"{ms:.2f}",
                f"{batch_ms:.2f}",
                f"{recall:.3f}",
                f"{base_ms / ms:.1f}x",
            ]
        )
        del kg
    table(
        f"Datastore scale: {n:,} triplets, {d}-d, {args.queries} queries, {faiss.omp_get_max_threads()} FAISS threads",
        [
            "method",
            "build (vectors/s)",
            "top-7 query (ms, one at a time)",
            "top-7 query (ms each, batched)",
            "recall@7 vs exact",
            "query speed-up vs NumPy",
        ],
        rows,
    )
    print(f"\ntarget < 10 ms/query; `auto` picks IVF from {IVF_FROM:,} triplets")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="held-out chest images")
    ap.add_argument("--model", default="chest-tiny", help="the explainer with its KG (name or folder)")
    ap.add_argument("--nokg", default="build/chest/chest-tiny-nokg", help="the no-KG explainer folder")
    ap.add_argument(
        "--unseen",
        default="build/chest/unseen-{}",
        help="folders of the explainers trained without the unseen kinds ({} is kg / nokg)",
    )
    ap.add_argument("--scale", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128, help="vector width for the scale test (chest-clip: 128)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--only-scale", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.only_scale:
        retrieval_and_explanations(args)
    if not args.skip_scale:
        scale(args)
    print("\nargs:", json.dumps(vars(args)))


if __name__ == "__main__":
    main()
