"""Who is looking, end to end: a real Voila server in header mode, headless Chromium.

Each role sees exactly its `usage-dashboard report` (tiles and table, for each role, are
checked in tests/test_e2e_dashboard.py's `test_every_role_at_two_screen_sizes`, on the
same page as its layout); escalation attempts (URL naming another org, All or another
org's token; no or malformed header; identity in the query string; widget messages forged
in the page and sent over the kernel websocket) get no extra data and are logged by the
server. The server (`voila_server`) is shared with the other end-to-end modules: a test
reads what the server printed since it started.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

from tests.test_e2e_dashboard import (
    HEADER,
    expected_tiles,
    open_page,
    open_pages,
    report,
    row_cells,
    table,
    tiles,
    wait_for_tiles,
)
from usage_lib.demo import DEMO_ADMIN_EMAIL, DEMO_ORG_ADMIN_EMAIL, DEMO_USER_EMAIL

pytestmark = pytest.mark.browser

# Sends a widget message from the page, as a tampered browser would: through the page's
# own widget manager, over the kernel websocket. `kind` is "update" (set a synced
# attribute) or "click" (a Button's click event, also for hidden or disabled buttons).
FORGE = """
async ([match, kind, payload]) => {
  const app = window.jupyterapp;
  const manager = app._widgetManager || await app._widgetManagerPromise;
  const models = await Promise.all(Object.values(manager._models));
  const target = models.find(m => Object.entries(match).every(([k, v]) =>
      JSON.stringify(m.get(k)) === JSON.stringify(v) || (Array.isArray(m.get(k)) && m.get(k).includes(v))));
  if (!target) return false;
  if (kind === 'click') { target.send({event: 'click'}, {}); }
  else { target.set(payload); target.save_changes(); }
  return true;
}
"""


def org_id(capsys, gateway, name: str) -> int:
    data = report(capsys, gateway, DEMO_ADMIN_EMAIL, org=name)
    return data["scope"]["org"]["id"]


def other_org_token(capsys, gateway) -> int:
    data = report(capsys, gateway, DEMO_ADMIN_EMAIL, org="Globex Labs")
    return data["top"]["rows"][0]["id"]


def assert_page_equals_report(page, data: dict) -> None:
    wait_for_tiles(page, expected_tiles(data))
    assert tiles(page) == expected_tiles(data)
    shown = table(page)
    assert [row["cells"] for row in shown["rows"]] == row_cells(data, data["top"]["kind"])


def get(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code


@pytest.mark.parametrize(
    "headers",
    [{}, {HEADER: ""}, {HEADER: "a@acme.example, admin@acme.example"}, {HEADER: "Admin <admin@acme.example>"}],
    ids=["missing", "empty", "two-values", "display-name"],
)
def test_missing_or_malformed_header_is_refused_and_logged(voila_server, headers):
    since = voila_server.mark()
    assert get(voila_server.url, headers) == 403
    voila_server.wait_for_log("refused", since)


def test_identity_in_the_query_string_is_ignored(browser, voila_server, demo_gateway, capsys):
    query = f"viewer={DEMO_ADMIN_EMAIL}&email={DEMO_ADMIN_EMAIL}&user=admin&org=all"
    since = voila_server.mark()
    page = open_page(browser, voila_server, DEMO_USER_EMAIL, query=query)
    try:
        assert_page_equals_report(page, report(capsys, demo_gateway, DEMO_USER_EMAIL))
    finally:
        page.context.close()
    voila_server.wait_for_log("ignored identity in the URL query", since)


@pytest.mark.parametrize("viewer", [DEMO_ORG_ADMIN_EMAIL, DEMO_USER_EMAIL])
def test_url_naming_another_org_or_all_shows_own_org(browser, voila_server, demo_gateway, capsys, viewer):
    own = report(capsys, demo_gateway, viewer)
    since = voila_server.mark()
    orgs = ("all", str(org_id(capsys, demo_gateway, "Globex Labs")), "Initech")
    pages = open_pages(browser, voila_server, [(viewer, f"org={org}") for org in orgs])  # side by side
    try:
        for page in pages:
            assert_page_equals_report(page, own)
    finally:
        for page in pages:
            page.context.close()
    voila_server.wait_for_log(re.escape(f"{viewer} (") + ".*not open", since)


def test_url_naming_another_orgs_token_is_ignored(browser, voila_server, demo_gateway, capsys):
    token = other_org_token(capsys, demo_gateway)
    since = voila_server.mark()
    page = open_page(browser, voila_server, DEMO_ORG_ADMIN_EMAIL, query=f"token={token}")
    try:
        assert_page_equals_report(page, report(capsys, demo_gateway, DEMO_ORG_ADMIN_EMAIL))
    finally:
        page.context.close()
    voila_server.wait_for_log(f"token {token} is not a token of", since)


@pytest.mark.parametrize("query", ["org=abc&span=1y&token=x1&top=7", "span=%00&org=-1"])
def test_garbage_url_values_fall_back(browser, voila_server, demo_gateway, capsys, query):
    page = open_page(browser, voila_server, DEMO_ADMIN_EMAIL, query=query)
    try:
        assert_page_equals_report(page, report(capsys, demo_gateway, DEMO_ADMIN_EMAIL))
    finally:
        page.context.close()


def test_forged_click_on_hidden_show_all_orgs_gives_a_user_nothing_more(browser, voila_server, demo_gateway, capsys):
    own = report(capsys, demo_gateway, DEMO_USER_EMAIL)
    since = voila_server.mark()
    page = open_page(browser, voila_server, DEMO_USER_EMAIL)
    try:
        assert_page_equals_report(page, own)
        assert page.evaluate(FORGE, [{"description": "Show all orgs"}, "click", None])
        page.wait_for_timeout(1500)
        assert_page_equals_report(page, own)
    finally:
        page.context.close()
    voila_server.wait_for_log(re.escape(f"{DEMO_USER_EMAIL} (user): org 'all' is not open"), since)


def test_forged_org_index_outside_the_dropdown_changes_nothing(browser, voila_server, demo_gateway, capsys):
    own = report(capsys, demo_gateway, DEMO_ADMIN_EMAIL)
    page = open_page(browser, voila_server, DEMO_ADMIN_EMAIL)
    try:
        assert_page_equals_report(page, own)
        assert page.evaluate(FORGE, [{"_options_labels": "All"}, "update", {"index": 999}])
        page.wait_for_timeout(1500)
        assert_page_equals_report(page, own)
    finally:
        page.context.close()


def test_forged_span_outside_the_choices_changes_nothing(browser, voila_server, demo_gateway, capsys):
    own = report(capsys, demo_gateway, DEMO_USER_EMAIL)
    page = open_page(browser, voila_server, DEMO_USER_EMAIL)
    try:
        assert_page_equals_report(page, own)
        assert page.evaluate(FORGE, [{"_options_labels": "1w"}, "update", {"index": 7}])
        page.wait_for_timeout(1500)
        assert_page_equals_report(page, own)
    finally:
        page.context.close()
