"""UAPT personalized captioning on Attend2u (Instagram or YFCC100M), read in the layout Attend2u ships.

Point ``--data`` at the Attend2u data folder, unpacked as its README says::

    data/                              data_yfcc/
      json/insta-caption-train.json      json/yfcc-caption-train.json
      json/insta-caption-test1.json      json/yfcc-caption-test.json
      json/insta-caption-test2.json      images/{user_id}_{photo_id}     (no extension)
      images/{user}_@_{post}             (no extension)

    python recipes/personalized_attend2u.py --kind yfcc --data /data/data_yfcc --out runs/uapt-yfcc
    python recipes/personalized_attend2u.py --kind instagram --data /data/attend2u --out runs/uapt-insta
    python recipes/personalized_attend2u.py ... --limit 200 --max-steps 50      # a smoke run

(``--train/--test1/--test2/--test`` and ``--images`` name files and folders one by one instead.) The
setup comes from the named config ``uapt-attend2u``; flags given here override it. Captions are
normalised as Attend2u's preprocessing does (`mmgpt2.apps.personalized.attend2u`) before training
and scoring.

Leakage rules: the IDF and the stored contexts come from the training split only; each training
caption's context comes from its author's OTHER training posts; test posts of a user seen in
training use the stored context, which never saw them; posts of unseen users (test1) get a
leave-one-out context from their other posts of the same split, i.e. their history only; a
training post whose id or image is also in a test split is dropped from training.

Writes OUT/predictions.json (``[{"id", "image", "prediction", "references", "user", "split"}]``, ids
being Attend2u's post ids) and OUT/scores.json (per test split; test posts that are not scored are
listed by id under ``"unscored"`` with the reason: image missing or unreadable, or no caption).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipe_common, when imported from elsewhere

import recipe_common as common  # noqa: E402

CONFIG = "uapt-attend2u"


def build_parser(kind: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if kind is None:
        parser.add_argument("--kind", required=True, choices=("instagram", "yfcc"))
    parser.add_argument("--data", type=Path, help="Attend2u data folder holding json/ and images/")
    parser.add_argument("--images", type=Path, help="folder of the post images (default: DATA/images)")
    parser.add_argument("--train", help="training split JSON (default: DATA/json/<kind>-caption-train.json)")
    parser.add_argument("--test1", help="Instagram unseen-users split JSON")
    parser.add_argument("--test2", help="Instagram unseen-posts split JSON")
    parser.add_argument("--test", help="YFCC100M test split JSON")
    parser.add_argument("--all", help="one JSON of every post: splits are cut here (10%% users, 10%% posts)")
    parser.add_argument(
        "--image-pattern", help="image file name from {user} and {post} (default: Attend2u's)"
    )
    parser.add_argument("--with-tags", action="store_true", help="Instagram: append the hashtags to captions")
    common.add_model_arguments(parser, CONFIG)
    common.add_train_arguments(parser)
    parser.add_argument("--top-n", type=int, help="context words per user (default: the config's, 100)")
    parser.add_argument("--prefix-length", type=int)
    parser.add_argument("--hidden-dim", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--num-beams", type=int, help="beam width at test time (default: the config's)")
    return parser


def read_splits(kind: str, args: argparse.Namespace, parser: argparse.ArgumentParser, report: dict):
    """The splits named on the command line, or the shipped files found under ``--data``."""
    from mmgpt2.apps.personalized.attend2u import (
        IMAGE_PATTERNS,
        SPLIT_FILES,
        load_attend2u_splits,
        read_instagram,
        read_yfcc,
        split_posts,
    )

    images = args.images or (args.data / "images" if args.data else None)
    if images is None or not images.is_dir():
        parser.error(f"--images {images}: no such folder (give --data DIR holding images/, or --images)")
    options = {"image_pattern": args.image_pattern or IMAGE_PATTERNS[kind]}
    if kind == "instagram":
        options["with_tags"] = args.with_tags
    if args.all:
        reader = read_instagram if kind == "instagram" else read_yfcc
        return split_posts(reader(args.all, image_dir=images, **options))
    files = {name: getattr(args, name) for name in ("train", "test1", "test2", "test") if getattr(args, name)}
    if not files:
        if args.data is None:
            parser.error(
                "give --data (Attend2u's folder with json/ and images/), --train/--test..., or --all"
            )
        files = {name: str(args.data / "json" / f) for name, f in SPLIT_FILES[kind].items()}
    if "train" not in files:
        parser.error("give the training split (--train), or --data holding it")
    return load_attend2u_splits(files, kind=kind, image_dir=images, report=report, **options)


def run(kind: str, args: argparse.Namespace, splits: dict, report: dict) -> dict:
    """Extract features, fit the user store, train, caption every test split and score it."""
    import torch

    from mmgpt2.apps.personalized.dataset import PersonalizedFeatureDataset, leave_one_out_contexts
    from mmgpt2.apps.personalized.store import UserStore
    from mmgpt2.configs import build_from_config
    from mmgpt2.data import extract_features
    from mmgpt2.encoders import load_encoder
    from mmgpt2.errors import Mmgpt2Error
    from mmgpt2.eval.captions import score_caption_groups
    from mmgpt2.training import train

    named = common.load_config(args)
    out = args.out
    train_posts = [p for p in common.limited(splits["train"], args.limit) if p.caption]
    tests = {name: common.limited(posts, args.limit) for name, posts in splits.items() if name != "train"}
    by_user: dict[str, list[str]] = {}
    for p in train_posts:
        by_user.setdefault(p.user, []).append(p.caption)
    store = UserStore.build(by_user, top_n=args.top_n or named.data.get("context_words", 100))
    encoder = load_encoder(args.encoder, device=args.device)
    all_posts = train_posts + [p for posts in tests.values() for p in posts]
    features = extract_features([p.image for p in all_posts], encoder, out / "features", tokens=True)
    if not any(p.image in features for p in all_posts):
        example = all_posts[0].image if all_posts else "?"
        raise Mmgpt2Error(
            f"none of the {len(all_posts)} posts' images could be read (e.g. {example}); Attend2u names them "
            f"{'{user}_@_{post}' if kind == 'instagram' else '{user_id}_{photo_id}'} with no extension in "
            "images/; give --image-pattern for another naming"
        )

    generation = dict(common.build_settings(named).get("generation", {}))
    if args.num_beams:
        generation["num_beams"] = args.num_beams
    build = common.build_settings(
        named, prefix_length=args.prefix_length, hidden_dim=args.hidden_dim, num_layers=args.layers
    )
    build.update(
        generation=generation, user_store=store, num_heads=max(1, build.get("hidden_dim", 768) // 64)
    )
    common.seed_everything(named, args)
    model = build_from_config(named, encoder, args.lm, **build)
    dataset = PersonalizedFeatureDataset(
        train_posts, leave_one_out_contexts(train_posts, store.model), features
    )
    final = train(model, dataset, common.train_config(named, args, out))
    model.eval()

    rows: list[dict] = []
    groups: dict = {}
    unscored: dict[str, dict[str, str]] = {}
    for split, posts in tests.items():
        why = {p.id: "no caption" for p in posts if not p.caption}
        why.update({p.id: "image missing or unreadable" for p in posts if p.image not in features})
        unscored[split] = why
        posts = [p for p in posts if p.id not in why]
        if not posts:
            continue
        # Users seen in training: their stored context (it never saw test posts); others: their other posts here.
        unseen = [p for p in posts if p.user not in store]
        fresh = dict(zip((id(p) for p in unseen), leave_one_out_contexts(unseen, store.model), strict=True))
        contexts = [store.users[p.user] if p.user in store else fresh[id(p)] for p in posts]
        preds: dict[str, str] = {}
        with torch.no_grad():
            for i in range(0, len(posts), 64):
                chunk = posts[i : i + 64]
                pooled = torch.stack([features.pooled(p.image) for p in chunk])
                tokens = torch.stack([features.tokens(p.image) for p in chunk])
                captions = model.caption_features(pooled, tokens, contexts[i : i + 64])
                preds.update({p.id: c for p, c in zip(chunk, captions, strict=True)})
        groups[split] = (preds, {p.id: [p.caption] for p in posts})
        rows += [
            {
                "id": p.id,
                "image": p.image,
                "prediction": preds[p.id],
                "references": [p.caption],
                "user": p.user,
                "split": split,
            }
            for p in posts
        ]
    # one Java start for every split; each split is still its own corpus
    scores: dict = score_caption_groups(groups, common.metrics(args)) if groups else {}
    for split, (preds, _) in groups.items():
        scores[split]["posts_scored"] = len(preds)
    scores["unscored"] = unscored
    scores["dropped_from_train"] = report.get("dropped_from_train", [])
    scores["model"] = str(final)
    common.write_results(out, rows, scores)
    return scores


def main_for(kind: str | None, argv: list[str] | None = None) -> int:
    """The recipe for one Attend2u dataset (`kind` None: taken from ``--kind``)."""
    parser = build_parser(kind)
    args = parser.parse_args(argv)
    kind = kind or args.kind
    report: dict = {}
    splits = read_splits(kind, args, parser, report)
    run(kind, args, splits, report)
    return 0


def main(argv: list[str] | None = None) -> int:
    return main_for(None, argv)


if __name__ == "__main__":
    raise SystemExit(common.run_main(main))
