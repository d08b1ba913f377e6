"""`mmgpt2 explain` (Med-XPT explanations) and `mmgpt2 kg build|query` (the knowledge-graph datastore)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable

from mmgpt2.cli.args import int_range
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
    p.add_argument(
        "--k", type=int_range(0, 1000), help="triplets to retrieve, 0 for none (default: the model's, 7)"
    )
    p.add_argument("--max-new-tokens", type=int_range(1, 1024))
    p.add_argument("--num-beams", type=int_range(1, 1024))
    p.add_argument(
        "--batch-size", type=int_range(1, 4096), default=16, help="images decoded and explained together"
    )
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
    qp.add_argument("--k", type=int_range(0, 1000), default=7, help="triplets per query (default 7)")
    qp.add_argument(
        "--batch-size", type=int_range(1, 4096), default=32, help="images decoded and embedded together"
    )
    qp.add_argument("--exclude-source", help="drop triplets found only in this source (study) id")
    qp.add_argument("--json", action="store_true")
    qp.set_defaults(func=run_kg_query)


def _print_hits(hits: list[dict]) -> None:
    for h in hits:
        print(f"    {h['score']:.3f}  {h['head']} | {h['relation']} | {h['tail']}")


def _skipper() -> tuple[list[str], Callable[[str], None]]:
    """A list of skipped inputs and the callback that reports each one on stderr."""
    skipped: list[str] = []

    def skip(reason: str) -> None:
        skipped.append(reason)
        print(f"skipped {reason}", file=sys.stderr)

    return skipped, skip


def run_explain(args: argparse.Namespace) -> int:
    from mmgpt2.apps.medical.model import MedicalExplainer
    from mmgpt2.cli.output import JsonListWriter
    from mmgpt2.images import image_batches

    model = MedicalExplainer.from_pretrained(args.model, kg=args.kg)
    if args.k is not None:  # 0 is a real request: no triplets
        model.kg_k = args.k
    skipped, skip = _skipper()
    # Decode a batch, explain it, print it, drop it: memory is bounded by --batch-size.
    with JsonListWriter() if args.json else contextlib.nullcontext() as out:
        for chunk in image_batches(args.images, args.batch_size, skip):
            outs = model.explain(
                [im for _, im in chunk],
                diagnosis=args.diagnosis,
                use_kg=not args.no_kg,
                max_new_tokens=args.max_new_tokens,
                num_beams=args.num_beams,
                batch_size=len(chunk),
            )
            for (path, _), r in zip(chunk, outs):
                if out is not None:
                    out.write({"image": path, "explanation": r["explanation"], "triplets": r["triplets"]})
                    continue
                print(f"{path}: {r['explanation']}")
                if r["triplets"]:
                    print("  triplets used:")
                    _print_hits(r["triplets"])
                sys.stdout.flush()
    return 1 if skipped else 0


def _read_jsonl(path: str) -> list[dict]:
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise Mmgpt2Error(f"{path}: not UTF-8 text ({err.reason}); expected JSON lines") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
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
    if len(kg) == 0:
        print(
            f"mmgpt2 kg: warning: {args.triplets} gave no triplets, so queries on {args.out} will find nothing",
            file=sys.stderr,
        )
    return 0


def run_kg_query(args: argparse.Namespace) -> int:
    from mmgpt2.apps.medical import KnowledgeGraph
    from mmgpt2.cli.output import JsonListWriter
    from mmgpt2.encoders import load_encoder
    from mmgpt2.images import image_batches

    if not args.text and not args.inputs:
        raise Mmgpt2Error("give image files or --text to query with")
    kg = KnowledgeGraph.load(args.kg_dir)
    if len(kg) == 0:
        print(
            f"mmgpt2 kg: warning: {args.kg_dir} holds no triplets, so every query finds nothing; "
            "rebuild it from a non-empty triplets file",
            file=sys.stderr,
        )
    spec = args.encoder or kg.encoder_spec
    if not spec:
        raise Mmgpt2Error(f"{args.kg_dir}: the KG names no encoder; pass --encoder")
    encoder = load_encoder(spec)
    skipped, skip = _skipper()
    if args.text:
        batches = [([args.text], encoder.encode_text([args.text]))]
    else:
        batches = (
            ([p for p, _ in chunk], encoder.encode_image(encoder.preprocess_batch([im for _, im in chunk])))
            for chunk in image_batches(args.inputs, args.batch_size, skip)
        )
    with JsonListWriter() if args.json else contextlib.nullcontext() as out:
        for names, emb in batches:
            hits = kg.query(emb, k=args.k, exclude_source=args.exclude_source)
            for n, h in zip(names, hits):
                if out is not None:
                    out.write({"query": n, "triplets": h})
                else:
                    print(f"{n}:")
                    _print_hits(h)
    return 1 if skipped else 0
