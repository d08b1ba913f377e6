"""Take the README's screenshot: the Caption tab with a result, in headless Chromium.

Needs what the browser tests need (`bash scripts/install-browser.sh`). Run from a checkout:

    python -m demo_screenshot assets/demo_screenshot.png --image assets/examples/shapes_1.png
"""

from __future__ import annotations

import argparse
import io
import os
import socket
from pathlib import Path

CHROMIUM = os.environ.get("MMGPT2_CHROMIUM", "/usr/bin/chromium")  # as scripts/install-browser.sh
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def take(
    out: str | os.PathLike, image: str | os.PathLike, width: int = 1100, height: int = 620
) -> tuple[Path, str]:
    """Caption `image` in the demo and save the page as a small PNG; returns ``(path, caption)``."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from mmgpt2.checkpoint import atomic_write
    from mmgpt2.demo.app import launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo, url = launch(port=port, block=False, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(180_000)
            page.goto(url)
            page.locator("#caption-image input[type=file]").set_input_files(str(image))
            page.click("#caption-button")
            page.wait_for_function(
                "() => document.querySelector('#caption-output textarea').value.length > 0"
            )
            caption = page.locator("#caption-output textarea").input_value()
            page.evaluate("() => window.scrollTo(0, 0)")  # the upload scrolls the page
            page.wait_for_timeout(300)
            png = page.screenshot()
            browser.close()
    finally:
        demo.close()
    # A 128-colour palette keeps the PNG small (tens of KB) with no visible change to the UI.
    shot = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    atomic_write(out, lambda tmp: shot.save(tmp, format="PNG", optimize=True))
    return Path(out), caption


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("--image", default=None, help="image to caption (default: the first example)")
    args = parser.parse_args(argv)
    from mmgpt2.demo.examples import example_images

    path, caption = take(args.out, args.image or example_images(1)[0])
    print(f"{path}: {path.stat().st_size / 1024:.0f} KB, caption {caption!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
