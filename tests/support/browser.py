"""pytest plugin: headless Chromium (Debian's) driven by Playwright for Python.

Fixtures
--------
``chromium_executable`` (session): path (str) of the Chromium binary:
    env ``AQUEDUCT_TEST_CHROMIUM``, else /usr/bin/chromium, else ``chromium`` /
    ``chromium-browser`` on PATH. Missing: fail if ``CI`` is set, else skip.
``browser`` (session): a ``playwright.sync_api.Browser`` launched headless from that
    executable (never a Playwright-downloaded browser); closed at session end.
``test_output_dir`` (session): ``Path`` of ``test-output/`` in the repo root
    (created), for screenshots and other artefacts.

Tests using ``browser`` get the ``browser`` marker automatically.

Note: the sync Playwright API cannot be used from inside a running asyncio loop
(async tests).

Pages stay on 127.0.0.1
-----------------------
``new_context(browser, **options)`` opens a browser context (``Browser.new_context``
options) that records every request leaving 127.0.0.1 (``data:``, ``about:`` and ``blob:``
URLs of 127.0.0.1 stay home) in ``context.outside_requests``. Every test that opened such
a context fails at its end if one was recorded (an autouse fixture): the served page loads
nothing from a CDN or anywhere else. (A listener, not ``context.route``: with routing on,
Chromium drops the beacon a page sends in ``beforeunload`` when it navigates away, which
is how Voila shuts a left page's kernel down.)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support import REPO_ROOT, unavailable

ENV_CHROMIUM = "AQUEDUCT_TEST_CHROMIUM"

# The same flags the snapshot exporter starts Chromium with.
from usage_lib.serving.capture import CHROMIUM_ARGS  # noqa: E402


def find_chromium() -> str | None:
    env = os.environ.get(ENV_CHROMIUM)
    if env:
        return env if os.access(env, os.X_OK) else None
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    path = find_chromium()
    if path is None:
        unavailable(
            "Chromium not found (/usr/bin/chromium, PATH or $AQUEDUCT_TEST_CHROMIUM): "
            "install the Debian package `chromium` (scripts/ensure-system-packages)"
        )
    return path


@pytest.fixture(scope="session")
def browser(chromium_executable):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        try:
            b = pw.chromium.launch(
                executable_path=chromium_executable,
                headless=True,
                args=CHROMIUM_ARGS,
                timeout=60_000,
            )
        except PlaywrightError as exc:
            pytest.fail(f"could not launch {chromium_executable}: {exc}", pytrace=False)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture(scope="session")
def test_output_dir() -> Path:
    out = REPO_ROOT / "test-output"
    out.mkdir(parents=True, exist_ok=True)
    return out


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: needs Chromium and a Voila server")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


# -- pages stay on 127.0.0.1 -------------------------------------------------------------

_contexts: list = []


def is_local(url: str) -> bool:
    if url.startswith("blob:"):
        url = url[len("blob:"):]
    parts = urlsplit(url)
    return parts.scheme in ("data", "about") or (parts.scheme in ("http", "https", "ws", "wss") and parts.hostname == "127.0.0.1")


def new_context(browser, **options):
    """``browser.new_context(**options)``, watched: requests that leave 127.0.0.1 are
    listed in ``context.outside_requests``, checked at the test's end."""
    context = browser.new_context(**options)
    outside: list[str] = []
    context.outside_requests = outside

    def record(request) -> None:
        if not is_local(request.url):
            outside.append(request.url)

    context.on("request", record)
    _contexts.append(context)
    return context


@pytest.fixture(autouse=True)
def _pages_stay_on_127_0_0_1():
    _contexts.clear()
    yield
    outside = sorted({url for context in _contexts for url in context.outside_requests})
    _contexts.clear()
    assert not outside, f"the page requested URLs outside 127.0.0.1: {outside}"
