"""The README's set-up is what CI runs, and it installs everything the tests need."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_two_readme_commands_and_they_install_the_test_needs():
    printed = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run"), "--print"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set-up", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    written = [line for line in setup.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert printed == written and len(printed) == 2
    install, test = printed
    # Java (metrics tests) and Chromium (browser tests) come from outside pip: command 1 installs them.
    assert 'pip install -e ".[dev]"' in install and "bash scripts/install-system-deps.sh" in install
    assert (ROOT / "scripts" / "install-system-deps.sh").is_file()
    assert "install-browser.sh" in (ROOT / "scripts" / "install-system-deps.sh").read_text()
    assert test.endswith("python -m pytest")
