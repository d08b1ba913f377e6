#!/usr/bin/env bash
# Install what the browser tests (tests/test_demo_browser.py) need, only where it is missing:
# Debian's chromium (Playwright drives it through executable_path, so Playwright never downloads a
# browser of its own) and the Python packages playwright + gradio in the active Python.
# Safe to run many times: each step is skipped when its result is already there.
set -euo pipefail
PY="${PYTHON:-python}"
# Another Chromium/Chrome binary can stand in: MMGPT2_CHROMIUM=/path (the tests read it too).
CHROMIUM="${MMGPT2_CHROMIUM:-/usr/bin/chromium}"

if [ ! -x "$CHROMIUM" ]; then
  if [ -n "${MMGPT2_CHROMIUM:-}" ]; then
    echo "install-browser: no $CHROMIUM (MMGPT2_CHROMIUM): point it at a Chromium or Chrome binary" >&2
    exit 1
  fi
  . "$(dirname "$0")/apt-install.sh"
  apt_install "Chromium (or set MMGPT2_CHROMIUM to a Chromium binary)" chromium fonts-dejavu-core
fi
"$CHROMIUM" --version || { echo "install-browser: $CHROMIUM does not run" >&2; exit 1; }

if [ -z "${PYTHON:-}" ] && ! "$PY" -c "import sys; sys.exit(sys.prefix == sys.base_prefix)"; then
  # `pip install -e ".[dev]"` already brought both into the project's venv; never pip into a system Python.
  echo "install-browser: no virtual environment is active; skipping pip (set PYTHON=... to choose one)"
  echo "install-browser: ready"
  exit 0
fi
if ! "$PY" -c "import playwright" 2>/dev/null; then
  echo "install-browser: pip install playwright (no browser download: the tests use /usr/bin/chromium)"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$PY" -m pip install -q playwright
fi
if ! "$PY" -c "import gradio" 2>/dev/null; then
  echo "install-browser: pip install gradio (the demo the browser tests open)"
  "$PY" -m pip install -q gradio
fi
echo "install-browser: ready"
