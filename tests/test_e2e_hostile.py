"""End to end, hostile input (issue 16 item 3): a gateway whose org, team, service-account,
token, model names, owners' emails and user_ids are script and markup payloads
(`tests.test_hostile_input.NAMES`: each would set `window.__pwned` or call `alert` if it
ever ran), served by `usage-dashboard serve` in header mode, read by headless Chromium.

The page shows every name as the text it is, in the table, the org choice, the models
chart's labels and its tooltips, at every level and in the Health section; no script
from the data runs (no dialog, `window.__pwned` stays undefined); the offline snapshot of
the same view runs none either. Two identity header lines reach the hook as sent and get
a 403 (the other identity cases: tests/test_hostile_input.py).
"""

from __future__ import annotations

import http.client
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest

from tests.support.browser import new_context
from tests.support.gateway import GatewayBuilder, sqlite_url
from tests.support.serving import HEADER, serving
from tests.test_e2e_dashboard import FIRST_RENDER, STEP_TIMEOUT_MS, click_row, model_axis, table, wait_for_heading
from tests.test_hostile_input import NAMES, build_hostile_gateway, hostile_settings
from usage_lib.render.files import Report
from usage_lib.render.offline_page import snapshot_html
from usage_lib.ui.dashboard import Dashboard

pytestmark = pytest.mark.browser

@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory):
    """The hostile gateway served in header mode: (server, gateway)."""
    directory = tmp_path_factory.mktemp("e2e-hostile")
    builder = GatewayBuilder(sqlite_url(directory / "gateway.sqlite3"))
    gateway = build_hostile_gateway(builder, directory)
    builder.close()
    with serving(SimpleNamespace(url=gateway.url, router_config=gateway.router_config),
                 {"AQUEDUCT_IDENTITY": "header"}) as server:
        yield server, gateway


def as_in_the_dom(name: str) -> str:
    """A name as the page's text holds it: HTML reads CR LF and CR as LF."""
    return name.replace("\r\n", "\n").replace("\r", "\n")


def all_shown(names, texts) -> bool:
    """Each name is one of `texts`, as written (text set by a script, e.g. chart labels)
    or as HTML reads it (text from markup)."""
    texts = set(texts)
    return all(name in texts or as_in_the_dom(name) in texts for name in names)


def watched_page(browser, server, viewer: str, query: str = ""):
    """A page of `viewer` at `query` that records the dialogs it opens (dismissed)."""
    context = new_context(browser, viewport={"width": 1366, "height": 900}, extra_http_headers={HEADER: viewer})
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(server.url + (f"?{query}" if query else ""), timeout=STEP_TIMEOUT_MS, wait_until="commit")
    return page


def assert_no_script_ran(page) -> None:
    assert page.dialogs == []
    assert page.evaluate("() => typeof window.__pwned") == "undefined"


def hover_bars_until(page, chart: str, *texts: str) -> str:
    """Hover the bars of a chart (each tooltip is filled by the kernel) until the
    tooltips held every one of `texts`; the tooltips' texts."""
    tips = []
    bars = page.locator(f".aq-{chart} rect.bar")
    for index in range(bars.count()):
        bars.nth(index).hover(force=True)
        page.wait_for_timeout(100)
        tips += page.eval_on_selector_all(".aq-chart-tip", "tips => tips.map(t => t.textContent)")
        if all(text in "\n".join(tips) for text in texts):
            break
    page.mouse.move(1, 1)
    return "\n".join(tips)


def first_column(page) -> set[str]:
    return {row["cells"][1] for row in table(page)["rows"]}


def test_names_are_shown_as_text_and_no_script_from_the_data_runs(browser, hostile_site):
    """One page, every place: the token table and the org choice, the models chart and its
    tooltips, a token's user_ids, All's orgs, the Health section's model table."""
    server, gateway = hostile_site
    page = watched_page(browser, server, gateway.admin)
    try:
        page.wait_for_load_state("load", timeout=60_000)
        page.wait_for_function(FIRST_RENDER, timeout=60_000)
        assert_no_script_ran(page)
        assert all_shown((*gateway.tokens, *gateway.service_accounts), first_column(page))
        assert all_shown(gateway.emails, {cell for row in table(page)["rows"] for cell in row["cells"]})
        assert all_shown(gateway.models, model_axis(page))
        options = page.eval_on_selector_all(".aq-org-select option", "options => options.map(o => o.textContent)")
        # The org choice writes spaces as no-break spaces (ipywidgets' Dropdown).
        assert all_shown(gateway.orgs, {option.replace("\u00a0", " ") for option in options})
        tips = hover_bars_until(page, "models", NAMES["img"], NAMES["script"])
        assert NAMES["img"] in tips and NAMES["script"] in tips

        click_row(page, gateway.tokens[0])
        wait_for_heading(page, "User ID")
        assert all_shown(gateway.user_ids, first_column(page))

        page.select_option(".aq-org-select select", label="All")
        wait_for_heading(page, "Organization")
        assert all_shown(gateway.orgs, first_column(page))

        page.locator(".aq-sections-switch button", has_text="Health").click()
        page.wait_for_selector(".aq-models-htable", timeout=STEP_TIMEOUT_MS)
        health = page.locator(".aq-models-htable").text_content()
        assert all(as_in_the_dom(model) in health for model in gateway.models)

        assert page.locator("img").count() == 0
        assert_no_script_ran(page)
    finally:
        page.context.close()


def test_the_offline_snapshot_of_hostile_names_runs_none_of_them(browser, hostile_site, tmp_path):
    _server, gateway = hostile_site
    dashboard = Dashboard(hostile_settings(gateway))
    try:
        dashboard.refresh()
        path = tmp_path / "snapshot.html"
        path.write_text(snapshot_html(Report.of(dashboard.usage, dashboard.widget)), encoding="utf-8")
    finally:
        dashboard.close()
    # As tests/test_snapshot.py opens a snapshot: its file alone, offline.
    context = browser.new_context(viewport={"width": 1366, "height": 900}, offline=True)
    context.route("**/*", lambda route: route.continue_() if route.request.url == path.as_uri() else route.abort())
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    try:
        page.goto(path.as_uri())
        page.wait_for_function("() => document.body.classList.contains('aq-widgets-ready')", timeout=30_000)
        assert all_shown(gateway.tokens, {row["cells"][1] for row in table(page)["rows"]})
        assert page.locator("img").count() == 0
        assert_no_script_ran(page)
    finally:
        context.close()


def test_two_identity_header_lines_are_a_403(hostile_site):
    server, gateway = hostile_site
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    try:
        connection.putrequest("GET", "/")
        connection.putheader(HEADER, "nobody@example.org")
        connection.putheader(HEADER.lower(), gateway.admin)
        connection.endheaders()
        assert connection.getresponse().status == 403
    finally:
        connection.close()
