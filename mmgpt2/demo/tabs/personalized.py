"""The Personalized tab: an image and a user (picked from the model's users, or pasted past captions)."""

from __future__ import annotations

from typing import Any

from mmgpt2.demo.examples import example_histories, example_images
from mmgpt2.demo.limits import DemoInputError, DemoLimits, user_errors
from mmgpt2.demo.models import ModelRegistry
from mmgpt2.demo.tabs.caption import caption_image, decoding_controls, generation_kwargs

TASK = "personalized"
NO_USER = "(no user: plain caption)"


def known_users(models: ModelRegistry, model_name: str) -> list[str]:
    """User ids stored with a personalized model, read from its ``users.json`` (no weights loaded)."""
    from mmgpt2.apps.personalized import UserStore
    from mmgpt2.apps.personalized.model import USERS_NAME

    path = models.folder(model_name) / USERS_NAME
    return UserStore.load(path).ids() if path.is_file() else []


def resolve_user(picked: str | None, history: str | None, limits: DemoLimits) -> str | list[str] | None:
    """What to pass as ``user=``: pasted past captions win over the picked id; neither -> None.

    Example:
        >>> resolve_user("ada", "", DemoLimits())
        'ada'
        >>> resolve_user("ada", "so cute!!\\nred heart #love", DemoLimits())
        ['so cute!!', 'red heart #love']
    """
    history = history or ""
    if len(history) > limits.max_history_chars:
        raise DemoInputError(
            f"the pasted history is {len(history)} characters; this demo takes up to {limits.max_history_chars}"
        )
    lines = [line.strip() for line in history.splitlines() if line.strip()]
    if lines:
        # One pasted line of several words is a history too; a single word per line is context words.
        return lines
    if picked and picked != NO_USER:
        return picked
    return None


def build(gr: Any, models: ModelRegistry, limits: DemoLimits) -> None:
    """Add the tab's components and events to the open `gr.Blocks`."""
    from mmgpt2.demo.components import checked_image

    with gr.Tab("Personalized", id=TASK):
        choices = models.choices(TASK)
        if not choices:
            gr.Markdown(models.missing_message(TASK), elem_id="personalized-missing")
            return
        gr.Markdown(
            "Caption an image in the style of a user: pick one the model knows, or paste a new user's past captions."
        )
        with gr.Row():
            with gr.Column():
                image = checked_image(
                    sources=["upload", "clipboard"], label="Image", elem_id="personalized-image", height=256
                )
                model = gr.Dropdown(choices, value=choices[0], label="Model", elem_id="personalized-model")
                users = [NO_USER, *known_users(models, choices[0])]
                user = gr.Dropdown(
                    users,
                    value=users[1] if len(users) > 1 else NO_USER,
                    label="User",
                    elem_id="personalized-user",
                )
                history = gr.Textbox(
                    lines=4,
                    label="...or a new user's past captions (one per line; used instead of the user above)",
                    elem_id="personalized-history",
                )
                controls = decoding_controls(gr)
                button = gr.Button("Caption as this user", variant="primary", elem_id="personalized-button")
            with gr.Column():
                output = gr.Textbox(
                    label="Personalized caption", interactive=False, elem_id="personalized-output"
                )
                gr.Examples(example_images(), inputs=image, label="Examples")
                histories = example_histories()
                if histories:
                    gr.Examples(
                        [[text] for _, text in histories],
                        inputs=history,
                        example_labels=[f"{name}'s past captions" for name, _ in histories],
                        label="Example histories of new users",
                    )

        def refresh_users(model_name):
            with user_errors("list this model's users"):
                names = [NO_USER, *known_users(models, model_name)]
            return gr.Dropdown(choices=names, value=names[1] if len(names) > 1 else NO_USER)

        def run(image_path, model_name, picked, pasted, method, beams, max_tokens, top_p, temperature, seed):
            with user_errors("caption this image"):
                kwargs = generation_kwargs(method, beams, max_tokens, top_p, temperature, seed)
                who = resolve_user(picked, pasted, limits)
                return caption_image(models, limits, image_path, model_name, kwargs, task=TASK, user=who)

        model.change(refresh_users, model, user, queue=False)
        button.click(
            run,
            [image, model, user, history, *controls],
            output,
            api_name="personalized_caption",
            concurrency_id=TASK,
            concurrency_limit=1,
        )
