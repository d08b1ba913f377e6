"""Zero-shot dense captioning of ActivityNet Captions videos (ZeroTA): CLIP ViT-L/14 + GPT-2 medium.

You supply the videos and annotations (ActivityNet's licence forbids redistribution): a folder of
video files named by video id (``v_QOlSCBRmfWY.mp4``, ``.mkv`` or ``.webm``) and the ground-truth
JSON(s) (``val_1.json``, ``val_2.json``). Nothing is trained: each video is optimised on its own.
Weights download on first use (open_clip ``ViT-L-14/openai`` and Hugging Face ``gpt2-medium``).

Writes ``predictions.json`` (ActivityNet format) and ``scores.json`` (+ a table on stdout) to --out.

Usage:
    python recipes/zerota_activitynet.py --videos /data/anet/videos --gt /data/anet/val_1.json \\
        --gt /data/anet/val_2.json --out runs/zerota --limit 100
    # many GPUs / processes: videos are spread over them, the main process merges and scores
    accelerate launch --num_processes 8 recipes/zerota_activitynet.py --videos ... --gt ... --out ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")


def find_videos(folder: Path, ids: list[str]) -> tuple[list[Path], list[str]]:
    """Video files for `ids` (tried with and without the ``v_`` prefix); returns (found, missing ids)."""
    by_stem = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES}
    found, missing = [], []
    for vid in ids:
        path = by_stem.get(vid) or by_stem.get(vid[2:] if vid.startswith("v_") else f"v_{vid}")
        (found.append(path) if path else missing.append(vid))
    return found, missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", required=True, type=Path, help="folder of ActivityNet video files")
    parser.add_argument("--gt", required=True, action="append", help="ground-truth JSON (repeatable)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--encoder", default="open_clip:ViT-L-14/openai")
    parser.add_argument("--lm", default="hf:gpt2-medium")
    parser.add_argument("--events", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument(
        "--fps", type=float, default=1.0, help="frames sampled per second (at most --max-frames)"
    )
    parser.add_argument("--max-frames", type=int, default=128)
    parser.add_argument("--limit", type=int, default=None, help="only the first N ground-truth videos")
    parser.add_argument("--device", default=None, help="default: this process's accelerator, else cpu")
    args = parser.parse_args(argv)

    from accelerate import PartialState

    from mmgpt2.apps.video.model import DenseVideoCaptioner, caption_videos_distributed
    from mmgpt2.apps.video.reader import SamplingConfig
    from mmgpt2.eval.dense import evaluate_dense, format_table, load_json

    state = PartialState()
    if not args.videos.is_dir():
        raise SystemExit(f"--videos {args.videos}: no such folder")
    gts = [load_json(g) for g in args.gt]
    ids = sorted(set().union(*gts))[: args.limit]
    paths, missing = find_videos(args.videos, ids)
    if state.is_main_process:
        print(f"{len(paths)} videos found, {len(missing)} annotated videos missing from {args.videos}")
    device = args.device or str(state.device)
    captioner = DenseVideoCaptioner.build(
        args.encoder,
        args.lm,
        sampling=SamplingConfig(fps=args.fps, max_frames=args.max_frames, size=224),
        events=args.events,
        steps=args.steps,
        hard_prompt="A video of",
        soft_prompt_init="A video showing",
        max_new_tokens=20,
    ).to(device)
    args.out.mkdir(parents=True, exist_ok=True)
    doc = caption_videos_distributed(captioner, paths, args.out / "predictions.json", args.events)
    if doc is None:  # not the main process
        return 0
    subset = [{vid: g[vid] for vid in ids if vid in g} for g in gts]
    scores = evaluate_dense(doc, subset)
    scores["missing_videos"] = missing
    (args.out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    print(format_table(scores))
    print(f"wrote {args.out / 'predictions.json'} and {args.out / 'scores.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
