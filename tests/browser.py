"""A real headless browser for page tests: Debian's Chromium driven by Playwright (no browser download).

Use it from a test module with `from tests.browser import page  # noqa: F401` and a `page` argument.
"""

from __future__ import annotations

import shutil

import pytest

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("Chromium is not installed: `make install` installs Debian's chromium package")
    return path


@pytest.fixture
def page(tmp_path):
    """A fresh Playwright page in headless Chromium with an empty profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        context.close()
        browser.close()
