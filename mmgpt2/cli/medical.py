"""`mmgpt2 explain` (Med-XPT explanations) and `mmgpt2 kg build|query` (the knowledge-graph datastore)."""

from __future__ import annotations

import argparse
import json
import sys

from mmgpt2.errors import Mmgpt2Error


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "explain",
        help="explain the evidence for a diagnosis on chest X-rays (Med-XPT)",
        description="Print an explanation per image and the knowledge-graph triplets it used, with their scores.",
    )
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument(
        "--model", default="chest-tiny", help="explainer folder or embedded name (default chest-tiny)"
    )
    p.add_argument("--kg", help="knowledge-graph folder (default: the one saved with the model)")
    p.add_argument("--no-kg", action="store_true", help="explain from the image alone")
    p.add_argument("--diagnosis", help="the suspected diagnosis, e.g. 'Pleural Effusion'")
    p.add_argument("--k", type=int, help="triplets to retrieve (default: the model's, 7)")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--num-beams", type=int)
    p.add_argument("--json", action="store_true", help='print [{"image", "explanation", "triplets": [...]}]')
    p.set_defaults(func=run_explain)

    kg = subparsers.add_parser("kg", help="build or query a knowledge-graph datastore of triplets")
    kg_sub = kg.add_subparsers(dest="kg_command", required=True, metavar="ACTION")
    b = kg_sub.add_parser(
        "build",
        help="embed triplets and write a KG folder",
        description='TRIPLETS is a JSON-lines file of {"head", "relation", "tail", "source_id"} rows, or with '
        '--from-reports one of {"id", "report"} rows whose triplets are extracted (RadGraph if installed, '
        "else the pattern extractor). Only triplets are stored.",
    )
    b.add_argument("triplets", help="triplets .jsonl (or reports .jsonl with --from-reports)")
    b.add_argument("--encoder", required=True, help="encoder spec whose text tower embeds the triplets")
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument("--from-reports", action="store_true", help="extract triplets from report text first")
    b.add_argument(
        "--index",
        choices=("auto", "flat", "ivf"),
        default="auto",
        help="FAISS index: exact flat scan, or IVF for large datastores (auto: IVF from 200k triplets)",
    )
    b.set_defaults(func=run_kg_build)
    qp = kg_sub.add_parser("query", help="top-k triplets for images (by image embedding) or a text")
    qp.add_argument("kg_dir", help="knowledge-graph folder")
    qp.add_argument("inputs", nargs="*", help="image files to query with")
    qp.add_argument("--text", help="query with this text instead of images")
    qp.add_argument("--encoder", help="encoder spec (default: the one the KG was built with)")
    qp.add_argument("--k", type=int, default=7)
    qp.add_argument("--exclude-source", help="drop triplets found only in this source (study) id")
    qp.add_argument("--json", action="store_true")
    qp.set_defaults(func=run_kg_query)


def _print_hits(hits: list[dict]) -> None:
    for h in hits:
        print(f"    {h['score']:.3f}  {h['head']} | {h['relation']} | {h['tail']}")


def run_explain(args: argparse.Namespace) -> int:
    from mmgpt2.apps.medical.model import MedicalExplainer
    from mmgpt2.images import iter_images

    model = MedicalExplainer.from_pretrained(args.model, kg=args.kg)
    if args.k:
        model.kg_k = args.k
    good, results, failed = [], [], 0
    for path, image, err in iter_images(args.images):
        if err:
            print(f"skipped {err}", file=sys.stderr)
            failed += 1
        else:
            good.append((path, image))
    if good:
        outs = model.explain(
            [im for _, im in good],
            diagnosis=args.diagnosis,
            use_kg=not args.no_kg,
            max_new_tokens=args.max_new_tokens,
            num_beams=args.num_beams,
        )
        results = [{"image": p, **o} for (p, _), o in zip(good, outs)]
    if args.json:
        print(
            json.dumps([{k: r[k] for k in ("image", "explanation", "triplets")} for r in results], indent=2)
        )
    else:
        for r in results:
            print(f"{r['image']}: {r['explanation']}")
            if r["triplets"]:
                print("  triplets used:")
                _print_hits(r["triplets"])
    return 1 if failed else 0


def _read_jsonl(path: str) -> list[dict]:
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    rows = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise Mmgpt2Error(f"{path}:{n}: not valid JSON ({err.msg})") from err
    return rows


def run_kg_build(args: argparse.Namespace) -> int:
    from mmgpt2.apps.medical import KnowledgeGraph
    from mmgpt2.encoders import load_encoder

    encoder = load_encoder(args.encoder)
    if args.from_reports:
        rows = _read_jsonl(args.triplets)
        bad = [n for n, r in enumerate(rows, 1) if "report" not in r]
        if bad:
            raise Mmgpt2Error(
                f"{args.triplets}: rows {bad[:5]} have no 'report' field (expected {{'id', 'report'}})"
            )
        kg = KnowledgeGraph.from_reports(
            [(str(r.get("id", n)), r["report"]) for n, r in enumerate(rows)], encoder, index=args.index
        )
    else:
        kg = KnowledgeGraph.from_jsonl(args.triplets, encoder, index=args.index)
    kg.save(args.out)
    print(f"wrote {kg} to {args.out}")
    return 0


def run_kg_query(args: argparse.Namespace) -> int:
    from mmgpt2.apps.medical import KnowledgeGraph
    from mmgpt2.encoders import load_encoder
    from mmgpt2.images import load_image

    kg = KnowledgeGraph.load(args.kg_dir)
    spec = args.encoder or kg.encoder_spec
    if not spec:
        raise Mmgpt2Error(f"{args.kg_dir}: the KG names no encoder; pass --encoder")
    encoder = load_encoder(spec)
    if args.text:
        names, emb = [args.text], encoder.encode_text([args.text])
    elif args.inputs:
        names = list(args.inputs)
        emb = encoder.encode_image(encoder.preprocess_batch([load_image(p) for p in names]))
    else:
        raise Mmgpt2Error("give image files or --text to query with")
    hits = kg.query(emb, k=args.k, exclude_source=args.exclude_source)
    if args.json:
        print(json.dumps([{"query": n, "triplets": h} for n, h in zip(names, hits)], indent=2))
    else:
        for n, h in zip(names, hits):
            print(f"{n}:")
            _print_hits(h)
    return 0
