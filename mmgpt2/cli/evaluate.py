"""`mmgpt2 eval-captions` (COCOEvalCap) and `mmgpt2 eval-dense` (densevid_eval + SODA_c), plus CLIPScore."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mmgpt2.errors import Mmgpt2Error

IMAGE_EXTENSIONS = ("", ".jpg", ".jpeg", ".png", ".webp", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", "")


def _warn(command: str, message: str) -> None:
    print(f"mmgpt2 {command}: {message}", file=sys.stderr)


def find_image(image_id: str, root: str | None, coco_files: dict[str, str]) -> str | None:
    """The image of a prediction id: the id itself as a path, else ROOT/<COCO file_name or id>[.ext]."""
    if os.path.isfile(image_id):
        return image_id
    if root is None:
        return None
    name = coco_files.get(image_id, image_id)
    for ext in IMAGE_EXTENSIONS:
        candidate = Path(root) / f"{name}{ext}"
        if candidate.is_file():
            return str(candidate)
    return None


def cmd_eval_captions(args: argparse.Namespace) -> int:
    from mmgpt2.eval.captions import coco_image_files, load_predictions, load_references, score_captions

    preds = load_predictions(args.pred)
    refs = load_references(args.refs)
    # Our JSON lines list each image under its path and its file name (one list): count images once.
    images: dict[int, list[str]] = {}
    for k, v in refs.items():
        images.setdefault(id(v), []).append(k)
    unpredicted = sorted(keys[0] for keys in images.values() if not any(k in preds for k in keys))
    scores = score_captions(preds, refs)
    if args.clipscore:
        scores.update(_caption_clipscore(args, preds, refs, coco_image_files(args.refs)))
    report = {"scored_ids": len(preds), "reference_ids_without_prediction": len(unpredicted)}
    if args.json:
        print(json.dumps({**scores, **report}, indent=2))
    else:
        for k, v in scores.items():
            print(f"{k:12s} {v:.4f}")
        print(
            f"{len(preds)} predictions scored; {len(unpredicted)} reference ids have no prediction (not scored)"
        )
    if unpredicted:
        _warn(
            "eval-captions",
            f"{len(unpredicted)} ids of {args.refs} have no prediction and were left out, e.g. {unpredicted[0]!r}",
        )
    return 0


def _caption_clipscore(args, preds: dict, refs: dict, coco_files: dict[str, str]) -> dict[str, float]:
    from mmgpt2.encoders import load_encoder
    from mmgpt2.eval.clipscore import clip_score

    images, missing = [], []
    for k in preds:
        path = find_image(k, args.image_root, coco_files)
        (images if path else missing).append(path or k)
    if missing:
        where = (
            f"under --image-root {args.image_root}"
            if args.image_root
            else "(ids are not image paths; give --image-root)"
        )
        raise Mmgpt2Error(
            f"--clipscore: no image for {len(missing)} prediction ids {where}, e.g. {missing[0]!r}"
        )
    encoder = load_encoder(args.clipscore, args.device)
    out = clip_score(encoder, images, list(preds.values()), [refs[k] for k in preds])
    return {"CLIPScore": out["CLIPScore"], "RefCLIPScore": out["RefCLIPScore"]}


def cmd_eval_dense(args: argparse.Namespace) -> int:
    from mmgpt2.eval.dense import evaluate_dense_files, format_table

    if args.seed is not None and args.protocol != "2021":
        raise Mmgpt2Error("--seed only applies to --protocol 2021 (the 2018 garbage reference is fixed)")
    if args.max_proposals < 1:
        raise Mmgpt2Error(f"--max-proposals {args.max_proposals}: read at least one prediction per video")
    if args.clipscore and (not args.videos or not Path(args.videos).is_dir()):  # checked before the long part
        raise Mmgpt2Error(f"--clipscore needs --videos DIR, the folder of the videos (got {args.videos!r})")
    scores = evaluate_dense_files(
        args.pred,
        args.gt,
        protocol=args.protocol,
        seed=args.seed,
        soda=not args.no_soda,
        soda_references=args.soda_references,
        soda_missing=args.soda_missing,
        max_proposals=args.max_proposals,
        progress=not args.json and sys.stderr.isatty(),
    )
    if args.clipscore:
        scores.update(_dense_clipscore(args))
    if args.json:
        print(json.dumps(scores, indent=2))
    else:
        print(format_table(scores))
        if "CLIPScore" in scores:
            print(
                f"CLIPScore {scores['CLIPScore']:.4f}  RefCLIPScore {scores['RefCLIPScore']:.4f}  ({args.clipscore})"
            )
    if scores["predicted_videos_not_in_gt"]:
        _warn(
            "eval-dense",
            f"{scores['predicted_videos_not_in_gt']} predicted videos are in no ground-truth file",
        )
    return 0


def _dense_clipscore(args) -> dict:
    from mmgpt2.apps.video.features import video_features
    from mmgpt2.encoders import load_encoder
    from mmgpt2.eval.clipscore import dense_clip_score
    from mmgpt2.eval.dense_inputs import check_ground_truth, check_predictions, load_json

    preds = check_predictions(load_json(args.pred), args.pred)
    truth: dict = {}
    for path in args.gt:
        for vid, events in check_ground_truth(load_json(path), path).items():
            truth.setdefault(vid, {"timestamps": [], "sentences": []})
            truth[vid]["timestamps"] += [[e.start, e.end] for e in events]
            truth[vid]["sentences"] += [e.sentence for e in events]
    encoder = load_encoder(args.clipscore, args.device)
    from tqdm.auto import tqdm

    frames = {}
    for vid in tqdm(preds, desc="CLIPScore frames", unit="video", disable=args.json or len(preds) < 2):
        path = next(
            (p for ext in VIDEO_EXTENSIONS if (p := Path(args.videos) / f"{vid}{ext}").is_file()), None
        )
        if path is not None:
            try:
                frames[vid] = video_features(path, encoder)
            except Mmgpt2Error as err:  # one unreadable video must not lose the others' scores
                _warn("eval-dense", f"--clipscore: skipped {path}: {err}")
    results = {
        vid: [{"sentence": e.sentence, "timestamp": [e.start, e.end]} for e in evs]
        for vid, evs in preds.items()
    }
    out = dense_clip_score(encoder, frames, results, truth)
    if out["videos_without_frames"]:
        _warn(
            "eval-dense",
            f"--clipscore: {len(out['videos_without_frames'])} predicted videos not found in {args.videos}",
        )
    return {
        "CLIPScore": out["CLIPScore"],
        "RefCLIPScore": out["RefCLIPScore"],
        "clipscore_events": out["events"],
        "clipscore_videos_without_frames": len(out["videos_without_frames"]),
    }


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-captions",
        help="BLEU-1..4, METEOR, ROUGE-L, CIDEr as COCOEvalCap (needs Java); CLIPScore optional",
        description="Score predicted captions against references exactly as COCOEvalCap does (PTB tokenizer, "
        "pycocoevalcap scorers) over the predicted ids; reference ids without a prediction are reported. "
        "--clipscore ENCODER adds CLIPScore and RefCLIPScore (Hessel et al. 2021): the image of a prediction "
        "is its id when that is a file (as in `mmgpt2 caption --json`), else --image-root/ID[.jpg|.png|...] "
        "(COCO captions references: the image's file_name).",
    )
    p.add_argument(
        "--pred", required=True, help="`mmgpt2 caption --json` output, {id: caption} or COCO results"
    )
    p.add_argument(
        "--refs", required=True, help="{id: [captions]} JSON, COCO captions JSON or our JSON lines"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--clipscore", metavar="ENCODER", help="also CLIPScore/RefCLIPScore with this encoder spec"
    )
    p.add_argument("--image-root", help="folder of the images, for --clipscore")
    p.add_argument("--device", default=None, help="encoder device for --clipscore (default cpu)")
    p.set_defaults(func=cmd_eval_captions)

    ev = sub.add_parser(
        "eval-dense",
        help="score dense video captions as densevid_eval (2018/2021) and SODA_c",
        description="The ActivityNet Captions evaluator's numbers (densevid_eval as PDVC ships it): precision/"
        "recall/F1 at tIoU 0.3/0.5/0.7/0.9 and BLEU-1..4, METEOR, ROUGE-L, CIDEr per ground-truth video, "
        "averaged; plus SODA_c (fujiso/SODA as PDVC calls it). The 2021 protocol differs from 2018 only in "
        "the reference of an unmatched prediction: a random string instead of 'abc123!@#'. Needs Java.",
    )
    ev.add_argument("--pred", required=True, help="predictions JSON (ActivityNet format)")
    ev.add_argument(
        "--gt", required=True, nargs="+", help="ground-truth JSON file(s), e.g. val_1.json val_2.json"
    )
    ev.add_argument("--json", action="store_true", help="print the scores as JSON")
    ev.add_argument("--protocol", choices=["2018", "2021"], default="2018", help="densevid_eval version")
    ev.add_argument("--seed", type=int, help="seed of the 2021 protocol's random references")
    ev.add_argument(
        "--soda-missing",
        choices=["skip", "zero"],
        default="skip",
        help="SODA_c over videos with predictions (reference) or over all ground-truth videos, 0 when missing",
    )
    ev.add_argument(
        "--soda-references",
        choices=["per-file", "merged"],
        default="per-file",
        help="score each --gt file and average (PDVC, default) or pool their events per video (soda.py -r G1 G2)",
    )
    ev.add_argument("--no-soda", action="store_true", help="skip SODA_c")
    ev.add_argument(
        "--max-proposals", type=int, default=1000, help="predictions read per video (reference: 1000)"
    )
    ev.add_argument(
        "--clipscore", metavar="ENCODER", help="also CLIPScore/RefCLIPScore of each event over its frames"
    )
    ev.add_argument("--videos", help="folder of the videos (VIDEO_ID.mp4, ...), for --clipscore")
    ev.add_argument("--device", default=None, help="encoder device for --clipscore (default cpu)")
    ev.set_defaults(func=cmd_eval_dense)
