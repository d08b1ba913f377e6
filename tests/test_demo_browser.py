"""The Gradio demo, end to end in headless Chromium (Debian's, driven by Playwright).

One demo server runs in this process on a free 127.0.0.1 port for the whole module; one browser
is shared. Tabs whose embedded model is not installed are checked for their "not installed"
message instead. `scripts/install-browser.sh` installs chromium and playwright.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
from demo_screenshot import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (recipes/: one set of browser flags)

pytestmark = pytest.mark.browser

from mmgpt2.demo.examples import example_images, example_video, example_xrays  # noqa: E402
from mmgpt2.demo.limits import (  # noqa: E402
    DemoLimits,
)
from mmgpt2.demo.models import TASKS, ModelRegistry  # noqa: E402
from mmgpt2.demo.tabs import caption as caption_tab  # noqa: E402
from mmgpt2.demo.tabs import personalized as personalized_tab  # noqa: E402
from mmgpt2.paths import list_embedded_models  # noqa: E402

PAGE_DECODING = {"num_beams": caption_tab.DEFAULT_BEAMS, "max_new_tokens": caption_tab.DEFAULT_MAX_NEW_TOKENS}
#: Generous: the machine running the tests may be shared.
UI_TIMEOUT_MS = 120_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stand_in_captioner(folder: Path) -> str:
    """An untrained-mapper captioner on the embedded encoder and LM, used only while the embedded
    `shapes-tiny` has not been built: the page and the queue are tested either way."""
    from mmgpt2.apps.captioning.model import PrefixCaptioner

    model = PrefixCaptioner.build(
        "embedded:shapes-clip", "embedded:shapes-gpt2", mapper="mlp", prefix_length=4
    )
    model.save_pretrained(folder)
    return str(folder)


@dataclass
class Server:
    url: str
    models: ModelRegistry
    choices: dict[str, list[str]]  # task -> models its tab offers (first = the default)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A running demo; closed after the module."""
    from mmgpt2.demo.app import launch

    extra = []
    if TASKS["caption"][1] not in list_embedded_models():
        extra.append(_stand_in_captioner(tmp_path_factory.mktemp("models") / "stand-in-captioner"))
    models = ModelRegistry(extra=extra)
    # Each tab offers the models present when the page is built: remember them, so a model that
    # lands or is rebuilt while the tests run cannot make the page and the test disagree.
    choices = {task: models.choices(task) for task in TASKS}
    demo, url = launch(
        port=_free_port(), models=models, block=False, quiet=True, limits=DemoLimits(request_seconds=240)
    )
    assert url.startswith("http://127.0.0.1:"), url  # binds the loopback interface by default
    yield Server(url, models, choices)
    demo.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no browser at {CHROMIUM}: run `bash scripts/install-system-deps.sh` (README set-up)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(server, browser):
    url = server.url
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#caption-button, #caption-missing")
    yield page
    context.close()


def _wait_for_value(page, selector: str) -> str:
    page.wait_for_function(
        f"() => (document.querySelector({selector!r})?.value || '').length > 0", timeout=UI_TIMEOUT_MS
    )
    return page.locator(selector).input_value()


def _table_rows(page, elem_id: str) -> list[list[str]]:
    """Body rows of a gr.Dataframe as the user sees them (ARIA rows), once it has at least one."""
    script = """(id) => {
        const rows = [...document.querySelectorAll('#' + id + ' [role=row]')].slice(1)  // [0] is the header
            .map(r => r.innerText.split('\\n').map(c => c.trim()).filter(c => c))
            .filter(cells => cells.length);
        return rows.length ? rows : null;
    }"""
    return page.wait_for_function(script, arg=elem_id, timeout=UI_TIMEOUT_MS).json_value()


def _set_slider(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


# --- the page ------------------------------------------------------------------------------------
def test_caption_tab_shows_the_models_caption_for_an_uploaded_image(server, page):
    models = server.models
    image = example_images(1)[0]
    page.locator("#caption-image input[type=file]").set_input_files(image)
    page.click("#caption-button")
    shown = _wait_for_value(page, "#caption-output textarea")
    # With the page's default decoding, the same call in Python must give the same words.
    expected = models.get(server.choices["caption"][0]).caption([image], **PAGE_DECODING)[0]
    assert shown == expected and shown.strip()


def test_a_bad_file_shows_a_clear_error_and_the_app_keeps_serving(page, tmp_path):
    bad = tmp_path / "holiday.png"
    bad.write_bytes(b"this is text, not a PNG")
    page.locator("#caption-image input[type=file]").set_input_files(str(bad))
    page.click("#caption-button")
    message = page.get_by_text("holiday.png: not an image this demo can read").first
    message.wait_for()
    assert message.is_visible()
    # The same page, an example picture next (a click on the gallery): still answered.
    shown_before = page.locator("#caption-image img").first.get_attribute("src")
    page.locator("#caption-examples img").first.click()
    page.wait_for_function(
        "(before) => { const img = document.querySelector('#caption-image img'); return img && img.getAttribute('src') && img.getAttribute('src') !== before; }",
        arg=shown_before,
    )
    page.click("#caption-button")
    assert _wait_for_value(page, "#caption-output textarea").strip()


def test_a_decompression_bomb_upload_is_named_in_the_page(page, tmp_path):
    from test_hostile_inputs import png_claiming

    png_claiming(tmp_path / "huge-header.png", 100_000, 100_000)  # 70 bytes claiming 10^10 pixels
    page.locator("#caption-image input[type=file]").set_input_files(str(tmp_path / "huge-header.png"))
    page.click("#caption-button")
    message = page.get_by_text("huge-header.png: refused as a possible decompression bomb").first
    message.wait_for()
    assert message.is_visible()


def test_video_tab_shows_the_events_table_and_timeline(server, page):
    page.get_by_role("tab", name="Dense video").click()
    if not server.choices["video"]:
        assert page.get_by_text("model is not installed").first.is_visible()
        return
    page.locator("#video-input input[type=file]").set_input_files(example_video())
    _set_slider(page, "video-events-count", 2)
    _set_slider(page, "video-steps", 2)  # the page's knob for speed; the default is the model's 30
    page.click("#video-button")
    rows = _table_rows(page, "video-events")
    assert 1 <= len(rows) <= 2
    for start, end, sentence, score in rows:
        assert 0.0 <= float(start) < float(end) <= 12.5  # the example clip lasts 12 s
        assert sentence and float(score) > 0
    page.locator("#video-timeline img").wait_for()
    assert page.locator("#video-timeline img").get_attribute("src")


def test_medical_tab_shows_explanation_and_triplets(server, page):
    page.get_by_role("tab", name="Medical").click()
    if not server.choices["medical"]:
        assert page.get_by_text("The medical model is not installed").first.is_visible()
        return
    xray, diagnosis = example_xrays(1)[0]
    page.locator("#medical-image input[type=file]").set_input_files(xray)
    page.click("#medical-button")
    assert _wait_for_value(page, "#medical-explanation textarea").strip()
    rows = _table_rows(page, "medical-triplets")
    assert rows and all(relation and head and tail for head, relation, tail, _ in rows)
    scores = [float(r[3]) for r in rows]
    assert scores == sorted(scores, reverse=True)  # best match first


def test_personalized_tab_captions_as_the_picked_user(server, page):
    models = server.models
    page.get_by_role("tab", name="Personalized").click()
    if not server.choices["personalized"]:
        assert page.get_by_text("The personalized model is not installed").first.is_visible()
        return
    name = server.choices["personalized"][0]
    user = personalized_tab.known_users(models, name)[0]
    image = example_images(1)[0]
    page.locator("#personalized-image input[type=file]").set_input_files(image)
    page.click("#personalized-button")
    shown = _wait_for_value(page, "#personalized-output textarea")
    expected = models.get(name).caption([image], user=user, **PAGE_DECODING)[0]
    assert shown == expected


# --- the queue -------------------------------------------------------------------------------------
def test_eight_concurrent_caption_requests_are_all_answered_one_model_run_at_a_time(server):
    from gradio_client import Client, handle_file

    url, models, name = server.url, server.models, server.choices["caption"][0]
    model = models.get(name)
    image = example_images(1)[0]
    expected = model.caption([image], **PAGE_DECODING)[0]

    active, most = 0, 0
    guard = threading.Lock()
    original = model.caption

    def counting_caption(*args, **kwargs):  # how many runs of this model overlap?
        nonlocal active, most
        with guard:
            active += 1
            most = max(most, active)
        try:
            time.sleep(0.05)  # widen the window in which an overlap would show
            return original(*args, **kwargs)
        finally:
            with guard:
                active -= 1

    model.caption = counting_caption
    try:
        client = Client(url, verbose=False, analytics_enabled=False)
        with ThreadPoolExecutor(8) as pool:
            jobs = [
                pool.submit(
                    client.predict,
                    handle_file(image),
                    name,
                    "beam search",
                    PAGE_DECODING["num_beams"],
                    PAGE_DECODING["max_new_tokens"],
                    0.9,
                    1.0,
                    None,
                    api_name="/caption",
                )
                for _ in range(8)
            ]
            answers = [j.result(timeout=240) for j in jobs]
    finally:
        del model.caption  # back to the class's method
    assert answers == [expected] * 8  # all answered, none lost, none mixed up
    assert most == 1
