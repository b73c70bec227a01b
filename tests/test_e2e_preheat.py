"""End to end: with one fixed viewer, `usage-dashboard serve` keeps a preheated kernel
(started and through its imports before anyone asks) and the page still follows its URL;
in header mode (the shared `voila_server`) it never preheats.

Needs Chromium (the `browser` fixture: skipped without it, failed under CI). The tests of
one fixed-viewer server leave their pages as a person does (`leave`: Voila shuts the
page's kernel down), so the server is back to its pool after each. That SIGTERM to
`serve` stops Voila and every kernel (the preheated one too) is tested in
tests/test_serve_stop.py (`test_serve_stops_voila_and_its_kernels[sigterm]`), on a
fixed-viewer server with its pool filled.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.support.browser import new_context
from tests.support.serving import HEADER, serving
from tests.test_e2e_dashboard import STEP_TIMEOUT_MS, expected_tiles, kernel_id, leave, report, tiles
from usage_lib.demo import DEMO_ADMIN_EMAIL, DEMO_USER_EMAIL

pytestmark = pytest.mark.browser

USED = "Using pre-heated kernel"
FILLED = re.compile(r"Kernel pool of \S+ is filled with (\d+) kernel")


def open_plain(browser, url: str):
    page = new_context(browser, viewport={"width": 1366, "height": 768}).new_page()
    page.goto(url, timeout=STEP_TIMEOUT_MS)
    page.wait_for_function(
        "() => { const v = document.querySelector('.aq-tile-value');"
        " return v && v.textContent !== '\u2014' && !document.querySelector('.aq-dashboard.aq-loading'); }",
        timeout=60_000,
    )
    return page


def test_header_mode_never_preheats(browser, voila_server):
    context = new_context(browser, extra_http_headers={HEADER: DEMO_USER_EMAIL})
    page = context.new_page()
    try:
        page.goto(voila_server.url, timeout=STEP_TIMEOUT_MS)
        page.wait_for_selector(".aq-tile-value", timeout=60_000)
    finally:
        context.close()
    log = voila_server.text()  # all it printed: this page, and any other the run opened
    assert "pre-heated" not in log and "Kernel pool" not in log


@pytest.fixture(scope="module")
def fixed_server(demo_gateway):
    with serving(demo_gateway, {}, "--viewer", DEMO_ADMIN_EMAIL) as server:
        yield server


def pool_size(server) -> int:
    """The kernel pool's size, as Voila logs it once the pool is filled."""
    deadline = time.monotonic() + 60
    while not (found := FILLED.findall(server.text())):
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    return int(found[-1])


def wait_for_a_warm_pool(server, timeout: float = 60) -> None:
    """Until a kernel of the pool has run through the notebook's imports: Voila logs the
    pool filled once per kernel it heats, and "Using pre-heated kernel" once per page
    given one, so the pool holds a warm kernel when it logged more of the former."""
    deadline = time.monotonic() + timeout
    while len(FILLED.findall(text := server.text())) <= text.count(USED):
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)


def open_preheated(browser, server, query: str = ""):
    """A page of the fixed-viewer server, given a warm preheated kernel (checked in the log)."""
    wait_for_a_warm_pool(server)
    used = server.text().count(USED)
    page = open_plain(browser, server.url + (f"?{query}" if query else ""))
    assert server.text().count(USED) == used + 1, server.log()
    return page


def test_fixed_viewer_pages_come_from_preheated_kernels(browser, fixed_server, demo_gateway, capsys):
    expected = expected_tiles(report(capsys, demo_gateway, DEMO_ADMIN_EMAIL))
    page = open_preheated(browser, fixed_server)
    try:
        assert tiles(page) == expected
    finally:
        leave(page)
    assert USED in fixed_server.text()


@pytest.mark.parametrize("query, view", [
    ("org=all&span=1w", {"org": "all", "span": "1w"}),
    ("span=1h&top=10", {"span": "1h", "top": 10}),
])
def test_preheated_page_follows_its_query_string(browser, fixed_server, demo_gateway, capsys, query, view):
    expected = expected_tiles(report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, **view))
    page = open_preheated(browser, fixed_server, query)  # this page too gets a preheated kernel
    try:
        assert tiles(page) == expected
        assert page.locator(".aq-span button.mod-active, .aq-span button.aq-active").first.inner_text() == view["span"]
    finally:
        leave(page)


def test_closed_pages_give_their_kernels_back(browser, fixed_server):
    """Three pages, opened and closed one after another: after each, the server is back to
    its preheated pool within seconds (not one idle kernel more per page until culled).
    (The other tests of this server leave their pages the same way.)"""
    server = fixed_server
    pool = pool_size(server)
    assert pool >= 1
    server.wait_for_kernels(lambda ids: len(ids) == pool, timeout=60)
    for _ in range(3):
        page = open_plain(browser, server.url)
        kernel = kernel_id(page)
        assert kernel in server.kernel_ids()
        leave(page)
        server.wait_for_kernels(lambda ids: kernel not in ids and len(ids) == pool, timeout=10)
    assert "403 POST /voila/api/shutdown" not in server.text()
