"""The Gradio app: one tab per application, a queue per tab, limits for a public demo.

Example:
    >>> from mmgpt2.demo import launch
    >>> demo, url = launch(port=7860, block=False)  # doctest: +SKIP
    >>> demo.close()  # doctest: +SKIP
"""

from __future__ import annotations

import os

# Before gradio is imported: no usage statistics leave the machine.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from typing import Any  # noqa: E402

from mmgpt2.demo.examples import cache_dir, examples_dir  # noqa: E402
from mmgpt2.demo.limits import DemoLimits  # noqa: E402
from mmgpt2.demo.models import ModelRegistry  # noqa: E402
from mmgpt2.demo.tabs import caption as caption_tab  # noqa: E402
from mmgpt2.demo.tabs import medical as medical_tab  # noqa: E402
from mmgpt2.demo.tabs import personalized as personalized_tab  # noqa: E402
from mmgpt2.demo.tabs import video as video_tab  # noqa: E402

TABS = (caption_tab, personalized_tab, video_tab, medical_tab)
TITLE = "mmgpt2: a frozen GPT-2 with eyes"
#: Requests waiting per event beyond this are refused ("queue full") instead of piling up.
MAX_QUEUE = 64


def build_demo(models: ModelRegistry | None = None, limits: DemoLimits | None = None) -> Any:
    """The `gr.Blocks` app (not started). A tab whose model is missing says so instead of failing."""
    import gradio as gr

    models = models or ModelRegistry()
    limits = limits or DemoLimits()
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {TITLE}\nA frozen image encoder and a frozen GPT-2, joined by a small trained mapper. "
            "The embedded models are tiny and trained on synthetic worlds (coloured shapes, synthetic users, "
            "shape videos, synthetic chest X-rays): use inputs like the examples."
        )
        for tab in TABS:
            tab.build(gr, models, limits)
    # One run at a time per event (each tab's button): the models are not run twice at once, and
    # waiting users see their place in the queue.
    demo.queue(default_concurrency_limit=1, max_size=MAX_QUEUE)
    return demo


def launch(
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    models: ModelRegistry | None = None,
    limits: DemoLimits | None = None,
    block: bool = True,
    quiet: bool = False,
) -> tuple[Any, str]:
    """Build and start the demo; returns ``(demo, local_url)``. `block=False` returns at once (tests).

    Binds 127.0.0.1 unless `host` says otherwise; uploads over ``limits.max_upload_mb`` are refused
    by Gradio before they reach a handler.
    """
    limits = limits or DemoLimits()
    demo = build_demo(models, limits)
    # Example files may live outside the working directory; Gradio serves only allowed folders.
    allowed = [str(p) for p in (examples_dir(), cache_dir()) if p.exists()]
    _, local_url, _ = demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=not block,
        max_file_size=limits.max_upload_bytes,
        allowed_paths=allowed,
        footer_links=["api"],
        show_error=False,
        quiet=quiet,
        ssr_mode=False,
    )
    return demo, local_url
