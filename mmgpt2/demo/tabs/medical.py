"""The Medical tab: an X-ray and a diagnosis -> an explanation and the knowledge-graph triplets used."""

from __future__ import annotations

from typing import Any

from mmgpt2.apps.medical.mimic_nle import CLASSES
from mmgpt2.demo.examples import example_xrays
from mmgpt2.demo.limits import DemoLimits, check_image, run_with_time_cap, user_errors
from mmgpt2.demo.models import ModelRegistry

TASK = "medical"
HEADERS = ["head", "relation", "tail", "score"]
NO_DIAGNOSIS = "(none: what does this X-ray show?)"
#: The MIMIC-NLE labels, plus "No Finding" (the chest world's normal studies); users may type others.
DIAGNOSES = [*CLASSES, "No Finding"]
NOTICE = "Research demo on synthetic data: not a medical device, not for diagnosis."


def explain_xray(
    models: ModelRegistry,
    limits: DemoLimits,
    image: str | None,
    model_name: str,
    diagnosis: str | None,
    use_kg: bool,
) -> tuple[str, list[list[Any]]]:
    """``(explanation, rows of HEADERS)`` for one X-ray (time capped, model locked)."""
    path = check_image(image, limits)
    label = None if not diagnosis or diagnosis == NO_DIAGNOSIS else diagnosis.strip()

    def work():
        model = models.get(model_name, task=TASK)
        return model.explain([str(path)], diagnosis=label, use_kg=bool(use_kg))[0]

    out = run_with_time_cap(work, limits.request_seconds, models.lock(model_name), what="explanation")
    rows = [[t["head"], t["relation"], t["tail"], round(float(t["score"]), 3)] for t in out["triplets"]]
    return out["explanation"], rows


def build(gr: Any, models: ModelRegistry, limits: DemoLimits) -> None:
    """Add the tab's components and events to the open `gr.Blocks`."""
    from mmgpt2.demo.components import checked_image

    with gr.Tab("Medical", id=TASK):
        choices = models.choices(TASK)
        if not choices:
            gr.Markdown(models.missing_message(TASK), elem_id="medical-missing")
            return
        gr.Markdown(f"Upload a chest X-ray, choose the diagnosis to explain, press **Explain**. *{NOTICE}*")
        with gr.Row():
            with gr.Column():
                image = checked_image(
                    sources=["upload"], label="Chest X-ray", elem_id="medical-image", height=256
                )
                model = gr.Dropdown(choices, value=choices[0], label="Model", elem_id="medical-model")
                diagnosis = gr.Dropdown(
                    [NO_DIAGNOSIS, *DIAGNOSES],
                    value=NO_DIAGNOSIS,
                    allow_custom_value=True,
                    label="Diagnosis",
                    elem_id="medical-diagnosis",
                )
                use_kg = gr.Checkbox(value=True, label="Retrieve knowledge-graph triplets into the prompt")
                button = gr.Button("Explain", variant="primary", elem_id="medical-button")
            with gr.Column():
                explanation = gr.Textbox(
                    label="Explanation", interactive=False, elem_id="medical-explanation"
                )
                triplets = gr.Dataframe(
                    headers=HEADERS, label="Retrieved triplets", interactive=False, elem_id="medical-triplets"
                )
                gr.Examples(
                    [[p, d or NO_DIAGNOSIS] for p, d in example_xrays()],
                    inputs=[image, diagnosis],
                    label="Examples",
                )

        def run(image_path, model_name, label, kg):
            with user_errors("explain this X-ray"):
                return explain_xray(models, limits, image_path, model_name, label, kg)

        button.click(
            run,
            [image, model, diagnosis, use_kg],
            [explanation, triplets],
            api_name="explain",
            concurrency_id=TASK,
            concurrency_limit=1,
        )
