"""Fixtures for tests that drive the running app: a server process and a real Chromium.

The app runs as `python app.py` in its own process (as a person would start it), on a free
port, with a private home folder. The browser is Debian's Chromium driven by Playwright;
tests are skipped where either is missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("MEDART_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def shots():
    """Save a screenshot as tests/artifacts/<name>.png; returns the path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def shot(page, name: str, **kwargs) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), **kwargs)
        return path

    return shot
