"""The Dense video tab: a video -> its events as a timeline picture and a table (times, captions)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from mmgpt2.demo.examples import example_video
from mmgpt2.demo.limits import DemoLimits, check_video, display_name, run_with_time_cap, user_errors
from mmgpt2.demo.models import ModelRegistry

TASK = "video"
HEADERS = ["start (s)", "end (s)", "caption", "score"]


def dense_caption(
    models: ModelRegistry,
    limits: DemoLimits,
    video: str | None,
    model_name: str,
    events: float,
    steps: float | None = None,
) -> tuple[Any, list[list[Any]]]:
    """``(timeline PIL image, rows of HEADERS)`` for one video (size, duration and time capped).

    `steps` overrides the model's ZeroTA optimisation steps per video (fewer: faster, rougher).
    """
    import gradio as gr
    from PIL import Image

    from mmgpt2.apps.video.timeline import draw_timeline

    path = check_video(video, limits)
    notices: list[str] = []

    def work():
        model = models.get(model_name, task=TASK)
        settings = {"steps": int(steps)} if steps else {}
        feats = model.features(path)
        notices.extend(feats.warnings)  # read here, not as Python warnings: those are process-wide
        found = model.caption_features(feats, events=int(events), **settings)
        with tempfile.TemporaryDirectory(prefix="mmgpt2-demo-") as tmp:
            png = draw_timeline(path, found, Path(tmp) / "timeline.png")
            with Image.open(png) as im:
                picture = im.convert("RGB")  # loaded into memory before the folder goes
        return picture, found

    picture, found = run_with_time_cap(
        work, limits.request_seconds, models.lock(model_name), what="dense captioning"
    )
    for notice in notices:  # e.g. a truncated file: its events stop where the frames do
        gr.Warning(notice.replace(str(path), display_name(path)), duration=None, title="Part of this video")
    rows = [
        [round(e.start, 2), round(e.end, 2), e.sentence, round(float(e.score), 3)]
        for e in sorted(found, key=lambda e: e.start)
    ]
    return picture, rows


def _default_steps(models: ModelRegistry, model_name: str) -> int:
    """The saved ZeroTA steps of a model (read from its config.json, no weights loaded)."""
    from mmgpt2.checkpoint import read_config

    return int(read_config(models.folder(model_name)).get("zerota", {}).get("steps", 30))


def build(gr: Any, models: ModelRegistry, limits: DemoLimits) -> None:
    """Add the tab's components and events to the open `gr.Blocks`."""
    with gr.Tab("Dense video", id=TASK):
        choices = models.choices(TASK)
        if not choices:
            gr.Markdown(models.missing_message(TASK), elem_id="video-missing")
            return
        gr.Markdown(
            f"Upload a video (up to {limits.max_video_seconds:g} s and {limits.max_upload_mb:g} MB) or use the example, "
            "then press **Find events**. Zero-shot: the events are found and captioned by a frozen CLIP and GPT-2."
        )
        with gr.Row():
            with gr.Column():
                video = gr.Video(sources=["upload"], label="Video", elem_id="video-input", height=240)
                model = gr.Dropdown(choices, value=choices[0], label="Model", elem_id="video-model")
                events = gr.Slider(
                    1, 6, value=3, step=1, label="Events to find", elem_id="video-events-count"
                )
                default_steps = _default_steps(models, choices[0])
                steps = gr.Slider(
                    1,
                    max(60, default_steps),
                    value=default_steps,
                    step=1,
                    elem_id="video-steps",
                    label="Optimisation steps per video (fewer: faster, rougher events)",
                )
                button = gr.Button("Find events", variant="primary", elem_id="video-button")
                gr.Examples([[example_video()]], inputs=video, label="Example")
            with gr.Column():
                timeline = gr.Image(type="pil", label="Timeline", interactive=False, elem_id="video-timeline")
                table = gr.Dataframe(
                    headers=HEADERS, label="Events", interactive=False, elem_id="video-events"
                )

        def run(video_path, model_name, n_events, n_steps):
            with user_errors("caption this video"):
                return dense_caption(models, limits, video_path, model_name, n_events, n_steps)

        button.click(
            run,
            [video, model, events, steps],
            [timeline, table],
            api_name="dense_caption",
            concurrency_id=TASK,
            concurrency_limit=1,
        )
