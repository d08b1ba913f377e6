"""Zero-shot dense captioning of ActivityNet Captions videos (ZeroTA): CLIP ViT-L/14 + GPT-2 medium.

You supply the videos and annotations (ActivityNet's licence forbids redistribution): the
ground-truth JSON(s) of ActivityNet Captions (``val_1.json``, ``val_2.json``: ``{"v_<youtube id>":
{"duration", "timestamps", "sentences"}}``) and a folder of the videos as downloaders save them,
``v_<youtube id>.<ext>`` or ``<youtube id>.<ext>`` with ext mp4, mkv or webm, in the folder or any
subfolder. Nothing is trained: each video is optimised on its own. The setup comes from the named
config ``zerota-activitynet``; flags given here override it. Weights download on first use
(open_clip ``ViT-L-14/openai`` and Hugging Face ``gpt2-medium``).

Writes OUT/predictions.json (the ActivityNet results format, keyed by the annotation ids ``v_...``
whatever the file names) and OUT/scores.json (densevid_eval's measures over the captioned videos,
plus, by id, the annotated videos not found, found under two names, or unreadable).

Usage:
    python recipes/zerota_activitynet.py --videos /data/anet/videos --gt /data/anet/val_1.json \\
        --gt /data/anet/val_2.json --out runs/zerota --limit 100
    # many GPUs / processes: videos are spread over them, the main process merges and scores
    accelerate launch --num_processes 8 recipes/zerota_activitynet.py --videos ... --gt ... --out ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipe_common, when imported from elsewhere

from recipe_common import add_model_arguments, build_settings, load_config, run_main, write_results  # noqa: E402

CONFIG = "zerota-activitynet"
#: Containers ActivityNet downloaders write, in the order a video found under two names is taken.
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm")


def find_videos(folder: Path, ids: list[str]) -> tuple[dict[str, Path], list[str], dict[str, list[str]]]:
    """Map annotation ids to files: ``(found {id: path}, missing ids, duplicates {id: [paths]})``.

    ``v_abc`` is found as ``v_abc.<ext>`` or ``abc.<ext>``; when several files fit, the one with
    the annotation's exact name and then the first suffix of `VIDEO_SUFFIXES` is taken, and all of
    them are listed under duplicates.

    Example:
        >>> found, missing, dup = find_videos(Path("videos"), ["v_QOlSCBRmfWY"])
        >>> found  # {'v_QOlSCBRmfWY': PosixPath('videos/QOlSCBRmfWY.mp4')}
    """
    by_stem: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
            by_stem.setdefault(path.stem, []).append(path)
    found, missing, duplicates = {}, [], {}
    for vid in ids:
        bare = vid[2:] if vid.startswith("v_") else vid
        candidates = by_stem.get(vid, []) + (by_stem.get(bare, []) if bare != vid else [])
        if not candidates:
            missing.append(vid)
            continue
        candidates.sort(key=lambda p: (p.stem != vid, VIDEO_SUFFIXES.index(p.suffix.lower()), str(p)))
        found[vid] = candidates[0]
        if len(candidates) > 1:
            duplicates[vid] = [str(p) for p in candidates]
    return found, missing, duplicates


def parse_settings(pairs: list[str]) -> dict:
    """``["lookahead=false", "final_samples=4"]`` -> ``{"lookahead": False, "final_samples": 4}``."""
    from mmgpt2.errors import ConfigError

    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set {pair!r}: expected NAME=VALUE, e.g. --set lookahead=false")
        try:
            out[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[name.strip()] = value  # a bare string such as a prompt
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", required=True, type=Path, help="folder of ActivityNet video files")
    parser.add_argument("--gt", required=True, action="append", help="ground-truth JSON (repeatable)")
    add_model_arguments(parser, CONFIG, caption_metrics=False)  # densevid_eval's measures, all of them
    parser.add_argument("--events", type=int, help="events per video (default: the config's)")
    parser.add_argument("--steps", type=int, help="optimisation steps per video (default: the config's)")
    parser.add_argument("--fps", type=float, help="frames sampled per second (at most --max-frames)")
    parser.add_argument("--max-frames", type=int)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other ZeroTA setting (`ZeroTAConfig`), VALUE in JSON, e.g. --set lookahead=false",
    )
    args = parser.parse_args(argv)

    from accelerate import PartialState

    from mmgpt2.apps.video.model import caption_videos_distributed
    from mmgpt2.configs import build_from_config
    from mmgpt2.eval.dense import evaluate_dense, format_table, load_json

    named = load_config(args)
    state = PartialState()
    if not args.videos.is_dir():
        parser.error(f"--videos {args.videos}: no such folder")
    gts = [load_json(g) for g in args.gt]
    ids = sorted(set().union(*gts))[: args.limit]
    found, missing, duplicates = find_videos(args.videos, ids)
    if state.is_main_process:
        print(
            f"{len(found)} annotated videos found, {len(missing)} missing, {len(duplicates)} under two names"
        )
        for vid, paths in duplicates.items():
            print(f"  {vid}: found as {', '.join(paths)}; using {paths[0]}")
    settings = build_settings(named, events=args.events, steps=args.steps, **parse_settings(args.set))
    sampling = {**settings.get("sampling", {}), "fps": args.fps, "max_frames": args.max_frames}
    settings["sampling"] = {
        **settings.get("sampling", {}),
        **{k: v for k, v in sampling.items() if v is not None},
    }
    captioner = build_from_config(named, args.encoder, args.lm, **settings)
    captioner = captioner.to(args.device or str(state.device))
    args.out.mkdir(parents=True, exist_ok=True)
    doc = caption_videos_distributed(captioner, found, args.out / "predictions.json", captioner.zerota.events)
    if doc is None:  # not the main process
        return 0
    failed = doc["external_data"].get("errors", {})
    captioned = [vid for vid in ids if vid in doc["results"]]
    subset = [{vid: g[vid] for vid in captioned if vid in g} for g in gts]
    scores = evaluate_dense(doc, [s for s in subset if s]) if captioned else {}
    scores.update(
        videos_annotated=len(ids),
        videos_scored=len(captioned),
        missing_videos=missing,
        duplicate_videos=duplicates,
        failed_videos=failed,
    )
    if captioned:
        print(format_table(scores))
    write_results(args.out, doc, scores)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
