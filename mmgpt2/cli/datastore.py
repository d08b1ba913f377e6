"""`mmgpt2 datastore build`: a caption datastore for retrieval-augmented captioning."""

from __future__ import annotations

import argparse


def cmd_datastore_build(args: argparse.Namespace) -> int:
    from mmgpt2.apps.captioning.datastore import CaptionDatastore
    from mmgpt2.encoders import load_encoder

    store = CaptionDatastore.from_jsonl(
        args.captions, load_encoder(args.encoder, args.device), first_only=args.first_only, index=args.index
    )
    store.save(args.out)
    print(f"{len(store)} distinct captions ({store.store.index_kind} index) saved to {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "datastore",
        help="caption datastores for retrieval-augmented captioning",
        description="Caption datastores: captions of other images, retrieved by image embedding "
        "(mmgpt2 caption IMG --model shapes-tiny-rag --datastore DIR).",
    )
    actions = p.add_subparsers(dest="action", required=True)
    b = actions.add_parser(
        "build",
        help="embed the captions of a caption file into a datastore folder",
        description="Embed every caption with the encoder's text tower into a FAISS index; images are never opened.",
    )
    b.add_argument(
        "captions", help='JSON lines ({"image", "caption"|"captions"}) or Karpathy dataset_coco.json'
    )
    b.add_argument(
        "--encoder", required=True, help="the retrieval captioner's encoder, e.g. embedded:shapes-clip"
    )
    b.add_argument("--out", required=True, help="datastore folder to write")
    b.add_argument("--first-only", action="store_true", help="only the first caption of each image")
    b.add_argument(
        "--index", choices=["auto", "flat", "ivf"], default="auto", help="auto: IVF from 200k captions"
    )
    b.add_argument("--device", default=None)
    b.set_defaults(func=cmd_datastore_build)
