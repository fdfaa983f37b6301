"""A real headless Chromium against a live siyu server: one browser per module, a fresh page per test."""

from __future__ import annotations

import base64
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; Django would then refuse
# ORM calls from the test itself (seeding, assertions) as "async-unsafe".
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("SIYU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync", "--disable-quic",
]
PASSWORD = "pw-12345678"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


class PageErrors(list):
    """Console errors and uncaught exceptions seen by a page."""


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def page(browser, live_server, page_errors) -> Iterator:
    """A page in a fresh context (no cookies), English unless a test asks otherwise."""
    context = browser.new_context(locale="en-US", base_url=live_server.url,
                                  viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("console", lambda msg: page_errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: page_errors.append(f"pageerror: {exc}"))
    yield page
    context.close()
    assert list(page_errors) == [], page_errors


@pytest.fixture
def member():
    """Create a team member in a role: ``member("developer", "dev-li")``."""
    from siyu.accounts.actions import create_user

    def _make(role: str, username: str):
        user, _pw = create_user(username, role, password=PASSWORD)
        return user

    return _make


@pytest.fixture
def sign_in(page):
    """Sign in through the real form, as a person would."""

    def _sign_in(username: str) -> None:
        page.goto("/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("form button[type=submit].primary")
        page.wait_for_url(lambda url: "/login/" not in url)

    return _sign_in


@pytest.fixture
def send_batch(live_server):
    """POST a Segment batch to the live server over HTTP, as an SDK would."""

    def _send(write_key: str, batch: list[dict]) -> dict:
        request = urllib.request.Request(
            f"{live_server.url}/v1/batch", data=json.dumps({"batch": batch}).encode(), method="POST",
            headers={"Content-Type": "application/json",
                     "Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    return _send


@pytest.fixture
def screenshot(page):
    """Save a full-page screenshot when SIYU_SCREENSHOTS names a folder (to look at pages by eye)."""

    def _shot(name: str) -> None:
        folder = os.environ.get("SIYU_SCREENSHOTS")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)

    return _shot
