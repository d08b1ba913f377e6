"""The Caption tab: an image (upload or example), a model, decoding options -> a caption."""

from __future__ import annotations

from typing import Any

from mmgpt2.demo.examples import example_images
from mmgpt2.demo.limits import DemoLimits, check_image, run_with_time_cap, user_errors
from mmgpt2.demo.models import ModelRegistry
from mmgpt2.errors import Mmgpt2Error

TASK = "caption"
#: Decoding methods offered in the page -> how they map to `generate` keyword arguments.
METHODS = ["beam search", "greedy", "sampling", "contrastive search"]
#: What the page starts with (beam search usually reads better than greedy on these tiny models).
DEFAULT_BEAMS = 3
DEFAULT_MAX_NEW_TOKENS = 24


def generation_kwargs(
    method: str, num_beams: float, max_new_tokens: float, top_p: float, temperature: float, seed: float | None
) -> dict[str, Any]:
    """`generate` keyword arguments (transformers' names) from the page's decoding controls.

    Example:
        >>> generation_kwargs("beam search", 3, 20, 0.9, 1.0, None)
        {'max_new_tokens': 20, 'num_beams': 3}
    """
    if method not in METHODS:
        raise Mmgpt2Error(f"decoding method {method!r}: choose one of {', '.join(METHODS)}")
    kwargs: dict[str, Any] = {"max_new_tokens": int(max_new_tokens)}
    if method == "beam search":
        kwargs["num_beams"] = max(1, int(num_beams))
    elif method == "sampling":
        kwargs.update(do_sample=True, top_p=float(top_p), temperature=float(temperature))
        if seed is not None and str(seed) != "":
            kwargs["seed"] = int(seed)
    elif method == "contrastive search":
        kwargs.update(penalty_alpha=0.6, top_k=4)
    return kwargs


def caption_image(
    models: ModelRegistry,
    limits: DemoLimits,
    image: str | None,
    model_name: str,
    gen_kwargs: dict[str, Any],
    task: str = TASK,
    **extra: Any,
) -> str:
    """One caption for the image file `image` with model `model_name` (time-capped, model locked).

    `extra` goes to ``model.caption`` (the personalized tab passes ``user=``).
    """
    path = check_image(image, limits)

    def work() -> str:
        model = models.get(model_name, task=task)
        return model.caption([str(path)], **extra, **gen_kwargs)[0]

    return run_with_time_cap(work, limits.request_seconds, models.lock(model_name), what="caption")


def decoding_controls(gr: Any) -> list[Any]:
    """The decoding widgets (method, beams, length, top-p, temperature, seed), shared with the personalized tab."""
    with gr.Accordion("Decoding options", open=False):
        method = gr.Radio(METHODS, value="beam search", label="Method")
        with gr.Row():
            beams = gr.Slider(1, 8, value=DEFAULT_BEAMS, step=1, label="Beams (beam search)")
            max_tokens = gr.Slider(4, 48, value=DEFAULT_MAX_NEW_TOKENS, step=1, label="Max new tokens")
        with gr.Row():
            top_p = gr.Slider(0.1, 1.0, value=0.9, step=0.05, label="Top-p (sampling)")
            temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.1, label="Temperature (sampling)")
            seed = gr.Number(value=None, precision=0, label="Seed (sampling, optional)")
    return [method, beams, max_tokens, top_p, temperature, seed]


def build(gr: Any, models: ModelRegistry, limits: DemoLimits) -> None:
    """Add the tab's components and events to the open `gr.Blocks`."""
    from mmgpt2.demo.components import checked_image

    with gr.Tab("Caption", id=TASK):
        choices = models.choices(TASK)
        if not choices:
            gr.Markdown(models.missing_message(TASK), elem_id="caption-missing")
            return
        gr.Markdown("Upload an image (or click an example), then press **Caption**.")
        with gr.Row():
            with gr.Column():
                image = checked_image(
                    sources=["upload", "clipboard"], label="Image", elem_id="caption-image", height=256
                )
                model = gr.Dropdown(choices, value=choices[0], label="Model", elem_id="caption-model")
                controls = decoding_controls(gr)
                button = gr.Button("Caption", variant="primary", elem_id="caption-button")
            with gr.Column():
                output = gr.Textbox(label="Caption", interactive=False, elem_id="caption-output")
                gr.Examples(example_images(), inputs=image, label="Examples", elem_id="caption-examples")

        def run(image_path, model_name, method, beams, max_tokens, top_p, temperature, seed):
            with user_errors("caption this image"):
                kwargs = generation_kwargs(method, beams, max_tokens, top_p, temperature, seed)
                return caption_image(models, limits, image_path, model_name, kwargs)

        button.click(
            run,
            [image, model, *controls],
            output,
            api_name="caption",
            concurrency_id=TASK,
            concurrency_limit=1,
        )
