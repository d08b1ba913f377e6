"""ZeroTA against ZeroCap-style captioning on held-out synthetic videos: quality and seconds.

One run, the same videos and machine for every row:
  ZeroTA rows     the shipped `shapes-video-zerota` settings, with each speed-up switched off in turn
                  (`shared_rollouts`: every lookahead rollout of a token step in one batch from the
                  KV cache of the pass that proposed the tokens; `text_cache`: every CLIP text
                  embedded once per video), plus any `--row NAME KEY=VALUE ...` you add;
  ZeroCap-style   `mmgpt2.lm.zerocap`, run the way ZeroCap runs: one complete caption
                  per event segment, published settings (top-512 CLIP-scored candidates, 5 gradient
                  steps of size 0.3 per token on GPT-2's cached context), up to ZeroTA's caption
                  length. It is given the *ground-truth* segments (it cannot localise), so its
                  F1@0.5 is 1 by construction and its captions never suffer from a bad segment.
                  It embeds each candidate text once per token; `--zerocap-as-published` adds
                  the row that re-embeds them at every gradient step, as ZeroCap's code does.
Columns: attribute accuracy and CLIPScore over matched events (tIoU >= 0.5), METEOR (ActivityNet
protocol), F1@0.5, and seconds per video: CPU seconds of this process (1 thread: what an idle
core would take; robust when the machine is shared) and wall seconds. Both include decoding and
encoding the video's frames. A quality-vs-seconds curve (ZeroTA: optimisation steps swept;
ZeroCap-style: gradient steps per token swept) is drawn to --curve.

Real size (`--encoder open_clip:ViT-L-14 --lm random:gpt2-medium`, random weights): only ZeroTA
on one 60-s video, its seconds and peak memory (the quality of random weights means nothing).
`--row` settings apply there too: a random GPT-2 gives every token about 1/50,000, so the default
`guided_min_prob` would spare it all lookahead work; `--row worst guided_min_prob=0` times the
case where every proposal is judged.

Usage:
    python benchmarks/zerota.py                            # 20 held-out videos, 1 thread
    python benchmarks/zerota.py --videos 4 --curve-videos 2 --curve-steps 0 4 --curve-zerocap 0 1
    python benchmarks/zerota.py --encoder open_clip:ViT-L-14 --lm random:gpt2-medium [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F


def clip_score(encoder, sentences: list[str], images: torch.Tensor) -> list[float]:
    """CLIPScore (Hessel et al. 2021): ``2.5 * max(cos(text, image), 0)`` per pair.

    Kept local and tiny so that it can be swapped for ``mmgpt2.eval.clipscore`` once that lands.
    """
    if not sentences:
        return []
    text = F.normalize(encoder.encode_text(sentences).float(), dim=-1)
    image = F.normalize(images.float().to(text.device), dim=-1)
    return (2.5 * (text * image).sum(-1).clamp(min=0)).tolist()


def segment_embedding(feats, start: float, end: float) -> torch.Tensor:
    """Mean normalised frame feature inside ``[start, end)`` (the nearest frame if none is inside)."""
    inside = (feats.times >= start) & (feats.times < end)
    if not bool(inside.any()):
        inside = (feats.times - (start + end) / 2).abs() == (feats.times - (start + end) / 2).abs().min()
    return F.normalize(feats.features[inside].float(), dim=-1).mean(0)


def matched_pairs(events, truth, thr: float = 0.5):
    """Each ground-truth event with its best-overlapping prediction, kept when tIoU >= `thr`."""
    from mmgpt2.eval.dense import tiou

    pairs = []
    for j, seg in enumerate(truth["timestamps"]):
        best = max(events, key=lambda e: tiou([e.start, e.end], seg), default=None)
        if best is not None and tiou([best.start, best.end], seg) >= thr:
            pairs.append((best, j))
    return pairs


class Clock:
    """CPU seconds of this process and wall seconds, between `start` and `stop`."""

    def __enter__(self) -> Clock:
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.cpu, self.wall = time.process_time() - self.cpu, time.perf_counter() - self.wall


def zerocap_events(model, feats, truth, steps_per_token: int, reuse: bool = True):
    """ZeroCap-style captions of the ground-truth segments, as events."""
    from mmgpt2.apps.video.zerota import Event
    from mmgpt2.lm.zerocap import ZeroCapSettings, zerocap_caption

    settings = ZeroCapSettings(
        steps_per_token=steps_per_token, max_tokens=model.zerota.max_new_tokens, reuse_clip_scores=reuse
    )
    events = []
    for start, end in truth["timestamps"]:
        emb = segment_embedding(feats, start, end)
        text = zerocap_caption(model.encoder, model.lm, emb, settings)
        events.append(Event(text, start, end, clip_score(model.encoder, [text], emb[None])[0] / 2.5))
    return events


def summarise(model, results, clocks, feat_clocks, gt, videos) -> dict:
    """The table's columns for one method over `videos`."""
    from mmgpt2.apps.video.model import activitynet_predictions
    from mmgpt2.eval.dense import evaluate_dense
    from mmgpt2.worlds import shapes

    attr, scores, misses = [], [], []
    for vid in videos:
        pairs = matched_pairs(results[vid], gt[vid])
        for event, j in pairs:
            scene = shapes.scene_from_record(gt[vid]["scenes"][j])
            attr.append(shapes.attribute_accuracy(event.sentence, scene))
            if not attr[-1]:
                misses.append((gt[vid]["sentences"][j], event.sentence))
        segs = [gt[vid]["timestamps"][j] for _, j in pairs]
        embs = [segment_embedding(feat_clocks[vid][0], *s) for s in segs]
        scores += clip_score(model.encoder, [e.sentence for e, _ in pairs], torch.stack(embs)) if embs else []
    dense = evaluate_dense(
        activitynet_predictions({v: results[v] for v in videos}),
        {v: {k: gt[v][k] for k in ("duration", "timestamps", "sentences")} for v in videos},
    )
    n = len(videos)
    return {
        "attr acc": sum(attr) / max(len(attr), 1),
        "matched": len(attr),
        "METEOR": dense["METEOR"],
        "CLIPScore": sum(scores) / max(len(scores), 1),
        "F1@0.5": dense["per_tiou"]["0.5"]["F1"],
        "cpu s/video": sum(clocks[v].cpu + feat_clocks[v][1].cpu for v in videos) / n,
        "wall s/video": sum(clocks[v].wall + feat_clocks[v][1].wall for v in videos) / n,
        "misses": misses[:3],
    }


def run_method(
    name, model, videos, feat_clocks, gt, cache, zerota=None, zerocap_steps=None, reuse=True
) -> tuple:
    """Per-video events and clocks of one method (cached by its settings, so curve points reuse rows)."""
    full = model.zerota.replace(**(zerota or {})).to_dict() if zerocap_steps is None else None
    key = (name, json.dumps(full, sort_keys=True), zerocap_steps, reuse)
    done_results, done_clocks = cache.setdefault(key, ({}, {}))
    for vid in videos:
        if vid in done_results:
            continue
        feats = feat_clocks[vid][0]
        with Clock() as clock:
            if zerocap_steps is None:
                events = model.caption_features(feats, **(zerota or {}))
            else:
                events = zerocap_events(model, feats, gt[vid], zerocap_steps, reuse)
        done_results[vid], done_clocks[vid] = events, clock
        print(
            f"[{name}] {vid}: cpu {clock.cpu:.1f} s, wall {clock.wall:.1f} s, {len(events)} events",
            flush=True,
        )
    return done_results, done_clocks


def draw_curve(points: dict[str, list[tuple[float, float, str]]], path: Path, title: str) -> None:
    """Attribute accuracy against CPU seconds per video, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (method, pts), colour in zip(points.items(), ("tab:blue", "tab:orange", "tab:green"), strict=False):
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], "o-", color=colour, label=method)
        for x, y, label in pts:
            ax.annotate(label, (x, 100 * y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("CPU seconds per video (1 thread, frames + captioning)")
    ax.set_ylabel("attribute accuracy of matched events (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def peak_memory_gb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def row_settings(rows: list[list[str]]) -> dict:
    """The settings of `--row NAME KEY=VALUE ...` rows (JSON values), merged into one dict."""
    return {k: json.loads(v) for _, *items in rows for k, v in (item.split("=", 1) for item in items)}


def real_size(args, work: Path) -> None:
    """ZeroTA with real-size (random-weight) models on one 60-s video: seconds and peak memory."""
    from mmgpt2.apps.video.model import DenseVideoCaptioner
    from mmgpt2.worlds import videos

    base = DenseVideoCaptioner.from_pretrained(args.model)
    with Clock() as load:
        model = DenseVideoCaptioner.build(
            args.encoder,
            args.lm,
            sampling={**base.sampling.__dict__, "size": 224, "fps": args.fps},
            **{**base.zerota.to_dict(), **row_settings(args.row)},
        )
        model.encoder.to(args.device)
        model.lm.to(args.device)
    model.cache_dir = None
    videos.write(work / "long", n=1, seed=args.seed + 1, duration=(60, 60), scenes=(3, 3))
    with Clock() as frames:
        feats = model.features(work / "long" / "00000.mp4", progress=True)
    steps = model.zerota.steps if args.steps is None else args.steps
    with Clock() as optimise:
        events = model.caption_features(feats, steps=steps)
    print(
        f"\nreal size on {args.device} (torch threads {args.threads}; shared machine): {args.encoder} + {args.lm}, "
        f"one 60-s video, {len(feats.times)} frames at {args.fps} fps, {model.zerota.events} events, {steps} steps, "
        f"settings {row_settings(args.row) or 'as shipped'}"
    )
    print(f"{'part':<28}{'CPU s':>9}{'wall s':>9}")
    for name, c in (("load models", load), ("frames + features", frames), ("ZeroTA optimisation", optimise)):
        print(f"{name:<28}{c.cpu:>9.1f}{c.wall:>9.1f}")
    print(f"{'total per video':<28}{frames.cpu + optimise.cpu:>9.1f}{frames.wall + optimise.wall:>9.1f}")
    print(
        f"peak memory: {peak_memory_gb(args.device):.2f} GiB ({'CUDA allocated' if args.device.startswith('cuda') else 'process max RSS'})"
    )
    print(f"{len(events)} events (random weights: the text means nothing)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "encoder": args.encoder,
                    "lm": args.lm,
                    "device": args.device,
                    "frames": {"cpu": frames.cpu, "wall": frames.wall},
                    "optimisation": {"cpu": optimise.cpu, "wall": optimise.wall},
                    "peak_memory_gib": peak_memory_gb(args.device),
                },
                indent=2,
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="shapes-video-zerota")
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument(
        "--seed", type=int, default=10_000, help="seeds >= 10_000 were never used to build models"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=None, help="ZeroTA steps (default: the model's)")
    parser.add_argument(
        "--row",
        nargs="+",
        action="append",
        default=[],
        metavar="NAME KEY=VALUE",
        help="an extra ZeroTA row, e.g. --row '8 steps' steps=8 (JSON values); repeatable",
    )
    parser.add_argument(
        "--zerocap-steps", type=int, default=5, help="ZeroCap-style steps per token (published: 5)"
    )
    parser.add_argument(
        "--zerocap-as-published",
        action="store_true",
        help="add a ZeroCap-style row that CLIP-embeds the candidates at every gradient step, as ZeroCap does",
    )
    parser.add_argument(
        "--ablations",
        action="store_true",
        help="add rows with the speed-ups switched off (the code before them)",
    )
    parser.add_argument(
        "--curve-videos", type=int, default=6, help="the first N videos make the curve (0: none)"
    )
    parser.add_argument("--curve-steps", type=int, nargs="*", default=[0, 2, 4, 8, 16])
    parser.add_argument("--curve-zerocap", type=int, nargs="*", default=[0, 1, 2, 5])
    parser.add_argument("--curve", type=Path, default=Path("runs/zerota_bench/curve.png"))
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--encoder", help="real-size mode: this encoder spec instead of the model's")
    parser.add_argument("--lm", help="real-size mode: this LM spec instead of the model's")
    parser.add_argument("--fps", type=float, default=1.0, help="real-size mode: frames per second")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="zerota_bench_"))
    if args.encoder or args.lm:
        if not (args.encoder and args.lm):
            sys.exit("real-size mode needs both --encoder and --lm")
        return real_size(args, work)

    from mmgpt2.apps.video.model import DenseVideoCaptioner
    from mmgpt2.worlds import videos

    model = DenseVideoCaptioner.from_pretrained(args.model, device=args.device)
    model.cache_dir = None  # time real decoding + encoding
    if args.steps is not None:
        model.zerota.steps = args.steps
    gt = json.loads(videos.write(work / "v", n=args.videos, seed=args.seed).read_text())
    ids = sorted(gt)
    feat_clocks = {}
    for vid in ids:
        with Clock() as clock:
            feats = model.features(work / "v" / f"{vid}.mp4")
        feat_clocks[vid] = (feats, clock)

    zerota_rows = {"ZeroTA": {}}
    if args.ablations:
        zerota_rows["ZeroTA, no shared rollouts"] = {"shared_rollouts": False}
        zerota_rows["ZeroTA, neither (before)"] = {"shared_rollouts": False, "text_cache": False}
    for row in args.row:
        zerota_rows[row[0]] = row_settings([row])
    cache: dict = {}
    table = {}
    for name, setting in zerota_rows.items():
        results, clocks = run_method("ZeroTA", model, ids, feat_clocks, gt, cache, zerota=setting)
        table[name] = summarise(model, results, clocks, feat_clocks, gt, ids)
    zc_steps = args.zerocap_steps
    results, clocks = run_method("ZeroCap", model, ids, feat_clocks, gt, cache, zerocap_steps=zc_steps)
    table["ZeroCap-style (GT segments)"] = summarise(model, results, clocks, feat_clocks, gt, ids)
    if args.zerocap_as_published:
        results, clocks = run_method(
            "ZeroCap", model, ids, feat_clocks, gt, cache, zerocap_steps=zc_steps, reuse=False
        )
        table["ZeroCap-style, CLIP every step"] = summarise(model, results, clocks, feat_clocks, gt, ids)

    points: dict[str, list] = {}
    curve_ids = ids[: args.curve_videos]
    if curve_ids:
        points = {"ZeroTA (steps)": [], "ZeroCap-style (steps per token)": []}
        for steps in args.curve_steps:
            results, clocks = run_method(
                "ZeroTA", model, curve_ids, feat_clocks, gt, cache, zerota={"steps": steps}
            )
            s = summarise(model, results, clocks, feat_clocks, gt, curve_ids)
            points["ZeroTA (steps)"].append((s["cpu s/video"], s["attr acc"], str(steps)))
        for spt in args.curve_zerocap:
            results, clocks = run_method(
                "ZeroCap", model, curve_ids, feat_clocks, gt, cache, zerocap_steps=spt
            )
            s = summarise(model, results, clocks, feat_clocks, gt, curve_ids)
            points["ZeroCap-style (steps per token)"].append((s["cpu s/video"], s["attr acc"], str(spt)))
        draw_curve(
            points,
            args.curve,
            f"{len(curve_ids)} held-out videos; ZeroTA {model.zerota.events} events; 1 thread, shared machine",
        )

    zc = table["ZeroCap-style (GT segments)"]
    print(
        f"\nZeroTA vs ZeroCap-style on {len(ids)} held-out synthetic videos (seed {args.seed}; ZeroTA "
        f"{model.zerota.events} events, {model.zerota.steps} steps; ZeroCap-style {zc_steps} steps/token, "
        f"top-512, up to {model.zerota.max_new_tokens} tokens; torch threads {args.threads}; the CPU was shared "
        f"with other jobs: CPU seconds are the fair measure, wall seconds show the contention)\n"
    )
    head = f"{'method':<30}{'attr acc':>9}{'matched':>8}{'METEOR':>8}{'CLIPScore':>10}{'F1@0.5':>8}"
    print(head + f"{'CPU s/vid':>10}{'wall s/vid':>11}{'x faster':>9}")
    for name, r in table.items():
        print(
            f"{name:<30}{r['attr acc']:>9.1%}{r['matched']:>8d}{r['METEOR']:>8.3f}{r['CLIPScore']:>10.3f}"
            f"{r['F1@0.5']:>8.3f}{r['cpu s/video']:>10.2f}{r['wall s/video']:>11.2f}"
            f"{zc['cpu s/video'] / r['cpu s/video']:>9.2f}"
        )
    print("(x faster: ZeroCap-style CPU seconds / this row's)")
    if points:
        print(f"\ncurve ({len(curve_ids)} videos): {args.curve}")
    for method, pts in points.items():
        print(f"  {method}: " + ", ".join(f"{lab}: {y:.1%} at {x:.2f} s" for x, y, lab in sorted(pts)))
    for name, r in table.items():
        print(f"{name} misses (truth, caption): {r['misses']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"table": table, "curve": points}, indent=2, default=str))


if __name__ == "__main__":
    main()
