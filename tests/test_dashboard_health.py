"""The page's Health section (issue 15 item 7), in-process (no browser): its tiles show
`Settings.compute_health`'s figures for every role, the section is kept in the address,
health is computed only while its section is shown (and usage only while Usage is), the
headroom table is there for admins only, names from the data are shown literally, and
the failures chart draws the failure rate per bucket as a line (issue 15 item 2).

The failure-rate line is checked on a tiny gateway, the day before NOW in hourly
buckets (2026-11-23 12:00 to 2026-11-24 12:00, 25 buckets, 09:00 the 22nd, 11:00 the
24th), gpt-4o chat completions of root (global admin):

    09:00  two of status 200, one of 500      3 requests, 1 failed: 1/3 = 33.3%
    11:00  one of status 200, one in flight   2 requests, 0 failed: 0% (in flight is
                                              a request, not a failure)
    every other hour: no request              no rate: no point (not 0%)
"""

from __future__ import annotations

import dataclasses
import html
import math
from datetime import timedelta
from urllib.parse import parse_qs

import numpy as np
import pytest

from tests.support.dashboard import DEMO_NOW
from tests.support.gateway import NOW, GatewayBuilder, sqlite_url
from usage_lib.core.health import FAILURE_KINDS, compute_health
from usage_lib.core.urlstate import query_for, section_from_query
from usage_lib.core.usage import Selection, compute_usage
from usage_lib.settings import Settings
from usage_lib.demo import DEMO_ADMIN_EMAIL, DEMO_ORG_ADMIN_EMAIL, DEMO_USER_EMAIL
from usage_lib.render import formatting
from usage_lib.serving.page import page_from_env
from usage_lib.ui.dashboard import Dashboard
from usage_lib.ui.health import TILES, HealthSection

HOSTILE = '<img src=x onerror="alert(1)">&amp; model'
VIEW = Selection(org="all", span="1w", tz="UTC", now=DEMO_NOW)


class Counted:
    """A compute function that counts its calls (and may change what it returns)."""

    def __init__(self, compute, change=None) -> None:
        self.compute, self.change, self.calls = compute, change, []

    def __call__(self, db, viewer, selection, **kwargs):
        self.calls.append(selection)
        result = self.compute(db, viewer, selection, **kwargs)
        return self.change(result) if self.change else result


@pytest.fixture
def dashboards(refreshed_dashboards):
    def make(viewer: str = DEMO_ADMIN_EMAIL, selection: Selection | None = VIEW, **kwargs) -> Dashboard:
        return refreshed_dashboards(viewer, selection, **kwargs)

    return make


def expected_tiles(health) -> dict[str, str]:
    """The tiles' figures, from the core's frames."""
    latency = {kind: " \u00b7 ".join(f"{p} {formatting.milliseconds(health.latency.loc[kind, p])}"
                                      for p in ("p50", "p95", "p99")) for kind in ("completion", "embedding")}
    statuses = health.statuses
    failed = int(statuses.loc[statuses["kind"].isin(FAILURE_KINDS), "requests"].sum())
    requests = int(statuses["requests"].sum())
    if health.processing is None or not health.processing["requests"].sum():
        overhead = formatting.PLACEHOLDER
    else:
        overhead = " \u00b7 ".join(
            f"{title} {formatting.milliseconds(health.processing.loc[kind, 'p50'])} / "
            f"{formatting.milliseconds(health.processing.loc[kind, 'p95'])}"
            for kind, title in (("completion", "Completions"), ("embedding", "Embeddings")))
    return {
        TILES["completion"]: latency["completion"],
        TILES["embedding"]: latency["embedding"],
        TILES["failures"]: formatting.share(failed / requests),
        TILES["in_flight"]: formatting.count(health.in_flight),
        TILES["tokens_unknown"]: formatting.count(health.tokens_unknown),
        TILES["overhead"]: overhead,
    }


@pytest.mark.parametrize("viewer, headroom", [(DEMO_ADMIN_EMAIL, True), (DEMO_ORG_ADMIN_EMAIL, True),
                                              (DEMO_USER_EMAIL, False)])
def test_the_tiles_show_the_cores_health_for_every_role(dashboards, dashboard_config, viewer, headroom):
    dashboard = dashboards(viewer, section="health")
    assert dashboard.error is None and dashboard.usage is None
    health = dashboard_config(viewer).compute_health(dashboard.selection)
    section = dashboard.health_section
    assert section.tile_texts() == expected_tiles(health)
    assert formatting.count(sum(int(n) for n in health.failures_by_model["failed"])) in section.tile_notes()[TILES["failures"]]
    assert [row["Model"] for row in section.model_rows()] == [formatting.name(m) for m in health.failures_by_model["model"]]
    assert sum(int(row["Requests"].replace(",", "")) for row in section.status_rows()) == int(health.statuses["requests"].sum())
    assert section.shows_headroom is headroom
    if headroom:
        rows = section.headroom_rows()
        assert sorted(int(row["Token"].rsplit("#", 1)[1]) for row in rows) == sorted(health.headroom["token_id"])
    else:
        assert section.headroom_rows() == [] and section.near_limit.value == ""
    role = {DEMO_ADMIN_EMAIL: "Global admin", DEMO_ORG_ADMIN_EMAIL: "Org admin", DEMO_USER_EMAIL: "User"}[viewer]
    assert role in dashboard.subtitle.value
    assert dashboard.health_section.widget in dashboard.widget.children
    assert dashboard.panels not in dashboard.widget.children


def test_the_section_is_kept_in_the_address_and_reopens(dashboards, demo_gateway):
    env = {"AQUEDUCT_DB_URL": demo_gateway.url, "AQUEDUCT_VIEWER": DEMO_ADMIN_EMAIL,
           "QUERY_STRING": "org=all&span=1w&view=health"}
    page = page_from_env(env)
    assert page.section == "health"
    dashboard = dashboards(section=page.section)
    query = parse_qs(dashboard.address.query)
    assert query["view"] == ["health"] and query["span"] == ["1w"]
    assert section_from_query(dashboard.address.query) == "health"
    assert dashboard.section_switch.value == "health" and not dashboard.address.push

    dashboard.section_switch.value = "usage"
    assert "view" not in parse_qs(dashboard.address.query) and dashboard.usage is not None
    assert section_from_query(dashboard.address.query) == "usage"
    dashboard.section_switch.value = "health"
    assert parse_qs(dashboard.address.query)["view"] == ["health"]
    # Back and Forward walk the views; the section stays.
    dashboard.address._on_message(dashboard.address, {"popstate": "org=all&span=1d&top=100"}, [])
    assert dashboard.section == "health" and dashboard.health.window.span == "1d"
    assert parse_qs(dashboard.address.query)["view"] == ["health"]

    for asked in ("", "view=", "view=usage", "view=HEALTHX", "view=<b>"):
        assert section_from_query(asked) == "usage"
    assert section_from_query("view=Health") == "health"
    assert query_for("all", "1w", None, 100, section="health") == "org=all&span=1w&top=100&view=health"
    assert query_for("all", "1w", None, 100, section="usage") == "org=all&span=1w&top=100"
    assert page_from_env({**env, "QUERY_STRING": "org=all"}).section == "usage"


def test_health_is_computed_only_while_its_section_is_shown(dashboards):
    usage_calls, health_calls = Counted(compute_usage), Counted(compute_health)
    dashboard = dashboards(compute=usage_calls, compute_health=health_calls, refresh="30s")
    dashboard.select(span="1d")
    dashboard.ticker._on_message(dashboard.ticker, {"tick": True}, [])
    dashboard.top_toggle.value = 10
    assert (len(usage_calls.calls), len(health_calls.calls)) == (4, 0)

    dashboard.section_switch.value = "health"  # computed on switching to it, same selection
    assert (len(usage_calls.calls), len(health_calls.calls)) == (4, 1)
    assert health_calls.calls[-1] == usage_calls.calls[-1] == dashboard.selection
    dashboard.span_toggle.value = "1w"  # controls
    dashboard.ticker._on_message(dashboard.ticker, {"tick": True}, [])  # auto-refresh
    dashboard.select(org=1, push=True)  # a drill-down
    assert (len(usage_calls.calls), len(health_calls.calls)) == (4, 4)
    assert dashboard.health.scope.org.id == 1 and dashboard.org_dropdown.value == 1

    dashboard.section_switch.value = "usage"  # its selection changed meanwhile: refreshed
    assert (len(usage_calls.calls), len(health_calls.calls)) == (5, 4)
    assert dashboard.usage.window.span == "1w" and dashboard.usage.scope.org.id == 1
    dashboard.section_switch.value = "health"  # nothing changed: shown as it was
    dashboard.section_switch.value = "usage"
    assert (len(usage_calls.calls), len(health_calls.calls)) == (5, 4)
    assert dashboard.error is None and "aq-failed" not in dashboard.widget._dom_classes


def test_never_two_computations_at_once(dashboards):
    dashboard = dashboards()
    during: list = []

    def switching(health):
        during.append((dashboard._busy, dashboard.show_section("usage"), dashboard.section))
        return health

    health_calls = Counted(compute_health, switching)
    dashboard._compute_health = health_calls
    dashboard.show_section("health")
    assert len(health_calls.calls) == 1 and during[0][0] is True and during[0][2] == "health"
    assert dashboard.section == "health" and dashboard.section_switch.value == "health"
    assert dashboard.section_switch in dashboard.controls and not dashboard.section_switch.disabled


def test_a_failed_health_refresh_reads_like_the_usage_one(dashboards):
    failing = {"on": False}

    def health(db, viewer, selection, **kwargs):
        if failing["on"]:
            raise RuntimeError("the database went away")
        return compute_health(db, viewer, selection, **kwargs)

    dashboard = dashboards(section="health", compute_health=health, refresh="1m")
    shown = dashboard.health_section.tile_texts()
    failing["on"] = True
    dashboard.ticker._on_message(dashboard.ticker, {"tick": True}, [])  # auto: figures kept
    assert dashboard.health_section.tile_texts() == shown and "Could not refresh." in dashboard.error_box.value
    dashboard.select(span="1d")  # by hand: no stale figures
    assert dashboard.health is None and "Could not load health." in dashboard.error_box.value
    assert set(dashboard.health_section.tile_texts().values()) == {formatting.PLACEHOLDER}
    assert "aq-failed" in dashboard.widget._dom_classes
    failing["on"] = False
    dashboard.section_switch.value = "usage"
    assert dashboard.error is None and dashboard.usage.window.span == "1d" and dashboard.error_box.value == ""


def _hostile(health):
    """The demo's health with its busiest model renamed, and one token near its limit."""
    first = health.failures_by_model["model"].iloc[0]
    by_model = health.failures_by_model.replace({"model": {first: HOSTILE}})
    latency = health.latency_by_model.replace({"model": {first: HOSTILE}})
    headroom = None
    if health.headroom is not None and len(health.headroom):
        headroom = health.headroom.copy()
        headroom["name"] = headroom["name"].astype(object)
        headroom.loc[headroom.index[-1], ["name", "requests_limit", "peak_share"]] = [HOSTILE, 2, 0.9]
        headroom["requests_limit"] = headroom["requests_limit"].astype("Int64")
    return dataclasses.replace(health, failures_by_model=by_model, latency_by_model=latency, headroom=headroom)


def test_names_from_the_data_are_shown_literally_and_near_limit_tokens_first(dashboards):
    dashboard = dashboards(DEMO_ADMIN_EMAIL, section="health", compute_health=Counted(compute_health, _hostile))
    section = dashboard.health_section
    assert section.model_rows()[0]["Model"] == HOSTILE
    assert "<img" not in section.models_table.value and "&lt;img" in section.models_table.value
    rows = section.headroom_rows()
    assert rows[0]["Token"].startswith(HOSTILE) and rows[0]["Share of limit"] == "90.0%"
    assert rows[0]["Requests / min"].endswith("of 2")
    assert "<img" not in section.headroom_table.value + section.near_limit.value
    near = [row for row in rows if row["Share of limit"] != "—" and float(row["Share of limit"].rstrip("%")) >= 80]
    assert section.headroom_table.value.count('class="aq-near"') == len(near) >= 1
    assert HOSTILE + " (90.0%)" in html.unescape(section.near_limit.value)


# -- the failure-rate line (issue 15 item 2) ---------------------------------------------

NINE, ELEVEN = 21, 23  # the buckets' indexes


@pytest.fixture(scope="module")
def failing_hours(tmp_path_factory):
    """The module docstring's tiny gateway, and root's health of its last day."""
    g = GatewayBuilder(sqlite_url(tmp_path_factory.mktemp("failing-hours") / "gateway.sqlite3"))
    root = g.token(g.user("root", role="admin", org=g.org("Acme")), "root-key")
    g.request(root, NOW - timedelta(hours=3), status=200, count=2)
    g.request(root, NOW - timedelta(hours=3), status=500)
    g.request(root, NOW - timedelta(hours=1), status=200)
    g.request(root, NOW - timedelta(hours=1), status=None)
    g.close()
    return Settings(db_url=g.url, viewer="root").compute_health(Selection(now=NOW, span="1d"))


def test_the_failure_rate_per_bucket_is_failed_over_all_requests_and_none_without_requests(failing_hours):
    frame = failing_hours.failures_over_time
    assert len(frame) == 25 and frame["bucket"].iloc[NINE].hour == 9 and frame["bucket"].iloc[ELEVEN].hour == 11
    rates = frame["failure_rate"].tolist()
    assert rates[NINE] == pytest.approx(1 / 3) and rates[ELEVEN] == 0.0
    assert all(math.isnan(rate) for index, rate in enumerate(rates) if index not in (NINE, ELEVEN))


def test_the_failures_chart_draws_the_failure_rate_as_a_line_on_a_percent_axis(failing_hours):
    section = HealthSection()
    section.show(failing_hours, "admin")
    chart = section.failures_chart
    # A dot on each bucket with requests, none on the empty ones.
    assert chart.rate_dots.x.tolist() == [NINE, ELEVEN]
    assert chart.rate_dots.y.tolist() == pytest.approx([1 / 3, 0.0])
    # The line: every bucket, the empty ones NaN (a gap, not 0%).
    assert chart.rate_line.x.tolist() == list(range(25))
    line = chart.rate_line.y
    assert line[NINE] == pytest.approx(1 / 3) and line[ELEVEN] == 0.0
    assert np.isnan(np.delete(line, [NINE, ELEVEN])).all()
    # Its own axis, at the right, in percent: 33.3% under the top tick of 40%.
    assert chart.rate_line.scales["y"] is chart.rate_dots.scales["y"] is chart.rate_axis.scale
    assert chart.rate_axis.side == "right" and chart.rate_axis in chart.figure.axes
    assert chart.rate_axis.tick_values.tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert chart.rate_axis.tick_format == ".0~%" and chart.rate_axis.scale.max == pytest.approx(0.4)
    assert {chart.rate_line, chart.rate_dots} <= set(chart.figure.marks)
    assert "Failure rate (right axis)" in chart.legend.value
    # The bars are the failures stacked by kind, as before: 5xx holds the one at 09:00.
    assert chart.names == list(FAILURE_KINDS) and chart.values[2][NINE] == 1.0 and chart.values.sum() == 1.0

    section.clear()
    assert chart.rate_line.y.size == chart.rate_dots.y.size == 0
