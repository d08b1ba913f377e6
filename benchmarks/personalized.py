"""Personalized captioning on the users world: our UAPT model vs a non-personalized ClipCap mapper.

Both are trained on the same posts (the 16 training users, 120 posts each) with the same budget
(`recipes/build_users.py:TRAIN`: steps, batch, lr, warm-up), on the same frozen `shapes-clip` and
`users-gpt2`. Ours is the shipped `shapes-users-tiny`; the baseline is trained here (cached under
the build dir). Held-out scenes are captioned for every user: training users by id, held-out
users from their history only (120 past captions, never seen in training).

Metrics per user, over the held-out scenes:
  style   share of captions that fully match that user's template (`worlds.users.in_style`: the
          opener, word order and ending must all be the user's; a rule-based check, exact because
          the world's styles are known: no classifier to fool)
  BLEU-4, CIDEr   against that user's own caption of the scene (pycocoevalcap, one reference)
  attr    share of captions that name the scene's shape, colour, size and position right
          (`worlds.shapes.attribute_accuracy`), whatever the style

Run: ``python benchmarks/personalized.py`` (trains the baseline once, ~5-8 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))

import build_users  # noqa: E402

from mmgpt2 import load_pipeline  # noqa: E402
from mmgpt2.worlds import users  # noqa: E402
from mmgpt2.worlds.shapes import attribute_accuracy  # noqa: E402


def train_baseline(data: dict, out_dir: Path, retrain: bool, steps: int):
    """ClipCap transformer mapper on pooled features, same data and budget as ours."""
    from mmgpt2.apps.captioning.model import PrefixCaptioner
    from mmgpt2.apps.personalized import PersonalizedFeatureDataset
    from mmgpt2.lm import load_lm
    from mmgpt2.training import train

    final = out_dir / "final"
    lm = load_lm(build_users.LM)
    if final.is_dir() and not retrain:
        return PrefixCaptioner.from_pretrained(final, encoder=data["encoder"], lm=lm)
    no_context = [[] for _ in data["train"]]
    dataset = PersonalizedFeatureDataset(data["train"], no_context, data["features"], use_tokens=False)
    torch.manual_seed(build_users.TRAIN["seed"])
    m = build_users.MODEL
    model = PrefixCaptioner.build(
        data["encoder"],
        lm,
        mapper="transformer",
        generation=build_users.GENERATION,
        prefix_length=m["prefix_length"],
        clip_length=m["prefix_length"],
        num_layers=m["num_layers"] + m["fusion"]["num_layers"],
        num_heads=m["num_heads"],
    )
    train(model, dataset, build_users.train_config(out_dir, steps))
    return model.eval()


def trainable_params(model) -> int:
    return sum(v.numel() for v in model.trainable_state_dict().values())


def evaluate(captions_by_user: dict[str, list[str]], test: list[dict]) -> dict[str, dict[str, float]]:
    from mmgpt2.eval.captions import score_caption_groups

    ids = [str(i) for i in range(len(test))]
    groups = {
        user: (
            dict(zip(ids, caps, strict=True)),
            {i: [t["refs"][user]] for i, t in zip(ids, test, strict=True)},
        )
        for user, caps in captions_by_user.items()
    }
    scores = score_caption_groups(groups, metrics=("BLEU-4", "CIDEr"))  # one Java start for all users
    rows = {}
    for user, caps in captions_by_user.items():
        rows[user] = {
            "style": 100 * sum(users.in_style(c, user) for c in caps) / len(caps),
            **scores[user],
            "attr": 100
            * sum(attribute_accuracy(c, t["scene"]) for c, t in zip(caps, test, strict=True))
            / len(caps),
        }
    return rows


def mean(rows: dict[str, dict[str, float]], names) -> dict[str, float]:
    keys = next(iter(rows.values())).keys()
    return {k: sum(rows[n][k] for n in names) / len(names) for k in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", default="build/users")
    parser.add_argument("--retrain-baseline", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="smoke run on the --quick build (20 steps)")
    parser.add_argument("--baseline-only", action="store_true", help="train (or load) the baseline and stop")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    if args.quick:  # the --quick build's smoke-run assets, never the shipped ones
        os.environ["MMGPT2_ASSETS"] = str(Path("build/users-quick/assets").resolve())
    build_dir = Path(args.build_dir + ("-quick" if args.quick else ""))
    data = build_users.prepare(build_dir, quick=args.quick)
    steps = 20 if args.quick else build_users.TRAIN["max_steps"]
    base = train_baseline(data, build_dir / "baseline", args.retrain_baseline, steps)
    if args.baseline_only:
        return 0
    ours = load_pipeline("shapes-users-tiny", encoder=data["encoder"])
    feats = data["features"]
    test = data["test"]
    pooled = torch.stack([feats.pooled(t["image"]) for t in test]).float()
    tokens = torch.stack([feats.tokens(t["image"]) for t in test]).float()

    t1 = time.time()
    ours_caps, contexts = {}, {}
    for user in users.USERS:
        contexts[user] = (
            ours.context_words(user) if user in ours.users else ours.context_words(data["histories"][user])
        )
        ours_caps[user] = ours.caption_features(pooled, tokens, [contexts[user]] * len(test))
    ours_s = (time.time() - t1) / (len(test) * len(users.USERS))
    t1 = time.time()
    base_caps_once = base.caption_features(pooled)
    base_s = (time.time() - t1) / len(test)
    neutral = ours.caption_features(pooled, tokens, [[]] * len(test))
    base_caps = {u: base_caps_once for u in users.USERS}
    ours_rows, base_rows = evaluate(ours_caps, test), evaluate(base_caps, test)

    header = f"{'user':<7} {'split':<9} {'style ours/base':>16} {'BLEU-4 ours/base':>17} {'CIDEr ours/base':>16} {'attr ours/base':>15}"
    print(header)
    print("-" * len(header))

    def line(name: str, split: str, a: dict, b: dict) -> None:
        print(
            f"{name:<7} {split:<9} {a['style']:>7.1f}/{b['style']:<8.1f} {a['BLEU-4']:>8.3f}/{b['BLEU-4']:<8.3f} "
            f"{a['CIDEr']:>7.2f}/{b['CIDEr']:<8.2f} {a['attr']:>6.1f}/{b['attr']:<8.1f}"
        )

    for user in users.USERS:
        line(user, "train" if user in users.TRAIN_USERS else "held-out", ours_rows[user], base_rows[user])
    print("-" * len(header))
    summary = {}
    for split, names in (("train", list(users.TRAIN_USERS)), ("held-out", list(users.HELD_OUT_USERS))):
        a, b = mean(ours_rows, names), mean(base_rows, names)
        summary[split] = {"ours": a, "baseline": b}
        line("MEAN", split, a, b)
    neutral_attr = (
        100 * sum(attribute_accuracy(c, t["scene"]) for c, t in zip(neutral, test, strict=True)) / len(test)
    )
    print(
        f"\ntrainable parameters: ours {trainable_params(ours):,} vs baseline {trainable_params(base):,} "
        f"(ratio {trainable_params(ours) / trainable_params(base):.2f})"
    )
    print(
        f"greedy decoding per caption: ours {1000 * ours_s:.1f} ms vs baseline {1000 * base_s:.1f} ms "
        f"(ratio {ours_s / base_s:.2f}, batches of {len(test)})"
    )
    print(f"ours with no user context: attribute accuracy {neutral_attr:.1f}%; example: {neutral[0]!r}")
    for user in ("ada", "fay", "quinn"):
        print(
            f"  {user:<6} context {contexts[user][:6]} -> {ours_caps[user][0]!r} (ref {test[0]['refs'][user]!r})"
        )
    print(f"  base   -> {base_caps_once[0]!r}")
    print(
        f"\ntargets: style >= 90% train users: {summary['train']['ours']['style']:.1f}%; >= 70% held-out users: "
        f"{summary['held-out']['ours']['style']:.1f}%; attr drop <= 5 points: "
        f"{summary['train']['baseline']['attr'] - summary['train']['ours']['attr']:+.1f} (train users), "
        f"{summary['held-out']['baseline']['attr'] - summary['held-out']['ours']['attr']:+.1f} (held-out)"
    )
    print(f"({time.time() - t0:.0f}s)")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"per_user": {"ours": ours_rows, "baseline": base_rows}, "summary": summary}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
