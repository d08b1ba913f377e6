"""`mmgpt2 demo`: start the Gradio app (caption, personalized, dense video and medical tabs)."""

from __future__ import annotations

import argparse

from mmgpt2.cli.args import device, int_range, positive_float


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="start the web demo (Gradio) on 127.0.0.1",
        description="A web page for every application, running the embedded tiny models by default. "
        'Binds 127.0.0.1 (this machine only) unless --host says otherwise. Needs `pip install "mmgpt2[demo]"`.',
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind; 0.0.0.0 exposes the demo to your network"
    )
    p.add_argument(
        "--port",
        type=int_range(0, 65535),
        default=7860,
        help="port (default 7860; 0: the first free one from 7860 up)",
    )
    p.add_argument(
        "--share",
        choices=["never", "link"],
        default="never",
        help="'link' asks Gradio for a temporary public URL through its servers (needs internet); default never",
    )
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="DIR",
        help="another saved model folder to offer in the tab of its type (repeatable), e.g. a COCO captioner",
    )
    p.add_argument(
        "--device", type=device, default=None, help="cpu, cuda, ... (default: where the models load)"
    )
    p.add_argument(
        "--max-upload-mb", type=positive_float, default=20.0, help="largest upload accepted (default 20 MB)"
    )
    p.add_argument(
        "--max-video-seconds",
        type=positive_float,
        default=180.0,
        help="longest video accepted (default 180 s)",
    )
    p.add_argument(
        "--request-seconds", type=positive_float, default=300.0, help="time cap per request (default 300 s)"
    )
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mmgpt2.demo.limits import DemoLimits
    from mmgpt2.demo.models import ModelRegistry, model_type

    for folder in args.model:
        if model_type(folder) is None:
            raise FileNotFoundError(
                f"--model {folder}: not an mmgpt2 model folder (no config.json with a 'type')"
            )
    limits = DemoLimits(
        max_upload_mb=args.max_upload_mb,
        max_video_seconds=args.max_video_seconds,
        request_seconds=args.request_seconds,
    )
    models = ModelRegistry(extra=[str(Path(f)) for f in args.model], device=args.device)
    from mmgpt2.demo.app import launch

    launch(host=args.host, port=args.port or None, share=args.share == "link", models=models, limits=limits)
    return 0
