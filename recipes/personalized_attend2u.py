"""Train and evaluate a `PersonalizedCaptioner` on Attend2u-style splits (shared by the two recipes).

Leakage rules: the IDF and the stored contexts come from the training split only; each training
caption's context comes from its author's OTHER training posts; test2 posts (unseen posts of
known users) use the stored context, which never saw them; test1 users (unseen) get a
leave-one-out context from their other test1 posts, i.e. their history only.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from mmgpt2.apps.personalized.dataset import UserPost, leave_one_out_contexts
from mmgpt2.apps.personalized.store import UserStore


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, help="folder of the post images")
    parser.add_argument(
        "--image-pattern", default="{post}.jpg", help="image file name from {user} and {post}"
    )
    parser.add_argument(
        "--encoder", default="open_clip:ViT-B-32/openai", help="frozen encoder spec (real weights)"
    )
    parser.add_argument("--lm", default="gpt2", help="frozen LM spec (e.g. gpt2, hf:gpt2-medium)")
    parser.add_argument(
        "--out", required=True, help="run folder (features, checkpoints, final model, scores)"
    )
    parser.add_argument("--top-n", type=int, default=100, help="context words per user (Attend2u: 100)")
    parser.add_argument("--prefix-length", type=int, default=10)
    parser.add_argument("--hidden-dim", type=int, default=768)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--lr", type=float, default=2e-4)  # the mapper alone trains, so above ClipCap's 2e-5
    parser.add_argument("--warmup-steps", type=int, default=2000)
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    parser.add_argument(
        "--max-eval", type=int, default=5000, help="test posts per split to caption and score"
    )
    parser.add_argument("--device", default=None)


def run(splits: dict[str, list[UserPost]], args: argparse.Namespace) -> dict:
    """Extract features, fit the user store, train, caption test1/test2 and score them."""
    import torch

    from mmgpt2.apps.personalized.dataset import PersonalizedFeatureDataset
    from mmgpt2.apps.personalized.model import PersonalizedCaptioner
    from mmgpt2.data import extract_features
    from mmgpt2.encoders import load_encoder
    from mmgpt2.eval.captions import score_captions
    from mmgpt2.lm import load_lm
    from mmgpt2.training import TrainConfig, train

    out = Path(args.out)
    train_posts = splits["train"]
    by_user: dict[str, list[str]] = {}
    for p in train_posts:
        by_user.setdefault(p.user, []).append(p.caption)
    store = UserStore.build(by_user, top_n=args.top_n)
    encoder = load_encoder(args.encoder, device=args.device)
    lm = load_lm(args.lm, device=args.device)
    all_images = [p.image for posts in splits.values() for p in posts]
    features = extract_features(all_images, encoder, out / "features", tokens=True)

    dataset = PersonalizedFeatureDataset(
        train_posts, leave_one_out_contexts(train_posts, store.model), features
    )
    model = PersonalizedCaptioner.build(
        encoder,
        lm,
        store,
        prefix_length=args.prefix_length,
        hidden_dim=args.hidden_dim,
        num_layers=args.layers,
        num_heads=max(1, args.hidden_dim // 64),
    )
    final = train(
        model,
        dataset,
        TrainConfig(
            out_dir=str(out),
            epochs=args.epochs,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_steps=args.warmup_steps,
            resume=args.resume,
        ),
    )
    model.eval()
    scores = {}
    for split in ("test1", "test2"):
        posts = [p for p in splits.get(split, []) if p.image in features and p.caption][: args.max_eval]
        if not posts:
            continue
        if split == "test2":
            contexts = [store.users.get(p.user, []) for p in posts]
        else:
            contexts = leave_one_out_contexts(posts, store.model)  # unseen users: their other posts only
        preds: dict[str, str] = {}
        for i in range(0, len(posts), 64):
            chunk = posts[i : i + 64]
            pooled = torch.stack([features.pooled(p.image) for p in chunk]).float()
            tokens = torch.stack([features.tokens(p.image) for p in chunk]).float()
            for p, c in zip(
                chunk, model.caption_features(pooled, tokens, contexts[i : i + 64], num_beams=3), strict=True
            ):
                preds[p.id] = c
        scores[split] = score_captions(preds, {p.id: [p.caption] for p in posts})
        (out / f"predictions-{split}.json").write_text(json.dumps(preds, ensure_ascii=False, indent=1))
    (out / "scores.json").write_text(json.dumps(scores, indent=2))
    print(json.dumps({"model": str(final), "scores": scores}, indent=2))
    return scores


def main_for(kind: str, argv: list[str] | None = None) -> int:
    from mmgpt2.apps.personalized.attend2u import load_attend2u_splits, read_instagram, read_yfcc, split_posts

    parser = argparse.ArgumentParser(description=f"UAPT personalized captioning on Attend2u {kind}")
    parser.add_argument("--train", help="training split JSON (with --test1/--test2), as shipped by Attend2u")
    parser.add_argument("--test1", help="unseen-users split JSON")
    parser.add_argument("--test2", help="unseen-posts split JSON")
    parser.add_argument("--all", help="one JSON of every post: splits are cut here (10%% users, 10%% posts)")
    if kind == "instagram":
        parser.add_argument("--with-tags", action="store_true", help="append hashtags to captions")
    else:
        parser.add_argument("--field", default="title", choices=("title", "description"))
    add_arguments(parser)
    args = parser.parse_args(argv)
    extra = {"with_tags": args.with_tags} if kind == "instagram" else {"field": args.field}
    common = {"image_dir": args.images, "image_pattern": args.image_pattern, **extra}
    if not os.path.isdir(args.images):
        parser.error(f"--images {args.images}: no such folder")
    if args.all:
        reader = read_instagram if kind == "instagram" else read_yfcc
        splits = split_posts(reader(args.all, **common))
    elif args.train:
        files = {k: v for k, v in (("train", args.train), ("test1", args.test1), ("test2", args.test2)) if v}
        splits = load_attend2u_splits(files, kind=kind, **common)
    else:
        parser.error("give --train (and --test1/--test2) or --all")
    run(splits, args)
    return 0
