"""Headless Chromium (Debian's, driven by Playwright) for the tests of the Dagster UI: a fresh
profile per context, Dagster's first-visit dialog dismissed, screenshots kept as artifacts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("HEADWATER_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / ".headwater" / "test-artifacts"
# Two busy cores: pages take seconds.
PAGE_DEADLINE_MS = 120_000
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium(profile: Path, height: int = 1000) -> Iterator[BrowserContext]:
    """Headless Chromium with a fresh profile at `profile`: nothing cached from an earlier UI."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium was not found at {CHROMIUM}: run `make browser` (apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1600, "height": height},
        )
        try:
            yield context
        finally:
            context.close()


def open_page(browser: BrowserContext, url: str, timeout_ms: float = PAGE_DEADLINE_MS) -> Page:
    page = browser.new_page()
    page.set_default_timeout(timeout_ms)
    # Dagster's first-visit "Join the Dagster community" dialog covers the page: skip it
    # whenever it appears.
    page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
    page.goto(url)
    return page


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"dagster-ui-{name}.png"
    path.unlink(missing_ok=True)
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert len(data) > 8 and data.startswith(b"\x89PNG\r\n\x1a\n"), f"{path} is a PNG"
    return path
