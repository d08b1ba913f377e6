"""`mmgpt2 dense-caption VIDEO...` and `mmgpt2 eval-dense --pred P --gt G`."""

from __future__ import annotations

import argparse
import json
import sys

from mmgpt2.errors import Mmgpt2Error


def register(subparsers: argparse._SubParsersAction) -> None:
    dc = subparsers.add_parser(
        "dense-caption",
        help="find and caption the events of videos, zero-shot (ZeroTA)",
        description="Zero-shot dense video captioning: soft moment masks and GPT-2 prefixes optimised "
        "per video against a frozen CLIP. Prints one line per event, or ActivityNet-format JSON with --json. "
        "Run under `accelerate launch` to spread many videos over processes (needs --out).",
    )
    dc.add_argument("videos", nargs="+", help="video files (mp4, avi, mkv, ...)")
    dc.add_argument("--model", default="shapes-video-zerota", help="saved model folder or embedded name")
    dc.add_argument(
        "--events", type=int, default=None, help="events to look for per video (default: the model's)"
    )
    dc.add_argument(
        "--steps", type=int, default=None, help="optimisation steps per video (default: the model's)"
    )
    dc.add_argument("--json", action="store_true", help="print ActivityNet-format predictions")
    dc.add_argument("--out", help="also write the predictions JSON to this file")
    dc.add_argument("--timeline", help="draw the events of the (first) video to this PNG")
    dc.add_argument("--device", default=None, help="cpu, cuda, ... (default: cpu)")
    dc.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a busy machine)"
    )
    dc.set_defaults(func=run_dense_caption)

    ev = subparsers.add_parser(
        "eval-dense",
        help="score dense video captions (ActivityNet protocol + SODA_c)",
        description="Precision/recall/F1 at tIoU 0.3/0.5/0.7/0.9, METEOR/BLEU-4/CIDEr over matched pairs, "
        "and SODA_c. Needs Java for METEOR.",
    )
    ev.add_argument("--pred", required=True, help="predictions JSON (ActivityNet format)")
    ev.add_argument("--gt", required=True, nargs="+", help="ground-truth JSON file(s)")
    ev.add_argument("--json", action="store_true", help="print the scores as JSON")
    ev.set_defaults(func=run_eval_dense)


def run_dense_caption(args: argparse.Namespace) -> int:
    from mmgpt2.apps.video.model import DenseVideoCaptioner, activitynet_predictions, video_id
    from mmgpt2.checkpoint import atomic_write_json

    if args.events is not None and args.events < 1:
        raise Mmgpt2Error(f"--events {args.events}: need at least one event")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = DenseVideoCaptioner.from_pretrained(args.model, device=args.device)
    if args.steps is not None:
        model.zerota.steps = args.steps
    if args.events is not None:
        model.zerota.events = args.events
    try:
        from mmgpt2.apps.video.model import process_state

        distributed = process_state(model).num_processes > 1
    except ImportError:
        distributed = False
    if distributed:
        from mmgpt2.apps.video.model import caption_videos_distributed

        if not args.out:
            raise Mmgpt2Error(
                "under `accelerate launch` pass --out FILE: the processes merge their results there"
            )
        doc = caption_videos_distributed(model, args.videos, args.out)
        if doc is not None:
            print(f"wrote {len(doc['results'])} videos to {args.out}")
        return 0
    results, errors = model.caption_videos(args.videos, progress=not args.json and len(args.videos) > 1)
    doc = activitynet_predictions(results)
    if errors:
        doc["external_data"]["errors"] = errors
    if args.out:
        atomic_write_json(args.out, doc)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for vid, events in results.items():
            print(f"{vid}:")
            for e in sorted(events, key=lambda e: e.start):
                print(f"  {e.start:7.2f} - {e.end:7.2f} s  {e.sentence}")
    for vid, err in errors.items():
        print(f"mmgpt2 dense-caption: skipped {vid}: {err}", file=sys.stderr)
    if args.timeline:
        from mmgpt2.apps.video.timeline import draw_timeline

        first = next((p for p in args.videos if video_id(p) in results), None)
        if first is not None:
            draw_timeline(first, results[video_id(first)], args.timeline)
            if not args.json:
                print(f"timeline: {args.timeline}")
    return 0 if results else 2


def run_eval_dense(args: argparse.Namespace) -> int:
    from mmgpt2.eval.dense import evaluate_dense_files, format_table

    scores = evaluate_dense_files(args.pred, args.gt)
    print(json.dumps(scores, indent=2) if args.json else format_table(scores))
    return 0
