"""End to end: with one fixed viewer, `usage-dashboard serve` keeps a preheated kernel
(started and through its imports before anyone asks) and the page still follows its URL.

Needs Chromium (the `browser` fixture: skipped without it, failed under CI).
"""

from __future__ import annotations

import os
import re
import signal
import time

import psutil

import pytest

from tests.support.browser import new_context
from tests.test_e2e_dashboard import STEP_TIMEOUT_MS, expected_tiles, kernel_id, leave, report, serving, tiles
from usage_lib.demo import DEMO_ADMIN_EMAIL, DEMO_USER_EMAIL

pytestmark = pytest.mark.browser


def open_plain(browser, url: str):
    page = new_context(browser, viewport={"width": 1366, "height": 768}).new_page()
    page.goto(url, timeout=STEP_TIMEOUT_MS)
    page.wait_for_function(
        "() => { const v = document.querySelector('.aq-tile-value');"
        " return v && v.textContent !== '\u2014' && !document.querySelector('.aq-dashboard.aq-loading'); }",
        timeout=60_000,
    )
    return page


@pytest.fixture(scope="module")
def fixed_server(demo_gateway):
    with serving(demo_gateway, {}, "--viewer", DEMO_ADMIN_EMAIL) as server:
        yield server


def test_fixed_viewer_pages_come_from_preheated_kernels(browser, fixed_server, demo_gateway, capsys):
    expected = expected_tiles(report(capsys, demo_gateway, DEMO_ADMIN_EMAIL))
    page = open_plain(browser, fixed_server.url)
    try:
        assert tiles(page) == expected
    finally:
        page.context.close()
    assert "Using pre-heated kernel" in "".join(fixed_server.output)


@pytest.mark.parametrize("query, view", [
    ("org=all&span=1w", {"org": "all", "span": "1w"}),
    ("span=1h&top=10", {"span": "1h", "top": 10}),
])
def test_preheated_page_follows_its_query_string(browser, fixed_server, demo_gateway, capsys, query, view):
    expected = expected_tiles(report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, **view))
    time.sleep(3)  # let the pool refill, so this page too gets a preheated kernel
    page = open_plain(browser, f"{fixed_server.url}?{query}")
    try:
        assert tiles(page) == expected
        assert page.locator(".aq-span button.mod-active, .aq-span button.aq-active").first.inner_text() == view["span"]
    finally:
        page.context.close()


def pool_size(server) -> int:
    """The kernel pool's size, as Voila logs it once the pool is filled."""
    deadline = time.monotonic() + 60
    while not (found := re.findall(r"Kernel pool of \S+ is filled with (\d+) kernel", "".join(server.output))):
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.5)
    return int(found[-1])


def test_closed_pages_give_their_kernels_back(browser, demo_gateway):
    """Five pages, opened and closed one after another: after each, the server is back to
    its preheated pool within seconds (not one idle kernel more per page until culled).
    Its own server: the other tests close their pages without `beforeunload`."""
    with serving(demo_gateway, {}, "--viewer", DEMO_ADMIN_EMAIL) as server:
        pool = pool_size(server)
        assert pool >= 1
        server.wait_for_kernels(lambda ids: len(ids) == pool, timeout=60)
        for _ in range(5):
            page = open_plain(browser, server.url)
            kernel = kernel_id(page)
            assert kernel in server.kernel_ids()
            leave(page)
            server.wait_for_kernels(lambda ids: kernel not in ids and len(ids) == pool, timeout=10)
        assert "403 POST /voila/api/shutdown" not in "".join(server.output)


def test_header_mode_never_preheats(browser, demo_gateway):
    with serving(demo_gateway, {"AQUEDUCT_IDENTITY": "header"}) as server:
        context = new_context(browser, extra_http_headers={"X-Forwarded-Email": DEMO_USER_EMAIL})
        page = context.new_page()
        try:
            page.goto(server.url, timeout=STEP_TIMEOUT_MS)
            page.wait_for_selector(".aq-tile-value", timeout=60_000)
        finally:
            context.close()
        log = "".join(server.output)
    assert "pre-heated" not in log and "Kernel pool" not in log


def test_sigterm_stops_voila_and_its_kernels(demo_gateway):
    with serving(demo_gateway, {}, "--viewer", DEMO_ADMIN_EMAIL) as server:
        deadline = time.monotonic() + 60
        while "Kernel pool" not in "".join(server.output) and time.monotonic() < deadline:
            time.sleep(0.5)
        children = psutil.Process(server.process.pid).children(recursive=True)
        assert len(children) >= 2, server.log()  # Voila and the preheated kernel
        os.kill(server.process.pid, signal.SIGTERM)  # serve alone, as a service manager would
        server.process.wait(timeout=30)
        _gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"still running after SIGTERM: {[p.cmdline() for p in alive]}"
