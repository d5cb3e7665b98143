"""Headless Chromium for the report tests: a screenshot, the DOM after load, console messages.

`.ci/run` installs Debian's chromium when it is absent and sets
RELBRIDGE_REQUIRE_BROWSER=1, so there a missing browser fails the test instead of
skipping it. Chromium opens a local file; nothing touches the network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--disable-extensions", "--enable-logging=stderr", "--v=0")  # fmt: skip


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("RELBRIDGE_REQUIRE_BROWSER") == "1":
        pytest.fail("no chromium on PATH although .ci/run installs it")
    pytest.skip("no chromium on PATH (.ci/run installs it: apt-get install chromium)")


def _run(browser: str, page: str, *flags: str, tmp: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={tmp}", *flags, "file://" + os.path.abspath(page)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def render(page: str, screenshot: str, tmp: str, width: int = 1200, height: int = 3000) -> dict:
    """Loads ``page``; returns ``{"dom": str, "console": [messages]}`` and writes ``screenshot``."""
    browser = find_browser()
    dom = _run(browser, page, "--dump-dom", tmp=tmp)
    shot = _run(browser, page, f"--window-size={width},{height}", f"--screenshot={screenshot}",
                tmp=tmp)  # fmt: skip
    console = [
        line
        for out in (dom, shot)
        for line in out.stderr.splitlines()
        if re.search(r":CONSOLE", line)
    ]
    return {"dom": dom.stdout, "console": console}
