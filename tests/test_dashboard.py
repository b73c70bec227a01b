"""The dashboard's widgets, in-process (no browser): they show exactly the core's figures,
refresh safely, fail readably, sort, drill down, and never show more than the viewer may see.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

import numpy as np
import pytest

from tests.support.dashboard import DEMO_NOW
from tests.support.gateway import GatewayBuilder, build_tiny_org
from usage_lib.render import formatting
from usage_lib.cli import main as cli_main
from usage_lib.render.labels import TILES
from usage_lib.serving.page import page_from_env
from usage_lib.settings import Settings
from usage_lib.ui.dashboard import Dashboard
from usage_lib.demo import DEMO_ADMIN_EMAIL, DEMO_ORG_ADMIN_EMAIL, DEMO_USER_EMAIL
from usage_lib.errors import UsageError
from usage_lib.core.usage import Selection, compute_usage
from usage_lib.ui.table import ASCENDING, DESCENDING, EMPTY_TEXT

ACME, GLOBEX, UMBRELLA = 1, 2, 4
PIPELINE_PROD = 20  # Globex's busiest token (service account ml-pipeline)


@pytest.fixture
def open_dashboard(refreshed_dashboards):
    """Factory: a refreshed Dashboard for `viewer` (closed after the test)."""

    def make(viewer: str, selection: Selection | None = None, **kwargs) -> Dashboard:
        if selection is not None:
            selection = replace(selection, tz="UTC", now=DEMO_NOW)
        return refreshed_dashboards(viewer, selection, **kwargs)

    return make


def report_json(capsys, gateway, viewer: str, *, org=None, span="1d", token=None, top=100) -> dict:
    """What `usage-dashboard report --format json` prints for the same view."""
    argv = ["report", "--db", gateway.url, "--router-config", str(gateway.router_config), "--viewer", viewer,
            "--span", span, "--top", str(top), "--now", DEMO_NOW.isoformat(), "--format", "json"]
    if org is not None:
        argv += ["--org", str(org)]
    if token is not None:
        argv += ["--token", str(token)]
    capsys.readouterr()
    assert cli_main(argv) == 0
    return json.loads(capsys.readouterr().out)


def expected_tiles(metrics: dict, cost: dict) -> dict[str, str]:
    """The eight tiles' texts: the gateway's seven and the cost (`CostSummary.as_dict()`)."""
    tiles = {label: fmt(metrics[key]) for key, label, fmt in TILES}
    tiles["Cost"] = formatting.money(Decimal(cost["total"]), cost["currency"])
    return tiles


def expected_rows(report: dict) -> list[dict[str, str]]:
    kind = report["top"]["kind"]
    rows = []
    for row in report["top"]["rows"]:
        name = (row.get("service_account") or row["name"]) if kind == "token" else row["name"]
        texts = {
            "rank": str(row["rank"]),
            "name": formatting.name(name),
            "requests": f"{row['requests']:,}",
            "input_tokens": f"{row['input_tokens']:,}",
            "output_tokens": f"{row['output_tokens']:,}",
            "total_tokens": f"{row['total_tokens']:,}",
            "cost": formatting.money(Decimal(row["cost"]), report["cost"]["currency"]),
            "change": "new" if row["new"] else formatting.change(row["change"]),
        }
        if kind == "token":
            texts["owner_email"] = formatting.name(row["owner_email"])
            texts["service_account"] = formatting.name(row["service_account"])
        rows.append(texts)
    return rows


VIEWS = [
    pytest.param(DEMO_ADMIN_EMAIL, dict(), id="admin-default"),
    pytest.param(DEMO_ADMIN_EMAIL, dict(org="all", span="1w"), id="admin-all-1w"),
    pytest.param(DEMO_ADMIN_EMAIL, dict(org=GLOBEX, token=PIPELINE_PROD, span="1w"), id="admin-token"),
    pytest.param(DEMO_ADMIN_EMAIL, dict(org="all", token=PIPELINE_PROD, span="1d"), id="admin-all-with-token"),
    pytest.param(DEMO_ORG_ADMIN_EMAIL, dict(span="1h"), id="org-admin-1h"),
    pytest.param(DEMO_USER_EMAIL, dict(span="1w", top=10), id="user-1w-top10"),
]


@pytest.mark.parametrize("viewer, view", VIEWS)
def test_tiles_and_table_equal_the_report(open_dashboard, demo_gateway, capsys, viewer, view):
    dashboard = open_dashboard(viewer, Selection(**view))
    report = report_json(capsys, demo_gateway, viewer, **view)
    assert dashboard.error is None
    assert dashboard.usage.to_json() == {key: value for key, value in report.items() if key != "health"}
    assert dashboard.tile_texts() == expected_tiles(report["metrics"], report["cost"])
    assert dashboard.table.kind == report["top"]["kind"]
    assert dashboard.table.displayed() == expected_rows(report)
    titles = [button.description.rstrip(" " + ASCENDING + DESCENDING) for button in dashboard.table.header_buttons.values()]
    name_heading = {"org": "Organization", "token": "API Key", "user_id": "User ID"}[report["top"]["kind"]]
    assert titles[:2] == ["#", name_heading]
    assert titles[2:8] == ["Requests", "Input Tokens", "Output Tokens", "Total Tokens", "Cost", "Change"]
    if report["top"]["kind"] == "token":
        assert titles[8:] == ["Token Owner", "Service Account"]


def test_tiles_format_thousands_and_milliseconds(open_dashboard):
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1w"))
    metrics = dashboard.usage.metrics
    tiles = dashboard.tile_texts()
    assert tiles["Total Requests"] == f"{metrics.total_requests:,}" and "," in tiles["Total Requests"]
    assert tiles["Avg Resp Time (Completion)"] == f"{metrics.avg_response_ms_completion:,.1f} ms"
    assert tiles["Avg Resp Time (Embedding)"].endswith(" ms")
    assert tiles["Total Tokens"] == f"{metrics.input_tokens + metrics.output_tokens:,}"


def test_charts_show_the_frames(open_dashboard):
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1d"))
    usage = dashboard.usage
    chart = dashboard.timeseries_chart
    assert list(chart.bars.y) == [float(n) for n in usage.timeseries["requests"]]
    assert chart.bars.y.dtype == np.float64
    assert len(chart.bars.x) == len(usage.timeseries) == 25
    # Bar i at i, labelled with its bucket's start on the zone's wall clock.
    assert list(chart.bars.x) == list(range(25))
    assert chart.labels == [moment.strftime("%H:%M") for moment in usage.timeseries["bucket"]]
    assert chart.x_axis.tick_labels == {str(i): label for i, label in enumerate(chart.labels)}
    # Half a bucket of room on both sides, so neither end bar is clipped.
    assert (chart.x_scale.min, chart.x_scale.max) == (-0.5, 24.5)
    assert chart.y_scale.max >= chart.bars.y.max()
    assert chart.tip.html_for(0).count("requests") == 1

    models = dashboard.models_chart
    names = list(usage.models["model"])
    assert list(models.model_scale.domain) == names[::-1]  # bottom-up: the busiest on top
    assert list(models.bars.x) == names
    assert "gemini-1.5-pro" in names  # configured, never used: shown with 0
    assert list(models.bars.y) == [float(n) for n in usage.models["requests"]]
    assert models.figure.layout.height == f"{models.height_for(len(names))}px"
    assert models.height_for(20) > models.height_for(len(names))

    dashboard.select(span="1h")
    assert len(chart.bars.x) == 61
    dashboard.select(span="1w")
    assert len(chart.bars.x) == 8
    assert list(models.model_scale.domain) == list(dashboard.usage.models["model"])[::-1]


def test_charts_send_big_counts_as_floats(open_dashboard):
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL)
    import pandas as pd

    frame = pd.DataFrame({"model": ["a", "b"], "requests": pd.Series([3_000_000_000, 0], dtype="int64")})
    dashboard.models_chart.update(frame)
    assert dashboard.models_chart.bars.y.dtype == np.float64
    assert dashboard.models_chart.bars.y[0] == 3e9


def test_refresh_disables_controls_and_shows_loading(dashboard_config):
    seen = {}
    holder: dict[str, Dashboard] = {}

    def compute(*args, **kwargs):
        dashboard = holder["d"]
        seen["disabled"] = [control.disabled for control in dashboard.controls]
        seen["loading"] = "aq-loading" in dashboard.widget._dom_classes
        # A second click while the first refresh runs changes nothing.
        calls.append(1)
        dashboard.select(span="1h")
        return compute_usage(*args, **kwargs)

    calls: list[int] = []
    dashboard = Dashboard(dashboard_config(DEMO_ADMIN_EMAIL), compute=compute)
    holder["d"] = dashboard
    try:
        dashboard.refresh()
        assert seen == {"disabled": [True] * len(dashboard.controls), "loading": True}
        assert calls == [1]
        assert dashboard.usage.window.span == "1d"
        assert not any(control.disabled for control in dashboard.controls)
        assert "aq-loading" not in dashboard.widget._dom_classes
    finally:
        dashboard.close()


def test_a_click_on_a_replaced_row_is_ignored(open_dashboard):
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all"))
    old_targets = dashboard.table.targets
    dashboard.select(span="1w")  # the table is rebuilt
    assert dashboard.table.targets is not old_targets and old_targets.comm is None  # closed
    old_targets.value = 0  # e.g. a click queued while the table was replaced
    assert dashboard.table.kind == "org"
    assert dashboard.usage.scope.org is None
    dashboard.table.sort_by("name")  # sorting replaces the targets too
    assert dashboard.table.targets.comm is not None


def test_errors_are_one_readable_line_and_no_stale_figures(open_dashboard, dashboard_config):
    state = {"fail": False}

    def compute(*args, **kwargs):
        if state["fail"]:
            raise RuntimeError("the database went away\nFile ...; line 12 in connect")
        return compute_usage(*args, **kwargs)

    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, compute=compute)
    assert dashboard.tile_texts()["Total Requests"] != formatting.PLACEHOLDER
    state["fail"] = True
    dashboard.select(span="1w")
    assert dashboard.usage is None
    assert "unexpected error: RuntimeError: the database went away" in dashboard.error_box.value
    assert "Traceback" not in dashboard.error_box.value and "line 12" not in dashboard.error_box.value
    assert set(dashboard.tile_texts().values()) == {formatting.PLACEHOLDER}
    assert dashboard.table.rows == [] and len(dashboard.timeseries_chart.bars.y) == 0
    assert "aq-failed" in dashboard.widget._dom_classes
    assert not any(control.disabled for control in dashboard.controls)
    state["fail"] = False
    dashboard.retry_button.click()
    assert dashboard.error is None and dashboard.error_box.value == ""
    assert "aq-failed" not in dashboard.widget._dom_classes
    assert dashboard.usage.window.span == "1w"


def test_unknown_viewer_and_bad_configuration_show_a_message(dashboard_config):
    dashboard = Dashboard(dashboard_config("nobody@example.org"))
    try:
        dashboard.refresh()
        assert "unknown viewer 'nobody@example.org'" in dashboard.error
    finally:
        dashboard.close()
    page = page_from_env({"AQUEDUCT_DB_URL": "sqlite:////nonexistent/gateway.sqlite3", "AQUEDUCT_NOW": "noon"})
    assert "AQUEDUCT_NOW" in page.problem and "AQUEDUCT_VIEWER" in page.problem
    dashboard = Dashboard(page.settings, viewer=page.viewer, problem=page.problem)
    dashboard.refresh()
    assert "AQUEDUCT_NOW is not an ISO 8601 time" in dashboard.error
    dashboard = Dashboard(replace(page.settings, problems=()), viewer=DEMO_ADMIN_EMAIL)
    dashboard.refresh()
    assert dashboard.error == "database file not found: /nonexistent/gateway.sqlite3"


def test_configuration_from_the_environment(demo_gateway):
    env = {
        "AQUEDUCT_DB_URL": str(demo_gateway.path),
        "AQUEDUCT_ROUTER_CONFIG": str(demo_gateway.router_config),
        "AQUEDUCT_VIEWER": DEMO_USER_EMAIL,
        "AQUEDUCT_TZ": "Europe/Vienna",
        "AQUEDUCT_NOW": "2026-11-24T13:00:00+01:00",
        "QUERY_STRING": "org=all&span=1w&top=25&viewer=root",
    }
    page = page_from_env(env)
    settings = page.settings
    assert settings.db_url == demo_gateway.url
    assert settings.router_config == demo_gateway.router_config
    assert page.viewer == DEMO_USER_EMAIL and not settings.demo and page.problem is None
    assert settings.view.tz == "Europe/Vienna" and settings.view.now == DEMO_NOW
    assert (page.selection.org, page.selection.span, page.selection.top) == ("all", "1w", "25")

    demo = Settings.from_env({})
    assert demo.demo and demo.viewer == DEMO_ADMIN_EMAIL
    assert demo.db_url.endswith("demo/demo.sqlite3") and demo.router_config.name == "demo-router.yaml"
    assert page_from_env({"AQUEDUCT_DB_URL": demo_gateway.url}).viewer is None


def test_settings_survive_the_environment(demo_gateway):
    """What `serve` and capture hand to Voila's kernels is what the page reads back."""
    settings = Settings(db_url=demo_gateway.url, router_config=demo_gateway.router_config, identity="header",
                        identity_header="X-Auth-User", view=Selection(tz="Europe/Vienna", now=DEMO_NOW))
    env = settings.to_env({"AQUEDUCT_VIEWER": "stale@example.org", "AQUEDUCT_DEMO": "1", "PATH": "/bin"})
    assert env["PATH"] == "/bin" and "AQUEDUCT_VIEWER" not in env and "AQUEDUCT_DEMO" not in env
    assert Settings.from_env(env) == settings


def test_only_a_page_served_by_voila_follows_the_address(demo_gateway):
    env = {"AQUEDUCT_DB_URL": demo_gateway.url, "AQUEDUCT_VIEWER": DEMO_USER_EMAIL}
    assert not page_from_env(env).follow_address  # JupyterLab's address is its own
    assert page_from_env({**env, "VOILA_BASE_URL": "/"}).follow_address


def test_sorting_keeps_the_rank_by_requests(open_dashboard):
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org=ACME, span="1w"))
    table = dashboard.table
    by_rank = {row["rank"]: row for row in table.displayed()}
    assert [row["rank"] for row in table.displayed()] == [str(i) for i in range(1, len(by_rank) + 1)]
    assert table.header_buttons["rank"].description == f"# {ASCENDING}"

    table.header_buttons["name"].click()
    names = [row["name"] for row in table.displayed()]
    assert names == sorted(names, key=str.casefold)
    assert table.header_buttons["name"].description == f"API Key {ASCENDING}"
    assert table.header_buttons["rank"].description == "#"
    for row in table.displayed():  # every row keeps its own rank
        assert by_rank[row["rank"]] == row

    table.header_buttons["name"].click()
    assert [row["name"] for row in table.displayed()] == sorted(names, key=str.casefold, reverse=True)
    assert table.header_buttons["name"].description == f"API Key {DESCENDING}"

    table.header_buttons["total_tokens"].click()
    totals = [int(row["total_tokens"].replace(",", "")) for row in table.displayed()]
    assert totals == sorted(totals)
    table.header_buttons["service_account"].click()
    accounts = [row["service_account"] for row in table.displayed()]
    assert accounts[-1] == formatting.NA  # missing values last
    present = [a for a in accounts if a != formatting.NA]
    assert present == sorted(present, key=str.casefold)

    # The sort survives a refresh; the grid's children follow the display order.
    table.header_buttons["requests"].click()
    dashboard.select(span="1d")
    requests = [int(row["requests"].replace(",", "")) for row in table.displayed()]
    assert requests == sorted(requests)
    first = table.displayed()[0]["name"]
    assert table.body.value.index(first) < table.body.value.index(table.displayed()[-1]["name"])


def test_drill_down_org_token_user_id_and_back(open_dashboard):
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1w"))
    table = dashboard.table
    assert table.kind == "org"
    assert dashboard.all_orgs_button.layout.display == "none"

    names = [row["name"] for row in table.displayed()]
    table.click(names.index("Globex Labs"))
    assert table.kind == "token" and dashboard.usage.scope.org.id == GLOBEX
    assert dashboard.org_dropdown.value == GLOBEX
    assert dashboard.all_orgs_button.layout.display is None
    assert dashboard.all_tokens_button.layout.display == "none"

    names = [row["name"] for row in table.displayed()]
    table.click(names.index("ml-pipeline"))
    assert table.kind == "user_id"
    assert dashboard.usage.scope.token.id == PIPELINE_PROD
    assert "ml-pipeline" in dashboard.title.value and "Service Account" in dashboard.title.value
    assert table.targets is None  # user_ids do not drill further
    assert dashboard.all_tokens_button.layout.display is None

    dashboard.all_tokens_button.click()
    assert table.kind == "token" and dashboard.usage.scope.token is None
    assert dashboard.usage.scope.org.id == GLOBEX
    dashboard.all_orgs_button.click()
    assert table.kind == "org" and dashboard.usage.scope.org is None
    assert dashboard.org_dropdown.value == "all"


def test_the_address_names_the_view_shown(open_dashboard):
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1w"))
    assert dashboard.address.query == "org=all&span=1w&top=100"
    dashboard.select(org=GLOBEX, token=PIPELINE_PROD)
    assert dashboard.address.query == f"org={GLOBEX}&span=1w&token={PIPELINE_PROD}&top=100"
    dashboard.top_toggle.value = 10
    assert dashboard.address.query == f"org={GLOBEX}&span=1w&token={PIPELINE_PROD}&top=10"
    dashboard.all_tokens_button.click()
    assert dashboard.address.query == f"org={GLOBEX}&span=1w&top=10"


def test_the_address_names_the_fallback_not_the_forged_request(open_dashboard):
    dashboard = open_dashboard(DEMO_USER_EMAIL, Selection(org=GLOBEX, token=PIPELINE_PROD, span="1h"))
    assert dashboard.address.query == f"org={ACME}&span=1h&top=100"


def test_the_address_bar_stays_out_of_snapshots(open_dashboard):
    from ipywidgets.embed import dependency_state

    dashboard = open_dashboard(DEMO_ADMIN_EMAIL)
    assert dashboard.address.layout.display == "none"
    # Snapshots embed the state `dependency_state` collects from `dashboard.widget`.
    embedded = dependency_state([dashboard.widget], drop_defaults=True)
    assert dashboard.table.body.model_id in embedded
    assert dashboard.address.model_id not in embedded


def test_static_widgets_share_one_untouched_layout(open_dashboard):
    from ipywidgets import Layout
    from ipywidgets.embed import dependency_state

    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1w"))
    dashboard.table.click([row["name"] for row in dashboard.table.displayed()].index("Globex Labs"))
    dashboard.all_orgs_button.click()
    dashboard.select(span="1h")
    # Fewer models for the browser to build: one Layout for every widget whose layout never changes ...
    layouts = [m for m in dependency_state([dashboard.widget]).values() if m["model_name"] == "LayoutModel"]
    assert len(layouts) < 25, len(layouts)
    # ... and nothing ever sets one on it (it would move every widget sharing it).
    assert dashboard._plain_layout.get_state() == Layout().get_state()
    assert dashboard.tiles["total_requests"].layout is dashboard.metrics_bar.layout is dashboard._plain_layout


def test_org_rows_without_an_org_do_not_open(open_dashboard):
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1w"))
    rows = dashboard.table.displayed_rows()
    na = [position for position, row in enumerate(rows) if row.texts["name"] == formatting.NA]
    assert na, "the demo has a token whose owner has no profile"
    assert not rows[na[0]].can_open
    dashboard.table.click(na[0])
    assert dashboard.usage.scope.org is None and dashboard.table.kind == "org"
    assert f"label:nth-of-type({na[0] + 1})" in dashboard.table.body.value  # no click target there


def test_a_user_can_open_only_their_own_and_their_teams_tokens(open_dashboard):
    dashboard = open_dashboard(DEMO_USER_EMAIL, Selection(span="1w"))
    rows = dashboard.table.displayed_rows()
    opens = {row.texts["name"]: row.can_open for row in rows}
    assert opens["dave-laptop"] and opens["platform-ci"] and opens["research-batch"]
    assert not opens["ds-notebooks"]  # seen through user_id == his email only
    dashboard.table.click(list(opens).index("ds-notebooks"))
    assert dashboard.usage.scope.token is None and dashboard.table.kind == "token"
    dashboard.table.click(list(opens).index("dave-laptop"))
    assert dashboard.usage.scope.token.name == "dave-laptop" and dashboard.table.kind == "user_id"
    assert dashboard.org_control.children == (dashboard.org_label,)
    assert "Acme Research" in dashboard.org_label.value


def test_service_account_tokens_show_their_account_with_a_badge(open_dashboard):
    dashboard = open_dashboard(DEMO_ORG_ADMIN_EMAIL, Selection(span="1w"))
    body = dashboard.table.body.value
    rows = body.split('<div class="aq-tr aq-row')[1:]
    assert len(rows) == len(dashboard.table.displayed_rows())
    for row, cells in zip(dashboard.table.displayed_rows(), rows):
        assert html.escape(row.texts["name"]) in cells
        if row.is_service_account:
            assert row.texts["name"] == row.values["service_account"]
            assert '<span class="aq-badge">Service Account</span>' in cells
        else:
            assert "aq-badge" not in cells


@pytest.mark.parametrize(
    "viewer, forged",
    [(DEMO_ORG_ADMIN_EMAIL, GLOBEX), (DEMO_ORG_ADMIN_EMAIL, "all"), (DEMO_USER_EMAIL, "all"), (DEMO_USER_EMAIL, "Globex Labs")],
)
def test_a_forged_org_shows_the_fallback(open_dashboard, viewer, forged):
    dashboard = open_dashboard(viewer, Selection(org=forged))
    assert dashboard.usage.scope.org.id == ACME
    assert dashboard.selection.org == ACME
    assert "Acme Research" in dashboard.org_label.value
    assert "showing Acme Research" in dashboard.notice_box.value
    dashboard.select(org=GLOBEX)
    assert dashboard.usage.scope.org.id == ACME


def test_admin_org_choice_and_unknown_org(open_dashboard):
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL)
    assert dashboard.usage.scope.org.id == ACME  # an admin's default is their own org
    labels = [label for label, _ in dashboard.org_dropdown.options]
    assert labels == ["All", "Acme Research", "Globex Labs", "Initech", "Umbrella Partners"]
    dashboard.org_dropdown.value = GLOBEX  # as the browser would
    assert dashboard.usage.scope.org.id == GLOBEX
    dashboard.select(org=999)
    assert dashboard.usage.scope.org.id == ACME and dashboard.org_dropdown.value == ACME
    assert "unknown org 999" in dashboard.notice_box.value


def test_empty_table_says_so(open_dashboard):
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org=UMBRELLA))
    assert dashboard.table.displayed() == []
    assert EMPTY_TEXT in dashboard.table.body.value and dashboard.table.targets is None
    assert dashboard.tile_texts()["Total Requests"] == "0"
    assert dashboard.tile_texts()["Avg Resp Time (Completion)"] == "0.0 ms"
    assert set(dashboard.models_chart.bars.y) == {0.0}


def test_top_k_choice(open_dashboard):
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org=GLOBEX, token=PIPELINE_PROD, span="1w"))
    assert len(dashboard.table.displayed()) == 100
    dashboard.top_toggle.value = 10
    assert len(dashboard.table.displayed()) == 10 and dashboard.usage.top_k == 10
    dashboard.top_toggle.value = 25
    assert len(dashboard.table.displayed()) == 25


def test_a_hundred_rows_render_quickly(open_dashboard):
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org=GLOBEX, token=PIPELINE_PROD, span="1w"))
    usage = dashboard.usage
    assert len(usage.top) == 100
    started = time.perf_counter()
    dashboard.table.show(usage.top, usage.top_kind)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.3, f"100 rows took {elapsed:.3f} s"
    assert dashboard.timings["total_s"] < 2.0


def test_no_user_id_column_is_noticed(tmp_path):
    builder = GatewayBuilder(f"sqlite:///{tmp_path / 'old.sqlite3'}", user_id_column=False)
    tiny = build_tiny_org(builder)
    builder.close()
    settings = Settings(db_url=tiny.url, viewer="root@example.org", view=Selection(now=datetime(2026, 11, 24, 12, tzinfo=timezone.utc)))
    dashboard = Dashboard(settings)
    try:
        dashboard.refresh()
        assert dashboard.error is None
        assert "no user_id column" in dashboard.notice_box.value
        assert dashboard.tile_texts()["Total Requests"] == f"{dashboard.usage.metrics.total_requests:,}"
    finally:
        dashboard.close()


def test_dashboard_on_both_backends(gateway_db):
    tiny = build_tiny_org(gateway_db())
    settings = Settings(db_url=tiny.url, viewer="olga@example.org", view=Selection(now=datetime(2026, 11, 24, 12, tzinfo=timezone.utc)))
    dashboard = Dashboard(settings)
    try:
        dashboard.refresh()
        assert dashboard.error is None
        # Acme's tokens and the cross-org service account: 1 + 2+64+512+1024 + 4
        assert dashboard.tile_texts()["Total Requests"] == "1,607"
        assert dashboard.table.kind == "token"
    finally:
        dashboard.close()


def test_serve_checks_its_settings_before_starting(demo_gateway, tmp_path):
    from usage_lib.serving.voila_process import CONFIG_DIR, voila_command

    settings = Settings(db_url=demo_gateway.url, router_config=demo_gateway.router_config,
                        viewer=DEMO_USER_EMAIL, view=Selection(tz="Europe/Vienna"))
    settings.check()
    command = voila_command("127.0.0.1", 8866)
    assert f"--Voila.config_file_paths={CONFIG_DIR}" in command and (CONFIG_DIR / "voila.py").is_file()
    assert "--Voila.port=8866" in command and "--Voila.ip=127.0.0.1" in command

    with pytest.raises(UsageError, match="who is looking"):
        replace(settings, viewer=None).check()
    with pytest.raises(UsageError, match="unknown time zone"):
        replace(settings, view=Selection(tz="Mars/Olympus")).check()
    with pytest.raises(UsageError, match="database file not found"):
        replace(settings, db_url=f"sqlite:///{tmp_path / 'missing.sqlite3'}").check()
    with pytest.raises(UsageError, match="unknown viewer 'carl@acme.example'"):
        replace(settings, viewer="carl@acme.example").check()


def shown_ticks(chart) -> list[str]:
    """The time axis's tick texts, left to right (each tick's label from `tick_labels`)."""
    return [chart.x_axis.tick_labels[str(int(tick))] for tick in chart.x_axis.tick_values]


def bar_label(chart, index: int) -> str:
    """The axis label at bar `index`'s position."""
    return chart.x_axis.tick_labels[str(int(chart.bars.x[index]))]


def test_time_axis_in_a_zone_across_the_autumn_dst_change(open_dashboard, dashboard_config):
    # 2026-10-25 in Vienna: 02:00-03:00 happens twice; the 1d window holds 25 hourly buckets.
    from zoneinfo import ZoneInfo

    vienna = ZoneInfo("Europe/Vienna")
    now = datetime(2026, 10, 25, 12, 0, tzinfo=timezone.utc)
    config = dashboard_config(DEMO_ADMIN_EMAIL)
    config = replace(config, view=replace(config.view, tz="Europe/Vienna", now=now))
    dashboard = Dashboard(config, Selection(org="all", span="1d"))
    try:
        dashboard.refresh()
        chart = dashboard.timeseries_chart
        starts = list(dashboard.usage.timeseries["bucket"])
        assert len(chart.bars.x) == len(starts) == 25
        steps = np.diff(chart.bars.x)
        assert (steps > 0).all()  # no two bars at one place, in order
        # Every bar sits at its own wall-clock label, before the change too (the bars before
        # it were once shifted an hour: 01:00 CEST stood at 00:00).
        assert [bar_label(chart, i) for i in range(25)] == [s.astimezone(vienna).strftime("%H:%M") for s in starts]
        first_0100 = next(i for i, s in enumerate(starts) if s == datetime(2026, 10, 24, 23, tzinfo=timezone.utc))
        assert bar_label(chart, first_0100) == "01:00" and bar_label(chart, first_0100 - 1) == "00:00"
        assert [bar_label(chart, first_0100 + k) for k in (1, 2, 3)] == ["02:00", "02:00", "03:00"]
        assert bar_label(chart, 0) == "14:00" and bar_label(chart, 24) == "13:00"
        assert shown_ticks(chart) == ["15:00", "18:00", "21:00", "00:00", "03:00", "06:00", "09:00", "12:00"]
        labels = [title for title, _ in chart.tip.rows]
        assert labels.count("2026-10-25 02:00") == 2
        # The tooltips tell the two 02:00 apart; no other bar needs it.
        assert "CEST, UTC+02:00" in chart.tip.html_for(first_0100 + 1)
        assert "CET, UTC+01:00" in chart.tip.html_for(first_0100 + 2)
        assert "UTC+" not in chart.tip.html_for(first_0100)
        assert "(Europe/Vienna)" in dashboard.as_of.value
    finally:
        dashboard.close()


@pytest.mark.parametrize("span, now, count, repeated", [
    # The hour after 02:30 CEST on 2026-10-25: 02:30..02:59 CEST, then 02:00..02:30 CET.
    pytest.param("1h", datetime(2026, 10, 25, 1, 30, tzinfo=timezone.utc), 61, ["02:30"], id="1h-autumn"),
    # 2026-03-29: 02:00-03:00 never happens; from 12:00 CET the day before to 13:00 CEST, 01:00
    # is followed by 03:00 (24 hours of real time, 25 buckets with the one holding now).
    pytest.param("1d", datetime(2026, 3, 29, 11, 0, tzinfo=timezone.utc), 25, [], id="1d-spring"),
])
def test_time_axis_labels_are_the_wall_clock_on_dst_days(span, now, count, repeated):
    from zoneinfo import ZoneInfo

    import pandas as pd

    from usage_lib.core.spans import window
    from usage_lib.ui.charts import TimeseriesChart

    vienna = ZoneInfo("Europe/Vienna")
    win = window(span, now, vienna)
    frame = pd.DataFrame({"bucket": list(win.starts), "requests": np.arange(len(win.starts), dtype="int64")})
    chart = TimeseriesChart()
    chart.update(frame, span, win, "Europe/Vienna")
    assert len(chart.bars.x) == count and (np.diff(chart.bars.x) == 1).all()
    wall = [s.astimezone(vienna).strftime("%H:%M") for s in win.starts]
    assert [bar_label(chart, i) for i in range(count)] == wall
    days = [s.astimezone(vienna).strftime("%Y-%m-%d %H:%M") for s in win.starts]
    assert sorted({day[-5:] for day in days if days.count(day) > 1}) == repeated  # the wall clock repeats
    if span == "1d":  # spring: the skipped hour has no bar, 01:00 and 03:00 stand side by side
        assert "02:00" not in wall and wall[wall.index("01:00") + 1] == "03:00"
    assert all(label.endswith(":00") or label.endswith("0") for label in shown_ticks(chart))


# -- issue 12 items 11-13: history steps, closed rows explained, chart axes ------------------


@pytest.mark.parametrize("value", [0, 1, 2, 3, 7, 10, 99, 100, 662, 1000, 1001, 1205, 1940, 1995, 3000, 12_345, 30_000, 2_500_000])
def test_value_axes_end_just_above_the_largest_bar(value):
    from usage_lib.ui.charts import nice_ticks

    ticks = nice_ticks(value)
    steps = np.diff(ticks)
    assert ticks[0] == 0 and ticks[-1] > value
    assert np.allclose(steps, steps[0]) and float(steps[0]).is_integer()  # round, whole-number steps
    if value >= 3:
        assert 3 <= len(steps) <= 5
        assert (ticks[-1] - value) / ticks[-1] <= 0.25  # at most a quarter of the axis empty
    assert nice_ticks(662)[-1] <= 800 and nice_ticks(1995)[-1] == 2000


def test_the_models_axis_ends_just_above_the_longest_bar(open_dashboard):
    for view in (Selection(org="all", span="1w"), Selection(span="1w"), Selection(span="1d"), Selection(span="1h")):
        dashboard = open_dashboard(DEMO_ADMIN_EMAIL, view)
        chart = dashboard.models_chart
        longest = max(chart.bars.y)
        end = chart.count_scale.max
        assert end == chart.count_axis.tick_values[-1] and end > longest
        assert (end - longest) / end < 0.25, (view, longest, end)
        assert chart.bars.apply_clip is False  # the longest bar's label may stand in the margin


def test_the_charts_axes_have_titles(open_dashboard):
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(span="1w"))
    assert dashboard.timeseries_chart.y_axis.label == "Requests"
    assert dashboard.models_chart.count_axis.label == "Requests"
    assert dashboard.timeseries_chart.x_axis.label == "Day (UTC) \u00b7 pale bars: partial days"
    dashboard.select(span="1h")
    assert dashboard.timeseries_chart.x_axis.label.startswith("Minute (UTC)")


def test_partial_first_and_last_buckets_are_pale_labelled_and_explained(open_dashboard):
    from usage_lib.ui.charts import PARTIAL, PRIMARY

    # DEMO_NOW is Tuesday noon: the 1w window starts Tuesday a week ago at noon.
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1w"))
    chart = dashboard.timeseries_chart
    assert len(chart.bars.x) == 8
    assert list(chart.bars.colors) == [PARTIAL] + [PRIMARY] * 6 + [PARTIAL]
    assert "partial day: from Tue 12:00" in chart.tip.html_for(0)
    assert "partial day: up to Tue 12:00" in chart.tip.html_for(7)
    assert "partial" not in chart.tip.html_for(3)
    # The first day has a tick label, the newest too, and no two labelled days touch.
    ticks = [int(np.flatnonzero(chart.bars.x == tick)[0]) for tick in chart.x_axis.tick_values]
    assert ticks[0] == 0 and ticks[-1] == 7 and min(np.diff(ticks)) >= 2
    # A window starting on a bucket boundary has no partial first bucket.
    dashboard.select(span="1d")
    assert chart.bars.colors[0] == PRIMARY and chart.bars.colors[-1] == PARTIAL
    assert "partial" not in chart.tip.html_for(0)


def test_the_failed_tile_shows_its_share_of_the_total(open_dashboard):
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1w"))
    metrics = dashboard.usage.metrics
    assert metrics.failed_requests > 0
    tile = dashboard.tiles["failed_requests"].value
    share = f"{100 * metrics.failed_requests / metrics.total_requests:.1f}% of total"
    assert '<div class="aq-tile-share"' in tile and f">{share}</div>" in tile
    assert dashboard.tile_texts()["Failed Requests"] == f"{metrics.failed_requests:,}"  # the value alone
    assert "aq-tile-share" not in dashboard.tiles["total_requests"].value
    assert Dashboard._failed_share(1, 5000) == "<0.1% of total" and Dashboard._failed_share(0, 7) == "0.0% of total"
    dashboard.select(org=UMBRELLA)  # no requests: no share
    assert dashboard.usage.metrics.total_requests == 0
    assert "aq-tile-share" not in dashboard.tiles["failed_requests"].value


def test_token_rows_that_do_not_open_say_why(open_dashboard):
    from usage_lib.render.labels import CLOSED_TOKEN_HINT

    dashboard = open_dashboard(DEMO_USER_EMAIL, Selection(span="1w"))
    rows = dashboard.table.body.value.split('<div class="aq-tr aq-row')[1:]
    shown = dashboard.table.displayed_rows()
    assert any(row.can_open for row in shown) and not all(row.can_open for row in shown)
    for row, markup in zip(shown, rows):
        row_tag = markup.split(">", 1)[0]
        if row.can_open:
            assert "title=" not in row_tag and CLOSED_TOKEN_HINT not in markup
        else:
            assert f'title="{html.escape(CLOSED_TOKEN_HINT, quote=True)}"' in row_tag
            # The cells' own titles (their whole text) carry it too: the innermost title shows.
            assert markup.count(html.escape(CLOSED_TOKEN_HINT, quote=True)) == 1 + len(dashboard.table.columns)
    # Org admins open every token: no row needs the hint.
    admin = open_dashboard(DEMO_ORG_ADMIN_EMAIL, Selection(span="1w"))
    assert CLOSED_TOKEN_HINT not in admin.table.body.value


def test_drill_downs_are_history_steps_and_back_restores_the_view(open_dashboard):
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1d"))
    address = dashboard.address
    assert not address.push and "org=all" in address.query

    def back_to(query: str) -> None:  # what the page sends on popstate
        address._on_message(address, {"popstate": query}, [])

    def click(name: str) -> None:
        dashboard.table.click([row["name"] for row in dashboard.table.displayed()].index(name))

    click("Globex Labs")
    assert address.push and address.query == f"org={GLOBEX}&span=1d&top=100"
    dashboard.span_toggle.value = "1w"  # a filter: replaces the address
    assert not address.push and address.query == f"org={GLOBEX}&span=1w&top=100"
    click("ml-pipeline")
    assert address.push and address.query == f"org={GLOBEX}&span=1w&token={PIPELINE_PROD}&top=100"

    back_to(f"org={GLOBEX}&span=1w&top=100")
    assert dashboard.table.kind == "token" and dashboard.usage.scope.token is None
    assert dashboard.usage.scope.org.id == GLOBEX and not address.push
    back_to("org=all&span=1d&top=100")
    assert dashboard.table.kind == "org" and dashboard.usage.window.span == "1d"
    assert dashboard.span_toggle.value == "1d" and dashboard.org_dropdown.value == "all"
    back_to(f"org={GLOBEX}&span=1w&token={PIPELINE_PROD}&top=100")  # Forward
    assert dashboard.usage.scope.token.id == PIPELINE_PROD and dashboard.table.kind == "user_id"
    dashboard.all_tokens_button.click()  # a way back up is a step too
    assert address.push and dashboard.table.kind == "token"
    back_to({"not": "a query"})  # malformed messages change nothing
    assert dashboard.table.kind == "token"


def test_a_restored_address_is_checked_like_any_request(open_dashboard):
    dashboard = open_dashboard(DEMO_USER_EMAIL, Selection(span="1d"))
    dashboard.address._on_message(dashboard.address, {"popstate": f"org=all&span=1w&token={PIPELINE_PROD}&top=10"}, [])
    assert dashboard.usage.scope.org.id == ACME and dashboard.usage.scope.token is None
    assert dashboard.usage.window.span == "1w" and dashboard.usage.top_k == 10
    assert dashboard.address.query == f"org={ACME}&span=1w&top=10"  # the address says what is shown


def test_the_org_row_without_an_org_says_why_it_does_not_open(open_dashboard):
    from usage_lib.render.labels import NO_ORG_HINT

    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1w"))
    table = dashboard.table
    hints = {row.texts["name"]: table.hint_for(row) for row in table.displayed_rows()}
    assert hints.pop(formatting.NA) == NO_ORG_HINT
    assert set(hints.values()) == {None}
    assert html.escape(NO_ORG_HINT, quote=True) in table.body.value


def test_a_custom_range_from_the_address_is_shown_and_a_preset_replaces_it(open_dashboard):
    from urllib.parse import parse_qs

    from usage_lib.ui.charts import PRIMARY

    custom = "org=all&start=2026-11-20T00:00:00%2B00:00&end=2026-11-23T00:00:00%2B00:00&top=100"
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1d"))
    address = dashboard.address
    assert "1m" in dashboard.span_toggle.options
    address._on_message(address, {"popstate": custom}, [])  # Back to a custom range
    usage = dashboard.usage
    assert dashboard.error is None and usage.window.span == "custom"
    assert dashboard.span_toggle.value is None  # no preset selected
    assert parse_qs(address.query) == parse_qs(custom) and "span" not in address.query
    db_usage = compute_usage(
        dashboard._db, DEMO_ADMIN_EMAIL,
        Selection(org="all", tz="UTC", now=DEMO_NOW, start="2026-11-20T00:00+00:00", end="2026-11-23T00:00+00:00"),
        models=dashboard._models, prices=dashboard._prices,
    )
    assert dashboard.tile_texts() == expected_tiles(db_usage.metrics.as_dict(), db_usage.cost.as_dict())
    chart = dashboard.timeseries_chart
    assert len(chart.bars.x) == 3 and list(chart.bars.colors) == [PRIMARY] * 3  # three whole days
    assert "2026-11-20 00:00:00 to 2026-11-23 00:00:00 (UTC)" in html.unescape(dashboard.as_of.value)
    dashboard.refresh()  # the adopted range (aware datetimes) asks for the same view
    assert dashboard.usage.window.until == usage.window.until and parse_qs(address.query) == parse_qs(custom)

    dashboard.span_toggle.value = "1m"  # a preset replaces the range
    assert dashboard.usage.window.span == "1m" and len(chart.bars.x) == 31
    assert address.query == "org=all&span=1m&top=100"
    assert dashboard.selection.start is None and dashboard.selection.end is None


def test_a_bad_range_in_the_address_is_an_error_a_preset_recovers_from(open_dashboard):
    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", start="2026-11-23", end="2026-11-20"))
    assert dashboard.usage is None
    assert dashboard.error == ("the range's start 2026-11-23T00:00:00+00:00 is not before its end "
                               "2026-11-20T00:00:00+00:00")
    assert dashboard.span_toggle.value is None
    dashboard.span_toggle.value = "1w"
    assert dashboard.error is None and dashboard.usage.window.span == "1w"


# -- issue 13 item 5: the range picker ----------------------------------------------------

TINY_NOW = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)


@pytest.fixture
def ranged_dashboard(tmp_path):
    """Factory: a refreshed Dashboard on the tiny orgs (2047 requests an hour before
    TINY_NOW) plus 4096 requests of ursula's token three days earlier, 2026-11-21 11:00 UTC;
    root (global admin) sees them all."""
    builder = GatewayBuilder(f"sqlite:///{tmp_path / 'tiny.sqlite3'}")
    tiny = build_tiny_org(builder, TINY_NOW)
    builder.request(tiny.tokens["urs"], datetime(2026, 11, 21, 11, tzinfo=timezone.utc), count=4096)
    builder.close()
    made: list[Dashboard] = []

    def make(selection: Selection | None = None, tz: str = "UTC") -> Dashboard:
        settings = Settings(db_url=tiny.url, viewer="root@example.org", view=Selection(tz=tz, now=TINY_NOW))
        dashboard = Dashboard(settings, selection or Selection(org="all", span="1d"))
        made.append(dashboard)
        dashboard.refresh()
        return dashboard

    yield make
    for dashboard in made:
        dashboard.close()


def apply_range(dashboard: Dashboard, start: datetime | None, end: datetime | None) -> None:
    """What a person does: fill the two inputs, click Apply."""
    dashboard.range_start.value = start
    dashboard.range_end.value = end
    dashboard.range_apply.click()


def test_applying_a_range_shows_its_figures_and_puts_it_in_the_address(ranged_dashboard):
    from urllib.parse import parse_qs

    dashboard = ranged_dashboard()
    assert dashboard.tile_texts()["Total Requests"] == "2,047"  # the last day: the tiny orgs' requests
    assert dashboard.range_start.value is None and dashboard.range_end.value is None
    apply_range(dashboard, datetime(2026, 11, 21), datetime(2026, 11, 22))
    assert dashboard.error is None and dashboard.range_message is None
    assert dashboard.tile_texts()["Total Requests"] == "4,096"  # only the 4096 of 2026-11-21
    assert dashboard.usage.window.span == "custom" and dashboard.span_toggle.value is None
    chart = dashboard.timeseries_chart
    assert len(chart.bars.y) == 24 and sum(chart.bars.y) == 4096  # hourly buckets for one day
    assert parse_qs(dashboard.address.query) == {
        "org": ["all"], "start": ["2026-11-21T00:00:00+00:00"], "end": ["2026-11-22T00:00:00+00:00"], "top": ["100"],
    }
    assert not dashboard.address.push  # a filter: replaces the address
    assert (dashboard.range_start.value, dashboard.range_end.value) == (datetime(2026, 11, 21), datetime(2026, 11, 22))


def test_a_preset_clears_the_applied_range(ranged_dashboard):
    dashboard = ranged_dashboard()
    apply_range(dashboard, datetime(2026, 11, 21), datetime(2026, 11, 22))
    dashboard.span_toggle.value = "1w"
    assert dashboard.usage.window.span == "1w"
    assert dashboard.tile_texts()["Total Requests"] == "6,143"  # 4096 + 2047
    assert dashboard.selection.start is None and dashboard.selection.end is None
    assert dashboard.address.query == "org=all&span=1w&top=100"
    assert dashboard.range_start.value is None and dashboard.range_end.value is None


@pytest.mark.parametrize("start, end, message", [
    pytest.param(datetime(2026, 11, 22), datetime(2026, 11, 21),
                 "the range's start 2026-11-22T00:00:00+00:00 is not before its end 2026-11-21T00:00:00+00:00",
                 id="start-after-end"),
    pytest.param(datetime(2026, 11, 21), datetime(2026, 11, 21), "is not before its end", id="start-equals-end"),
    pytest.param(datetime(2026, 11, 21, 10, 0), datetime(2026, 11, 21, 10, 0, 30), "is shorter than a minute",
                 id="shorter-than-a-minute"),
    pytest.param(datetime(2026, 11, 24), datetime(2026, 11, 24, 13),
                 "the range ends at 2026-11-24T13:00:00+00:00, after now (2026-11-24T12:00:00+00:00)", id="end-in-the-future"),
    pytest.param(datetime(2026, 11, 21), None, "a custom range needs both start and end", id="end-empty"),
    pytest.param(None, None, "a custom range needs both start and end", id="both-empty"),
])
def test_an_invalid_range_shows_why_and_keeps_the_figures(ranged_dashboard, start, end, message):
    dashboard = ranged_dashboard(Selection(org="all", span="1w"))
    usage, tiles, query = dashboard.usage, dashboard.tile_texts(), dashboard.address.query
    apply_range(dashboard, start, end)
    assert message in dashboard.range_message
    assert "Range not applied:" in dashboard.notice_box.value
    assert html.escape(message) in dashboard.notice_box.value and "Traceback" not in dashboard.notice_box.value
    assert dashboard.usage is usage and dashboard.tile_texts() == tiles and dashboard.error is None
    assert dashboard.address.query == query and dashboard.span_toggle.value == "1w"
    assert "aq-failed" not in dashboard.widget._dom_classes
    assert (dashboard.range_start.value, dashboard.range_end.value) == (start, end)  # kept, to correct
    apply_range(dashboard, datetime(2026, 11, 21), datetime(2026, 11, 22))  # corrected: the message goes
    assert dashboard.range_message is None and "Range not applied" not in dashboard.notice_box.value
    assert dashboard.tile_texts()["Total Requests"] == "4,096"


def test_a_range_in_the_address_fills_the_inputs_in_the_dashboards_zone(ranged_dashboard):
    # Opened with a range: one end with an offset, one without (read in the zone, Vienna: UTC+1).
    query = "org=all&start=2026-11-21T00:00:00%2B00:00&end=2026-11-22T00:00&top=100"
    dashboard = ranged_dashboard(page_from_env({"QUERY_STRING": query, "AQUEDUCT_TZ": "Europe/Vienna"}).selection,
                                 tz="Europe/Vienna")
    assert dashboard.error is None and dashboard.usage.window.span == "custom"
    assert dashboard.tile_texts()["Total Requests"] == "4,096"
    assert dashboard.range_start.value == datetime(2026, 11, 21, 1, 0)  # 00:00 UTC on Vienna's clock
    assert dashboard.range_end.value == datetime(2026, 11, 22, 0, 0)
    assert "Europe/Vienna" in dashboard.range_control.children[3].value  # the zone is shown
    # Back or Forward to another range fills them too.
    address = dashboard.address
    address._on_message(address, {"popstate": "org=all&start=2026-11-20T12:00&end=2026-11-24T13:00&top=100"}, [])
    assert dashboard.tile_texts()["Total Requests"] == "6,143"  # up to now, 12:00 UTC
    assert (dashboard.range_start.value, dashboard.range_end.value) == (datetime(2026, 11, 20, 12), datetime(2026, 11, 24, 13))


# -- issue 14 item 5: a time zone per viewer ------------------------------------------------


def test_the_zone_picker_offers_the_operators_zone_then_the_browsers_then_every_zone(dashboard_config):
    from usage_lib.core.urlstate import iana_zones

    config = dashboard_config(DEMO_ADMIN_EMAIL)
    dashboard = Dashboard(replace(config, view=replace(config.view, tz="Europe/Vienna")), Selection(org="all"))
    try:
        dashboard.refresh()
        picker = dashboard.zone_dropdown
        everything = sorted(iana_zones())
        # Before the browser said its zone: the operator's, then every other zone, sorted.
        assert picker.options[0] == ("Europe/Vienna (default)", "Europe/Vienna")
        assert [value for _, value in picker.options[1:]] == [z for z in everything if z != "Europe/Vienna"]
        assert picker.value == "Europe/Vienna" and "localtime" not in everything and "Factory" not in everything
        usage = dashboard.usage

        dashboard.browser_zone.zone = "America/New_York"  # what the page's widget sends
        assert picker.options[:2] == (("Europe/Vienna (default)", "Europe/Vienna"),
                                      ("America/New_York (browser)", "America/New_York"))
        assert [value for _, value in picker.options[2:]] == [z for z in everything if z not in
                                                              ("Europe/Vienna", "America/New_York")]
        assert len(picker.options) == len(everything)  # every zone, once
        # Offered, not chosen: the view and the address stay.
        assert picker.value == "Europe/Vienna" and dashboard.usage is usage
        assert "tz=" not in dashboard.address.query

        dashboard.browser_zone.zone = "Europe/Vienna"  # the operator's own: not offered twice
        assert [value for _, value in picker.options].count("Europe/Vienna") == 1
        assert picker.options[1] == ("Africa/Abidjan", "Africa/Abidjan")
        dashboard.browser_zone.zone = "Mars/Olympus"  # not a zone: ignored
        assert picker.options[1] == ("Africa/Abidjan", "Africa/Abidjan") and picker.value == "Europe/Vienna"
    finally:
        dashboard.close()


def test_choosing_a_zone_changes_the_buckets_the_labels_and_the_address(open_dashboard):
    from zoneinfo import ZoneInfo

    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1w"))
    utc_days = dashboard.usage.timeseries.copy()
    assert dashboard.address.query == "org=all&span=1w&top=100"
    dashboard.zone_dropdown.value = "Asia/Kolkata"  # UTC+05:30: days start at 18:30 UTC

    usage = dashboard.usage
    assert dashboard.error is None and usage.tz == "Asia/Kolkata" and dashboard.selection.tz == "Asia/Kolkata"
    kolkata = ZoneInfo("Asia/Kolkata")
    starts = list(usage.timeseries["bucket"])
    assert all(s.astimezone(kolkata).strftime("%H:%M") == "00:00" for s in starts)
    assert starts[-1] == datetime(2026, 11, 23, 18, 30, tzinfo=timezone.utc)  # 24 Nov, 00:00 in Kolkata
    # The same figures the core gives for that zone; the buckets differ from UTC's.
    expected = compute_usage(dashboard._db, DEMO_ADMIN_EMAIL,
                             Selection(org="all", span="1w", tz="Asia/Kolkata", now=DEMO_NOW), models=dashboard._models,
                             prices=dashboard._prices)
    assert list(usage.timeseries["requests"]) == list(expected.timeseries["requests"])
    assert list(usage.timeseries["requests"]) != list(utc_days["requests"])
    assert dashboard.tile_texts() == expected_tiles(expected.metrics.as_dict(), expected.cost.as_dict())
    # Axis labels, title, tooltips and the as-of line on Kolkata's clock.
    chart = dashboard.timeseries_chart
    assert chart.labels == [s.astimezone(kolkata).strftime("%d %b") for s in starts]
    assert chart.x_axis.label.startswith("Day (Asia/Kolkata)")
    assert "partial day: from Tue 17:30" in chart.tip.html_for(0)  # 12:00 UTC
    assert "as of 2026-11-24 17:30:00 (Asia/Kolkata)" in html.unescape(dashboard.as_of.value)
    assert "(Asia/Kolkata)" in dashboard.timeseries_title.value
    assert "Asia/Kolkata" in dashboard.range_zone.value
    # The address keeps the zone (a filter: replaced, not a history step) ...
    assert dashboard.address.query == "org=all&span=1w&top=100&tz=Asia%2FKolkata" and not dashboard.address.push
    dashboard.span_toggle.value = "1d"
    assert dashboard.usage.tz == "Asia/Kolkata" and dashboard.address.query.endswith("&tz=Asia%2FKolkata")
    # ... and the operator's zone is never written into it.
    dashboard.zone_dropdown.value = "UTC"
    assert dashboard.usage.tz == "UTC" and dashboard.address.query == "org=all&span=1d&top=100"
    # Back to an entry with a zone, and to one without (the operator's).
    address = dashboard.address
    address._on_message(address, {"popstate": "org=all&span=1w&top=100&tz=Asia%2FKolkata"}, [])
    assert dashboard.usage.tz == "Asia/Kolkata" and dashboard.zone_dropdown.value == "Asia/Kolkata"
    address._on_message(address, {"popstate": "org=all&span=1d&top=100"}, [])
    assert dashboard.usage.tz == "UTC" and dashboard.zone_dropdown.value == "UTC"


def test_a_range_follows_the_zone_chosen(open_dashboard):
    from urllib.parse import parse_qs

    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", start="2026-11-20T00:00", end="2026-11-21T00:00"))
    assert dashboard.usage.window.start == datetime(2026, 11, 20, tzinfo=timezone.utc)
    dashboard.zone_dropdown.value = "America/New_York"  # the same instants, on New York's clock
    usage = dashboard.usage
    assert usage.window.start == datetime(2026, 11, 20, tzinfo=timezone.utc) and usage.tz == "America/New_York"
    assert (dashboard.range_start.value, dashboard.range_end.value) == (datetime(2026, 11, 19, 19), datetime(2026, 11, 20, 19))
    assert parse_qs(dashboard.address.query)["tz"] == ["America/New_York"]
    # A range typed now is read on New York's clock.
    apply_range(dashboard, datetime(2026, 11, 20), datetime(2026, 11, 21))
    assert dashboard.usage.window.start == datetime(2026, 11, 20, 5, tzinfo=timezone.utc)
    assert parse_qs(dashboard.address.query)["start"] == ["2026-11-20T00:00:00-05:00"]


@pytest.mark.parametrize("asked", ["Mars/Olympus", "../../etc/passwd", "localtime", "x" * 300])
def test_an_unknown_zone_in_the_address_falls_back_to_the_operators_with_a_notice(demo_gateway, monkeypatch, asked):
    from urllib.parse import quote

    from usage_lib.serving import page as served

    for name in [key for key in __import__("os").environ if key.startswith("AQUEDUCT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AQUEDUCT_DB_URL", demo_gateway.url)
    monkeypatch.setenv("AQUEDUCT_ROUTER_CONFIG", str(demo_gateway.router_config))
    monkeypatch.setenv("AQUEDUCT_VIEWER", DEMO_ADMIN_EMAIL)
    monkeypatch.setenv("AQUEDUCT_TZ", "Europe/Vienna")
    monkeypatch.setenv("AQUEDUCT_NOW", DEMO_NOW.isoformat())
    monkeypatch.setenv("QUERY_STRING", f"org=all&span=1w&tz={quote(asked, safe='')}")
    monkeypatch.setattr(served, "log_to_server", lambda: None)
    dashboard = served.open_page()  # what the served notebook runs
    try:
        assert dashboard.error is None and dashboard.usage.tz == "Europe/Vienna"
        assert dashboard.usage.window.span == "1w"  # the rest of the address is shown
        notices = html.unescape(dashboard.notice_box.value)
        assert "unknown time zone" in notices and "showing Europe/Vienna" in notices and "Traceback" not in notices
        assert 'class="aq-notice aq-fallback aq-zone-fallback"' in dashboard.notice_box.value
        assert dashboard.zone_dropdown.value == "Europe/Vienna"
        assert dashboard.address.query == "org=all&span=1w&top=100"  # the address says what is shown
        # The next choice clears the notice; a Back to a bad zone falls back the same way.
        dashboard.zone_dropdown.value = "Asia/Tokyo"
        assert dashboard.usage.tz == "Asia/Tokyo" and "unknown time zone" not in dashboard.notice_box.value
        dashboard.address._on_message(dashboard.address, {"popstate": "org=all&span=1d&top=100&tz=Nowhere%2FLand"}, [])
        assert dashboard.usage.tz == "Europe/Vienna" and dashboard.usage.window.span == "1d"
        assert "unknown time zone &#x27;Nowhere/Land&#x27;; showing Europe/Vienna" in dashboard.notice_box.value
    finally:
        dashboard.close()


def test_the_exports_follow_the_zone_chosen(open_dashboard):
    import base64
    import csv
    import io
    import re
    import zipfile

    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1d"))
    dashboard.zone_dropdown.value = "Asia/Kolkata"
    assert dashboard.export.links.value == ""  # no link offers the view before
    dashboard.export.prepare()
    links = dict(re.findall(r'download="([^"]+)"[^>]*href="data:[^;]+;[^,]*base64,([^"]+)"', dashboard.export.links.value))
    zipped = next(data for name, data in links.items() if name.endswith(".zip"))
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(zipped))) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("timeseries.csv").decode("utf-8-sig"))))
        summary = archive.read("summary.csv").decode("utf-8-sig")
    assert [row["bucket"] for row in rows] == [s.isoformat() for s in dashboard.usage.timeseries["bucket"]]
    assert rows[0]["bucket"].endswith("+05:30") and rows[0]["bucket"][14:16] == "00"  # Kolkata's whole hours
    assert "tz,Asia/Kolkata" in summary.replace("\r\n", "\n")
    page = base64.b64decode(next(data for name, data in links.items() if name.endswith(".html"))).decode("utf-8")
    assert '"tz": "Asia/Kolkata"' in page or '"tz":"Asia/Kolkata"' in page


# -- issue 14: cost, changes against the previous period, the new charts ----------------------


def test_tiles_show_the_cost_and_every_change_against_the_previous_period(open_dashboard):
    from usage_lib.ui.dashboard import ALL_TILES

    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1w"))
    usage = dashboard.usage
    assert usage.cost.currency == "USD" and usage.cost.unpriced_requests > 0  # llama is unpriced in the demo
    tiles, notes, changes = dashboard.tile_texts(), dashboard.tile_notes(), dashboard.tile_changes()
    assert list(tiles) == [label for _, label in ALL_TILES] and list(tiles)[-1] == "Cost"
    assert tiles["Cost"] == formatting.money(usage.cost.total, "USD") and tiles["Cost"].endswith(" USD")
    assert notes["Cost"] == formatting.unpriced_note(usage.cost)
    assert notes["Cost"].startswith(f"leaves out {usage.cost.unpriced_requests:,} requests")
    for key, label in ALL_TILES:
        text = formatting.change(usage.change(key))
        assert text, key  # the demo has a previous week for every figure
        arrow = "\u25b2 " if text.startswith("+") and text != "+0%" else "\u25bc " if text.startswith("-") else ""
        assert changes[label] == f"{arrow}{text} vs previous 7 days", label
    # The hover title says what it compares with.
    assert "from 2026-11-10 12:00:00 (UTC) to 2026-11-17 12:00:00 (UTC)" in html.unescape(
        dashboard.tiles["total_requests"].value)

    dashboard.select(span="1d")
    assert all(change.endswith(" vs previous 24 hours") for change in dashboard.tile_changes().values())
    dashboard.select(start="2026-11-20T00:00", end="2026-11-23T00:00")
    assert dashboard.usage.window.custom
    assert all(change.endswith(" vs previous period") for change in dashboard.tile_changes().values())


def test_tiles_without_prices_or_a_previous_period(open_dashboard, dashboard_config):
    from usage_lib.core.prices import EMPTY

    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1w"), prices=EMPTY)
    assert dashboard.usage.cost.currency is None
    assert dashboard.tile_texts()["Cost"] == formatting.PLACEHOLDER
    assert dashboard.tile_notes()["Cost"] == "no prices configured"
    assert dashboard.tile_changes()["Cost"] == ""  # nothing to compare: no line at all
    assert dashboard.table.displayed()[0]["cost"] == formatting.PLACEHOLDER

    def without_previous(*args, **kwargs):
        return compute_usage(*args, **kwargs, compare=False)

    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1w"), compute=without_previous)
    assert dashboard.usage.previous is None
    assert set(dashboard.tile_changes().values()) == {""}
    assert "aq-tile-change" not in dashboard.tiles["total_requests"].value
    assert {row["change"] for row in dashboard.table.displayed()} == {""}


def test_the_time_views_and_cost_by_model_show_the_usage_frames(open_dashboard):
    from usage_lib.ui import charts

    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1w"))
    usage = dashboard.usage
    frame = usage.timeseries
    assert dashboard.time_switch._options_labels == ("Requests", "Tokens", "Models", "Cost")
    assert dashboard.time_body.children == (dashboard.timeseries_chart.figure,)

    dashboard.time_switch.value = "tokens"
    chart = dashboard.tokens_chart
    assert dashboard.time_body.children == (chart.widget,)
    assert "Tokens Over Time" in dashboard.timeseries_title.value
    assert chart.names == ["Input", "Output"]
    assert chart.values.tolist() == [[float(v) for v in frame["input_tokens"]], [float(v) for v in frame["output_tokens"]]]
    assert chart.bars.y.dtype == np.float64 and chart.bars.type == "stacked"
    assert list(chart.bars.x) == list(range(len(frame))) and chart.labels == dashboard.timeseries_chart.labels
    assert chart.y_scale.max >= chart.values.sum(axis=0).max()
    tip = html.unescape(chart.tip.html_for(3))
    row = frame.iloc[3]
    assert formatting.bucket(row["bucket"], usage.window.spec) in tip
    assert f"{row['input_tokens']:,}" in tip and f"{row['output_tokens']:,}" in tip
    assert f"{row['input_tokens'] + row['output_tokens']:,}" in tip  # the total
    assert list(chart.bars.opacities) == [charts.PARTIAL_OPACITY] + [1.0] * 6 + [charts.PARTIAL_OPACITY]

    dashboard.time_switch.value = "models"
    chart = dashboard.model_time_chart
    per_model = usage.model_timeseries(5)
    assert list(per_model.columns)[-1] == "other" and len(per_model.columns) == 6
    assert chart.names == list(per_model.columns)
    assert chart.values.tolist() == per_model.to_numpy(dtype="float64").T.tolist()
    assert chart.values.sum(axis=0).tolist() == [float(n) for n in frame["requests"]]  # every request, once
    assert list(chart.bars.colors)[-1] == charts.OTHER_COLOR
    assert all(name in chart.legend.value for name in per_model.columns)

    dashboard.time_switch.value = "cost"
    chart = dashboard.cost_chart
    assert chart.values.tolist() == [[float(c) for c in frame["cost"]]]
    assert chart.y_axis.label == "Cost (USD)"
    assert formatting.money(frame["cost"].iloc[3], "USD") in html.unescape(chart.tip.html_for(3))
    assert formatting.unpriced_note(usage.cost) in html.unescape(dashboard.timeseries_title.value)

    # A refresh keeps the view chosen and fills it from the new figures.
    dashboard.select(span="1d")
    assert dashboard.time_body.children == (chart.widget,) and len(chart.values[0]) == 25
    assert chart.values.tolist() == [[float(c) for c in dashboard.usage.timeseries["cost"]]]
    assert len(dashboard.timeseries_chart.bars.x) == 25  # the requests chart stays filled

    models = dashboard.models_chart
    dashboard.model_switch.value = "cost"
    frame = dashboard.usage.models
    assert "Cost by Model" in dashboard.models_title.value
    shown = dict(zip((str(x) for x in models.bars.x), models.bars.y.tolist()))
    expected = {}
    for record in frame.to_dict("records"):
        name = record["model"] + (charts.UNPRICED_SUFFIX if record["unpriced_requests"] and record["cost"] == 0 else "")
        expected[name] = float(record["cost"])
    assert shown == expected
    assert list(models.bars.y) == sorted(models.bars.y, reverse=True)  # most cost on top
    assert "llama-3.1-70b-instruct (unpriced)" in shown  # unpriced, not free
    assert models.count_axis.label == "Cost (USD)"
    dashboard.model_switch.value = "requests"
    assert list(models.bars.x) == list(frame["model"]) and list(models.bars.y) == [float(n) for n in frame["requests"]]
    assert models.count_axis.label == "Requests"


def test_the_table_has_cost_and_change_and_lists_the_stopped_rows(open_dashboard):
    from usage_lib.ui.table import NO_RANK

    dashboard = open_dashboard(DEMO_ADMIN_EMAIL, Selection(org="all", span="1h"))
    usage, table = dashboard.usage, dashboard.table
    assert list(usage.stopped["name"]) == ["Initech"]  # busy in the hour before, quiet now
    shown = table.displayed()
    for texts, row in zip(shown, usage.top.to_dict("records")):
        assert texts["cost"] == formatting.money(row["cost"], "USD")
        assert texts["change"] == ("new" if row["new"] else formatting.change(row["change"]))
    stopped = table.displayed_stopped()
    assert [row["name"] for row in stopped] == ["Initech"]
    assert stopped[0]["rank"] == NO_RANK and stopped[0]["change"] == "stopped" and stopped[0]["requests"] == "0"
    body = table.body.value
    assert body.count('class="aq-tr aq-stopped"') == 1 and "Stopped since the previous hour" in body
    assert body.index("aq-stopped-head") > body.rindex("aq-row")  # after every ranked row
    # Not clickable: no click target reaches it.
    assert len(table.targets.options) == len(table.rows)
    assert all("Initech" not in label for label, _ in table.targets.options)

    # Cost sorts; the stopped rows stay after the ranked ones.
    table.header_buttons["cost"].click()
    costs = [row.values["cost"] for row in table.displayed_rows()]
    assert costs == sorted(costs) and table.header_buttons["cost"].description == f"Cost {ASCENDING}"
    assert table.body.value.index("aq-stopped-head") > table.body.value.rindex("aq-row")
    table.header_buttons["change"].click()
    table.header_buttons["change"].click()
    changes = [row.values["change"] for row in table.displayed_rows()]
    assert changes == sorted(changes, reverse=True)  # "new" rows (as +infinity) first

    dashboard.select(org=2, token=PIPELINE_PROD, span="1d")  # user_ids: 30 stopped
    assert dashboard.table.kind == "user_id" and len(dashboard.table.displayed_stopped()) == len(dashboard.usage.stopped)
    assert {row["change"] for row in dashboard.table.displayed_stopped()} == {"stopped"}


def test_a_bad_prices_file_is_one_line_like_a_bad_router_config(dashboard_config, tmp_path):
    bad = tmp_path / "prices.yaml"
    bad.write_text("- model: gpt-4o\n  input_per_million: abc\n  output_per_million: 10\n  currency: USD\n")
    dashboard = Dashboard(dashboard_config(DEMO_ADMIN_EMAIL, prices_file=bad))
    try:
        dashboard.refresh()
        assert dashboard.usage is None
        assert dashboard.error == f"{bad} entry 1 (gpt-4o): input_per_million is not a number: 'abc'"
        assert "\n" not in dashboard.error and "Traceback" not in dashboard.error_box.value
        assert set(dashboard.tile_texts().values()) == {formatting.PLACEHOLDER}
        bad.write_text("- model: gpt-4o\n  input_per_million: 5\n  output_per_million: 10\n  currency: USD\n")
        dashboard.retry_button.click()  # fixed: read again, once
        assert dashboard.error is None and dashboard.usage.cost.currency == "USD"
    finally:
        dashboard.close()


def test_prices_are_read_once_and_passed_to_the_core(dashboard_config, monkeypatch):
    from usage_lib.settings import Settings

    calls = []
    real = Settings.prices
    monkeypatch.setattr(Settings, "prices", lambda self: calls.append(1) or real(self))
    seen = []

    def compute(*args, **kwargs):
        seen.append(kwargs.get("prices"))
        return compute_usage(*args, **kwargs)

    dashboard = Dashboard(dashboard_config(DEMO_ADMIN_EMAIL), compute=compute)
    try:
        dashboard.refresh()
        dashboard.select(span="1w")
        assert calls == [1] and len(seen) == 2 and seen[0] is seen[1] and seen[0].currency == "USD"
    finally:
        dashboard.close()
