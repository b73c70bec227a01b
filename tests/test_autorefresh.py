"""Auto-refresh, in-process (no browser): the control's choices, the `refresh` key of the
address, the ticker's ticks (none while a refresh runs) and a failed auto-refresh that
keeps the figures on screen and says why once."""

from __future__ import annotations

import html
from urllib.parse import parse_qs

import pytest
from sqlalchemy import event

from tests.support.dashboard import DEMO_NOW
from usage_lib.core.urlstate import query_for, refresh_from_query, selection_from_query
from usage_lib.core.usage import Selection, compute_usage
from usage_lib.demo import DEMO_ADMIN_EMAIL
from usage_lib.render import formatting
from usage_lib.serving.page import page_from_env
from usage_lib.ui.autorefresh import refresh_options
from usage_lib.ui.dashboard import Dashboard

TICK = {"tick": True}


class Calls:
    """`compute_usage` that records the selections it was asked for, and fails with
    `failure` (an exception) while one is set."""

    def __init__(self) -> None:
        self.selections: list[Selection] = []
        self.failure: Exception | None = None
        self.during: list = []

    def __call__(self, db, viewer, selection, **kwargs):
        self.selections.append(selection)
        for action in self.during:
            action()
        if self.failure is not None:
            raise self.failure
        return compute_usage(db, viewer, selection, **kwargs)


@pytest.fixture
def dashboards(refreshed_dashboards):
    """Factory: a refreshed Dashboard of the demo's global admin (closed after the test)."""

    def make(**kwargs) -> Dashboard:
        return refreshed_dashboards(DEMO_ADMIN_EMAIL, Selection(org="all", span="1w", tz="UTC", now=DEMO_NOW), **kwargs)

    return make


def tick(dashboard: Dashboard) -> None:
    """What the page's ticker sends every interval."""
    dashboard.ticker._on_message(dashboard.ticker, TICK, [])


def address(dashboard: Dashboard) -> dict[str, list[str]]:
    return parse_qs(dashboard.address.query)


def test_the_control_offers_off_and_three_intervals_and_is_off_by_default(dashboards):
    assert refresh_options() == [("Off", "off"), ("30 s", "30s"), ("1 min", "1m"), ("5 min", "5m")]
    calls = Calls()
    dashboard = dashboards(compute=calls)
    assert dashboard.refresh_dropdown.options == tuple(refresh_options())
    assert dashboard.refresh_dropdown.value == "off" and dashboard.ticker.seconds == 0
    assert "refresh" not in address(dashboard)
    assert dashboard.refresh_dropdown in [control.children[1] for control in dashboard.filters.children
                                          if "aq-control-refresh" in control._dom_classes]
    tick(dashboard)  # a tick sent before the page heard "off" does nothing
    assert len(calls.selections) == 1


def test_the_choice_is_kept_in_the_address_and_reopens(dashboards, demo_gateway):
    env = {"AQUEDUCT_DB_URL": demo_gateway.url, "AQUEDUCT_VIEWER": DEMO_ADMIN_EMAIL,
           "QUERY_STRING": "org=all&span=1w&refresh=1m"}
    page = page_from_env(env)
    assert page.refresh == "1m"
    calls = Calls()
    dashboard = dashboards(compute=calls, refresh=page.refresh)
    assert (dashboard.refresh_dropdown.value, dashboard.ticker.seconds) == ("1m", 60)
    assert address(dashboard)["refresh"] == ["1m"]
    assert refresh_from_query(dashboard.address.query) == "1m"

    dashboard.refresh_dropdown.value = "5m"  # the view shown stays: no refresh now
    assert (dashboard.ticker.seconds, address(dashboard)["refresh"], len(calls.selections)) == (300, ["5m"], 1)
    assert not dashboard.address.push
    dashboard.span_toggle.value = "1d"  # a filter keeps it in the address
    assert address(dashboard)["span"] == ["1d"] and address(dashboard)["refresh"] == ["5m"]
    # Back and Forward walk the views, not the setting.
    dashboard.address._on_message(dashboard.address, {"popstate": "org=all&span=1w&top=100&refresh=30s"}, [])
    assert dashboard.usage.window.span == "1w" and dashboard.auto_refresh == "5m"
    assert address(dashboard)["refresh"] == ["5m"]

    dashboard.refresh_dropdown.value = "off"
    assert dashboard.ticker.seconds == 0 and "refresh" not in address(dashboard)
    assert query_for("all", "1w", None, 100, refresh="30s") == "org=all&span=1w&top=100&refresh=30s"
    assert selection_from_query("org=all&span=1w&refresh=30s", Selection()) == selection_from_query("org=all&span=1w",
                                                                                                   Selection())
    assert refresh_from_query("org=all") == refresh_from_query("refresh=") == "off"


@pytest.mark.parametrize("asked", ["7s", "30", "x" * 300])
def test_an_unknown_interval_is_off_with_a_notice(dashboards, asked):
    dashboard = dashboards(refresh=asked)
    assert dashboard.auto_refresh == "off" and dashboard.ticker.seconds == 0
    assert dashboard.refresh_dropdown.value == "off" and dashboard.error is None
    notices = html.unescape(dashboard.notice_box.value)
    assert "unknown auto-refresh interval" in notices and "auto-refresh is off" in notices and len(notices) < 400
    assert 'class="aq-notice aq-fallback aq-refresh-fallback"' in dashboard.notice_box.value
    assert "refresh" not in address(dashboard)
    dashboard.select(span="1d")  # the notice stays until another choice
    assert "unknown auto-refresh interval" in dashboard.notice_box.value
    dashboard.refresh_dropdown.value = "30s"
    assert "auto-refresh" not in dashboard.notice_box.value and address(dashboard)["refresh"] == ["30s"]


def test_a_tick_refreshes_the_view_shown_with_the_statements_of_any_refresh(dashboards):
    calls = Calls()
    dashboard = dashboards(compute=calls, refresh="30s")
    dashboard.select(span="1d", top=25)
    before = dashboard.usage.to_json()
    statements: list[str] = []
    engine = dashboard._db.engine
    listener = lambda _conn, _cursor, statement, *_args: statements.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        dashboard.refresh()
        by_hand = len(statements)
        assert 1 <= by_hand <= 4  # issue 14's budget
        tick(dashboard)
        assert len(statements) == 2 * by_hand
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert calls.selections[-1] == calls.selections[-2] == dashboard.selection  # the same request, its own clock
    assert dashboard.usage.to_json() == before and dashboard.error is None


def test_a_tick_while_a_refresh_runs_does_nothing(dashboards):
    calls = Calls()
    dashboard = dashboards(compute=calls, refresh="30s")
    busy: list[bool] = []
    calls.during = [lambda: busy.append(dashboard.ticker.busy), lambda: tick(dashboard)]
    tick(dashboard)
    assert len(calls.selections) == 2  # the first refresh and one tick: the tick inside it was dropped
    assert busy == [True] and dashboard.ticker.busy is False
    calls.during = [lambda: tick(dashboard)]
    dashboard.select(span="1d")  # nor during a refresh asked for by hand
    assert len(calls.selections) == 3 and dashboard.usage.window.span == "1d"


def test_a_failed_auto_refresh_keeps_the_figures_and_says_why_once(dashboards):
    calls = Calls()
    dashboard = dashboards(compute=calls, refresh="1m")
    shown = (dashboard.tile_texts(), dashboard.table.displayed(), list(dashboard.timeseries_chart.bars.y),
             dashboard.as_of.value)
    assert formatting.PLACEHOLDER not in shown[0].values()
    writes: list[str] = []
    dashboard.error_box.observe(lambda change: writes.append(change["new"]), names="value")

    calls.failure = RuntimeError("the database went away")
    for _ in range(3):
        tick(dashboard)
    assert len(calls.selections) == 4
    assert (dashboard.tile_texts(), dashboard.table.displayed(), list(dashboard.timeseries_chart.bars.y),
            dashboard.as_of.value) == shown
    assert dashboard.usage is not None and "aq-failed" not in dashboard.widget._dom_classes
    assert len(writes) == 1  # shown once, not again on each failure
    assert "Could not refresh." in writes[0] and "the database went away" in writes[0]
    assert dashboard.error == "unexpected error: RuntimeError: the database went away"
    assert not any(control.disabled for control in dashboard.controls) and not dashboard.ticker.busy

    calls.failure = RuntimeError("connection refused")
    tick(dashboard)
    assert len(writes) == 2 and "connection refused" in writes[1]

    calls.failure = None
    tick(dashboard)
    assert dashboard.error is None and dashboard.error_box.value == "" and writes[-1] == ""
    assert dashboard.tile_texts() == shown[0]


def test_a_failed_refresh_by_hand_still_shows_no_stale_figures(dashboards):
    calls = Calls()
    dashboard = dashboards(compute=calls, refresh="30s")
    calls.failure = RuntimeError("the database went away")
    dashboard.select(span="1d")  # another view: the old figures would be the wrong ones
    assert dashboard.usage is None and set(dashboard.tile_texts().values()) == {formatting.PLACEHOLDER}
    tick(dashboard)  # an auto-refresh of a failed page fails the same way
    assert dashboard.usage is None and "aq-failed" in dashboard.widget._dom_classes
    calls.failure = None
    tick(dashboard)
    assert dashboard.error is None and dashboard.usage.window.span == "1d"
