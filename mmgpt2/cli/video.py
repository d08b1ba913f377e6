"""`mmgpt2 dense-caption VIDEO...`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from mmgpt2.apps.video.limits import MAX_EVENTS
from mmgpt2.cli.args import device, int_range
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
        "--events",
        type=int_range(1, MAX_EVENTS),
        default=None,
        help=f"events to look for per video, 1 to {MAX_EVENTS} and at most one per sampled frame "
        "(default: the model's)",
    )
    dc.add_argument(
        "--steps",
        type=int_range(0, 10_000),
        default=None,
        help="optimisation steps per video, 0 for none (default: the model's)",
    )
    dc.add_argument("--json", action="store_true", help="print ActivityNet-format predictions")
    dc.add_argument("--out", help="also write the predictions JSON to this file")
    dc.add_argument("--timeline", help="draw the events of the (first) video to this PNG")
    dc.add_argument("--device", type=device, default=None, help="cpu, cuda, ... (default: cpu)")
    dc.add_argument(
        "--threads",
        type=int_range(1, 1024),
        default=None,
        help="torch CPU threads (1 is fastest on a busy machine)",
    )
    dc.set_defaults(func=run_dense_caption)


def run_dense_caption(args: argparse.Namespace) -> int:
    from mmgpt2.apps.video.model import DenseVideoCaptioner, activitynet_predictions, video_id
    from mmgpt2.checkpoint import atomic_write_json

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = DenseVideoCaptioner.from_pretrained(args.model, device=args.device)
    settings = {k: v for k, v in (("steps", args.steps), ("events", args.events)) if v is not None}
    if settings:  # through the config, so its own checks apply too
        model.zerota = dataclasses.replace(model.zerota, **settings)
    videos, duplicates = unique_video_ids(args.videos)
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
        doc = caption_videos_distributed(model, videos, args.out)
        if doc is None:  # not the main process: the main one reports for all
            return 0
        errors = {**doc["external_data"].get("errors", {}), **duplicates}
        if duplicates:
            doc["external_data"]["errors"] = errors
            atomic_write_json(args.out, doc)
        for vid, err in errors.items():
            print(f"mmgpt2 dense-caption: skipped {vid}: {err}", file=sys.stderr)
        print(f"wrote {len(doc['results'])} videos to {args.out}")
        if not doc["results"]:
            return 2
        return 1 if errors else 0  # a partial failure must be visible to scripts, here too
    results, errors = model.caption_videos(videos, progress=not args.json and len(videos) > 1)
    errors.update(duplicates)
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

        first = next((p for p in videos if video_id(p) in results), None)
        if first is not None:
            draw_timeline(first, results[video_id(first)], args.timeline)
            if not args.json:
                print(f"timeline: {args.timeline}")
    if not results:
        return 2
    return 1 if errors else 0  # a partial failure must be visible to scripts


def unique_video_ids(paths: list[str]) -> tuple[list[str], dict[str, str]]:
    """``(videos to caption, errors by path)``: results are keyed by the file name without extension,
    so a video whose id is already taken is refused by path, never merged or overwritten."""
    from mmgpt2.apps.video.model import video_id

    first: dict[str, str] = {}
    keep: list[str] = []
    errors: dict[str, str] = {}
    for path in paths:
        vid = video_id(path)
        if vid not in first:
            first[vid] = path
            keep.append(path)
            continue
        if str(path) == str(first[vid]):
            errors[str(path)] = "is given twice; its events are listed once"
        else:  # keyed and shown by path: the id belongs to the first video
            errors[str(path)] = (
                f"has the same video id {vid!r} as {first[vid]} (ids are file names without extension); "
                "rename or copy one of them to caption both"
            )
    return keep, errors
