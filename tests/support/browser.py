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
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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

