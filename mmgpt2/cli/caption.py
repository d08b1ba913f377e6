"""`mmgpt2 caption | extract-features | train-captioner | list-models`."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from mmgpt2.cli.args import device, float_range, int_range, positive_float, positive_int
from mmgpt2.errors import Mmgpt2Error

DEFAULT_MODEL = "shapes-tiny"


def add_generation_args(p: argparse.ArgumentParser) -> None:
    """Decoding flags with transformers' names (`--num-beams` is `num_beams`, ...)."""
    g = p.add_argument_group("decoding (as in transformers.generate)")
    g.add_argument(
        "--max-new-tokens",
        type=int_range(1, 1024),
        help="longest caption in tokens (default: the model's, else 20)",
    )
    g.add_argument("--num-beams", type=int_range(1, 1024), help="beam search width (1 = greedy)")
    g.add_argument("--length-penalty", type=float_range(), help="beam score = logprob / length**penalty")
    g.add_argument(
        "--do-sample", action="store_true", default=None, help="nucleus sampling instead of search"
    )
    g.add_argument(
        "--top-p", type=float_range(0.0, 1.0, low_inclusive=False), help="nucleus mass kept when sampling"
    )
    g.add_argument("--top-k", type=positive_int, help="candidates kept (sampling, contrastive search)")
    g.add_argument("--temperature", type=positive_float, help="softmax temperature when sampling")
    g.add_argument(
        "--penalty-alpha",
        type=float_range(0.0, 1.0),
        help="contrastive search degeneration penalty (with --top-k)",
    )
    g.add_argument("--seed", type=int_range(0, 2**63 - 1), help="random seed for sampling")


def generation_kwargs(args: argparse.Namespace) -> dict:
    keys = [
        "max_new_tokens",
        "num_beams",
        "length_penalty",
        "do_sample",
        "top_p",
        "top_k",
        "temperature",
        "penalty_alpha",
        "seed",
    ]
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


#: What each non-captioning model type is for, so `caption --model` can point at the right command.
OTHER_COMMANDS = {"medical_explainer": "mmgpt2 explain", "dense_video_captioner": "mmgpt2 dense-caption"}


def load_captioner(name: str, device: str | None = None):
    """Load `name` for `mmgpt2 caption`, refusing (before loading weights) a model of another kind."""
    from mmgpt2.checkpoint import read_config
    from mmgpt2.paths import resolve_model_dir
    from mmgpt2.pipeline import load_pipeline

    folder = resolve_model_dir(name)
    kind = read_config(folder).get("type")
    if kind in OTHER_COMMANDS:
        raise Mmgpt2Error(
            f"--model {name}: is a {kind!r} model, which does not caption images; use `{OTHER_COMMANDS[kind]}`, "
            "or a captioner such as shapes-tiny"
        )
    model = load_pipeline(folder, device=device)
    if not callable(getattr(model, "caption", None)):
        raise Mmgpt2Error(f"--model {name}: a {kind!r} model does not caption images; use a captioner")
    return model


def cmd_caption(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from mmgpt2.cli.output import JsonListWriter
    from mmgpt2.images import image_batches

    model = load_caption_model(args)
    extra = {"projection": args.projection} if args.projection else {}
    if args.user is not None or args.user_history is not None:
        if not hasattr(model, "users"):
            raise Mmgpt2Error(
                f"model {args.model!r} is not personalized; --user/--user-history need e.g. shapes-users-tiny"
            )
        extra["user"] = (
            args.user if args.user is not None else model.user_from_history_file(args.user_history)
        )
    gen = generation_kwargs(args)
    bar = tqdm(
        total=len(args.images),
        desc="captioning",
        disable=len(args.images) <= args.batch_size,
        file=sys.stderr,
    )
    skipped = 0

    def skip(reason: str) -> None:
        nonlocal skipped
        skipped += 1
        bar.update(1)
        tqdm.write(f"skipped {reason}", file=sys.stderr)

    # Decode a batch, caption it, print it, drop it: memory is bounded by --batch-size.
    with bar, JsonListWriter() if args.json else contextlib.nullcontext() as out:
        for chunk in image_batches(args.images, args.batch_size, skip):
            captions = model.caption([im for _, im in chunk], batch_size=len(chunk), **gen, **extra)
            for (path, _), caption in zip(chunk, captions):
                if out is not None:
                    out.write({"image": path, "caption": caption})
                else:
                    print(f"{path}\t{caption}", flush=True)
            bar.update(len(chunk))
    return 1 if skipped else 0


def load_caption_model(args: argparse.Namespace):
    """`--model`, or with `--zero-shot` only its frozen encoder and LM; `--datastore` swaps a
    retrieval captioner's datastore; `--projection` needs a text-only model."""
    if args.zero_shot:
        from mmgpt2.apps.captioning.zero_shot import ZeroShotCaptioner

        model = ZeroShotCaptioner.from_parts_of(args.model)
        model = model.to(args.device) if args.device else model
    else:
        model = load_captioner(args.model, device=args.device)
    if args.datastore:
        if not hasattr(model, "use_datastore"):
            raise Mmgpt2Error(
                f"model {args.model!r} does not retrieve captions; --datastore needs a retrieval captioner such as shapes-tiny-rag"
            )
        model.use_datastore(args.datastore)
    if args.projection and not hasattr(model, "project"):
        raise Mmgpt2Error(
            f"model {args.model!r} is not text-only; --projection needs e.g. shapes-tiny-textonly"
        )
    return model


def cmd_train_text_only(args: argparse.Namespace) -> int:
    """CapDec: the mapper learns from the captions' text embeddings (plus noise); no image is opened."""
    from accelerate.utils import set_seed

    from mmgpt2.apps.captioning.text_only import CaptionTextDataset, TextOnlyCaptioner
    from mmgpt2.data import read_captions
    from mmgpt2.training import train

    config = _train_config(args)  # first: a bad flag fails before any caption is read
    captions = [c for r in read_captions(args.train, args.image_root, "train") for c in r.captions]
    set_seed(config.seed)  # before the mapper is built: one seed, one model
    model = TextOnlyCaptioner.build(
        args.encoder,
        args.lm,
        mapper="mlp",
        generation={"max_new_tokens": args.max_new_tokens},
        noise_variance=args.noise_variance,
        prefix_length=args.prefix_length,
        **({"hidden_dim": args.hidden_dim} if args.hidden_dim else {}),
    )
    final = train(model, CaptionTextDataset(captions, model.encoder), config)
    model = TextOnlyCaptioner.from_pretrained(final, encoder=model.encoder, lm=model.lm)
    model.set_memory(captions, seed=args.seed)  # DeCap's projection memory (--projection decap)
    model.save_pretrained(final)
    print(f"model saved to {final}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from mmgpt2.data import extract_features, read_captions
    from mmgpt2.encoders import load_encoder

    records = read_captions(args.captions, args.image_root, args.split)
    store = extract_features(
        [r.image for r in records],
        load_encoder(args.encoder, args.device),
        args.out,
        tokens=args.tokens,
        batch_size=args.batch_size,
    )
    print(f"{len(store)} images encoded into {args.out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from accelerate.utils import set_seed

    from mmgpt2.apps.captioning.model import PrefixCaptioner
    from mmgpt2.data import FeatureCaptionDataset, FeatureStore, extract_features, read_captions
    from mmgpt2.encoders import load_encoder
    from mmgpt2.training import train

    _check_retrieval_flags(args)
    if args.text_only:
        return cmd_train_text_only(args)
    config = _train_config(args)  # first: a bad flag fails before any image is encoded
    records = read_captions(args.train, args.image_root, "train")
    encoder = load_encoder(args.encoder)
    datastore = _train_datastore(args.datastore, encoder.spec) if args.datastore else None
    features = Path(args.features or Path(args.out) / "features")
    if (features / "index.json").is_file() and not args.features_only_cached:
        store = extract_features([r.image for r in records], encoder, features)  # adds only missing images
    elif (features / "index.json").is_file():
        store = FeatureStore(features)
        for image in dict.fromkeys(r.image for r in records if r.image not in store):
            print(
                f"skipped {image}: not in the feature cache {features} (--features-only-cached)",
                file=sys.stderr,
            )
    else:
        store = extract_features([r.image for r in records], encoder, features)
    if store.encoder_spec != encoder.spec:
        raise Mmgpt2Error(
            f"{features}: features come from {store.encoder_spec!r}, not --encoder {encoder.spec!r}"
        )
    mapper_kwargs = {"prefix_length": args.prefix_length}
    if args.mapper == "transformer":
        mapper_kwargs.update(
            num_layers=args.num_layers, clip_length=args.clip_length, num_heads=args.num_heads
        )
    elif args.hidden_dim:
        mapper_kwargs["hidden_dim"] = args.hidden_dim
    build = {"mapper": args.mapper, "generation": {"max_new_tokens": args.max_new_tokens}, **mapper_kwargs}
    set_seed(config.seed)  # before the mapper draws its initial weights: one --seed, one result
    if datastore is None:
        model, dataset = (
            PrefixCaptioner.build(encoder, args.lm, **build),
            FeatureCaptionDataset(records, store),
        )
    else:
        model, dataset = _retrieval_training(args, encoder, datastore, records, store, build)
    final = train(model, dataset, config)
    print(f"model saved to {final}")
    return 0


def _check_retrieval_flags(args: argparse.Namespace) -> None:
    """`--k` / `--prompt-tokens` need `--datastore`, which `--text-only` cannot use."""
    if args.datastore and args.text_only:
        raise Mmgpt2Error(
            f"--datastore {args.datastore} with --text-only: text-only training (CapDec) retrieves nothing; "
            "drop --text-only to train a retrieval captioner, or --datastore"
        )
    for flag, value in (("--k", args.k), ("--prompt-tokens", args.prompt_tokens)):
        if value is not None and not args.datastore:
            raise Mmgpt2Error(f"{flag} {value}: only retrieval captioners use it; add --datastore DIR")


def _train_datastore(folder: str, encoder_spec: str):
    """The `--datastore` folder, refused (naming the flag) if unreadable or embedded by another encoder."""
    from mmgpt2.apps.captioning.datastore import CaptionDatastore, DatastoreError

    try:
        datastore = CaptionDatastore.load(folder)
    except DatastoreError as err:  # "DIR: not a caption datastore folder, ..." -> "--datastore DIR: ..."
        raise DatastoreError(f"--datastore {err}") from None
    if datastore.encoder_spec and datastore.encoder_spec != encoder_spec:
        raise DatastoreError(
            f"--datastore {folder}: embedded with {datastore.encoder_spec!r}, not --encoder {encoder_spec!r}; "
            f"rebuild it with `mmgpt2 datastore build CAPTIONS --encoder {encoder_spec} --out DIR`, "
            f"or train with --encoder {datastore.encoder_spec}"
        )
    return datastore


def _retrieval_training(args: argparse.Namespace, encoder, datastore, records, store, build: dict):
    """A `RetrievalCaptioner` that keeps `datastore`, and its training set (`RetrievalCaptionDataset`:
    the top-k captions of *other* images, each image's own captions excluded, as SmallCap trains)."""
    from mmgpt2.apps.captioning.datastore import record_source_id
    from mmgpt2.apps.captioning.retrieval import RetrievalCaptionDataset, RetrievalCaptioner

    given = {"k": args.k, "prompt_tokens": args.prompt_tokens}
    model = RetrievalCaptioner.build(
        encoder, args.lm, datastore=datastore, **{k: v for k, v in given.items() if v is not None}, **build
    )
    # Sources are named as `mmgpt2 datastore build` names them: by id, else by the image path
    # relative to the caption file's folder.
    root = Path(args.train).parent.resolve()
    dataset = RetrievalCaptionDataset(records, store, datastore, k=model.k, root=root)
    sources = {s for ids in datastore.store.source_ids for s in ids}
    own = sum(record_source_id(r, root) in sources for r in records)
    print(
        f"retrieving {model.k} of {len(datastore)} captions per image from {args.datastore}; "
        f"{own} of {len(records)} training images have captions there, never retrieved for themselves"
    )
    return model, dataset


def _train_config(args: argparse.Namespace):
    """`TrainConfig` from the train-captioner flags; a bad value names its flag and the rule."""
    import re

    from mmgpt2.errors import ConfigError
    from mmgpt2.training import TrainConfig

    values = {
        "out_dir": args.out,
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup_steps": args.warmup_steps,
        "save_every": args.save_every,
        "mixed_precision": args.mixed_precision,
        "seed": args.seed,
        "resume": args.resume,
    }
    try:
        return TrainConfig(**values)
    except ConfigError as err:  # "TrainConfig.save_every=0: must be >= 1" -> "--save-every 0: ..."
        flag = {"out_dir": "out"}
        raise Mmgpt2Error(
            re.sub(
                r"^TrainConfig\.(\w+)=(\S+):",
                lambda m: f"--{flag.get(m[1], m[1]).replace('_', '-')} {m[2]}:",
                str(err),
            )
        ) from None


def cmd_list(args: argparse.Namespace) -> int:
    from mmgpt2.checkpoint import read_config
    from mmgpt2.paths import list_embedded_models, models_dir

    rows = []
    for name in list_embedded_models():
        try:
            cfg = read_config(models_dir() / name)
            kind = cfg.get("type", "?")
            parts = ", ".join(f"{k}={cfg[k]}" for k in ("encoder", "lm") if k in cfg)
            if "model_type" in cfg:  # a Hugging Face LM folder
                kind, parts = f"frozen LM ({cfg['model_type']})", f"embedded:{name}"
        except (FileNotFoundError, ValueError):
            kind, parts = "frozen encoder (open_clip)", f"embedded:{name}"
        rows.append((name, kind, parts))
    if args.json:
        print(json.dumps([{"name": n, "type": t, "parts": p} for n, t, p in rows], indent=2))
        return 0
    print("Embedded models (offline, under assets/models):")
    for n, t, p in rows:
        print(f"  {n:24s} {t:22s} {p}")
    print(
        "\nReal pretrained parts (downloaded on first use): encoders like open_clip:ViT-B-32/openai, "
        "open_clip:ViT-L-14/openai,\n  open_clip:hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224; "
        "LMs like gpt2, gpt2-medium (see `open_clip.list_pretrained()`)."
    )
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "caption",
        help="caption images",
        description="Caption images with a prefix captioner "
        "(default: the embedded shapes-tiny, offline). Unreadable images are reported and skipped.",
    )
    p.add_argument("images", nargs="+", metavar="IMG", help="image files")
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"embedded name, model folder or Hub id (default {DEFAULT_MODEL})",
    )
    p.add_argument("--json", action="store_true", help='print a JSON list of {"image", "caption"}')
    p.add_argument("--user", help="personalized models: caption in this known user's style")
    p.add_argument(
        "--user-history", metavar="FILE", help="personalized models: a new user's past captions, one per line"
    )
    p.add_argument(
        "--batch-size",
        type=int_range(1, 4096),
        default=32,
        help="images decoded and captioned together (memory grows with it, not with the inputs)",
    )
    p.add_argument("--device", type=device, default=None, help="cpu, cuda, cuda:1 ... (default cpu)")
    p.add_argument("--datastore", metavar="DIR", help="retrieval captioners: retrieve from this datastore")
    p.add_argument(
        "--zero-shot",
        action="store_true",
        help="no trained part: the model's frozen LM writes, its CLIP chooses",
    )
    p.add_argument("--projection", choices=["none", "decap"], help="text-only models: DeCap's projection")
    add_generation_args(p)
    p.set_defaults(func=cmd_caption)

    p = sub.add_parser(
        "extract-features",
        help="encode each image once into a feature cache",
        description="Encode every distinct image of a caption file once into sharded safetensors.",
    )
    p.add_argument("captions", help="JSON lines ({image, caption}) or Karpathy dataset_coco.json")
    p.add_argument(
        "--encoder",
        required=True,
        help="encoder spec, e.g. open_clip:ViT-B-32/openai or embedded:shapes-clip",
    )
    p.add_argument("--out", required=True, help="cache folder (resumable)")
    p.add_argument("--image-root", help="image folder for Karpathy files")
    p.add_argument("--split", default="train", help="Karpathy split (train = train + restval)")
    p.add_argument("--tokens", action="store_true", help="also store patch tokens (large)")
    p.add_argument("--batch-size", type=int_range(1, 4096), default=64)
    p.add_argument("--device", type=device, default=None)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser(
        "train-captioner",
        help="train a prefix mapper (ClipCap) on a frozen encoder and GPT-2",
        description="Train a ClipCap mapper (--datastore: retrieval-augmented, --text-only: CapDec); "
        "works under `accelerate launch` on many GPUs. "
        "Checkpoints every --save-every steps; --resume continues a crashed run.",
    )
    p.add_argument("--train", required=True, help="JSON lines or Karpathy dataset_coco.json")
    p.add_argument("--image-root", help="image folder for Karpathy files")
    p.add_argument("--features", help="feature cache folder (default OUT/features; built if missing)")
    p.add_argument(
        "--features-only-cached",
        action="store_true",
        help="use the cache as is, without checking for new images",
    )
    p.add_argument("--encoder", default="embedded:shapes-clip")
    p.add_argument("--lm", default="embedded:shapes-gpt2")
    p.add_argument("--mapper", choices=["mlp", "transformer"], default="transformer")
    p.add_argument("--prefix-length", type=int, default=10)
    p.add_argument("--clip-length", type=int, default=10)
    p.add_argument("--num-layers", type=int, default=8)
    p.add_argument("--num-heads", type=int, default=8)
    p.add_argument("--hidden-dim", type=int, help="MLP hidden width (default K*d/2 as ClipCap)")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--max-steps", type=int, help="stop after this many steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=40)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--warmup-steps", type=int, default=5000)
    p.add_argument("--save-every", type=int, default=1000)
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default="no")
    p.add_argument("--max-new-tokens", type=int_range(1, 1024), default=30, help="saved generation default")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint with the same seed, batch size and data (ends bit-identical)",
    )
    p.add_argument(
        "--text-only",
        action="store_true",
        help="CapDec: train on the captions' text embeddings, no images (MLP)",
    )
    p.add_argument(
        "--noise-variance",
        type=float_range(0.0, 1.0),
        default=0.016,
        help="--text-only: Gaussian noise variance",
    )
    g = p.add_argument_group("retrieval-augmented (SmallCap-style)")
    g.add_argument(
        "--datastore",
        metavar="DIR",
        help="a `mmgpt2 datastore build` folder (same --encoder): each image's top --k captions of *other* "
        "images go into the prompt, and the saved model keeps the datastore. Own captions are found by "
        "image id, else by image path relative to the caption file's folder: build it from a file there",
    )
    g.add_argument(
        "--k",
        type=int_range(0, 1024),
        help="captions retrieved per image (default 4, SmallCap's; the embedded tiny GPT-2 works best "
        "with --k 1, as the shipped shapes-tiny-rag: benchmarks/beyond_clipcap.py)",
    )
    g.add_argument(
        "--prompt-tokens",
        type=int_range(0, 1024),
        help="token budget of the retrieved captions in the prompt, best first (default 40)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("list-models", help="embedded models and how to name real ones")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
