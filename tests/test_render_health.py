"""The health figures in the files (issue 15 item 7): the JSON report (version 3, a
"health" object), the text report's Health section, the CSV and zip files, the offline
page's Health section, and the command line's JSON.

Rendering reads the figures only: SQLite is enough (the core's figures are tested on both
backends in test_health.py). No router config: every model counts.

Acme (requests limit 10 a minute on the org), root (global admin) with token alpha, ana
(user) with token beta. At 11:00 (an hour before NOW), unless said otherwise gpt-4o chat
completions, status 200, 10 input and 5 output tokens:

    alpha  4 completions of 10, 20, 30, 40 ms, gateway overhead 1, 2, 3, 4 ms
    alpha  2 embeddings ("embed") of 5 and 7 ms
    alpha  failures without a time: one 404, one 429, two 500
    alpha  1 completion with 0 input and 0 output tokens (tokens unknown)
    alpha  1 in flight (no status, no time) at 10:30
    beta   1 completion without a time (and one 3 days before, outside both periods)

Under 50 ms every millisecond is its own bin, so the percentiles are exact: completions
p50 the 2nd of 4 (20 ms), p95 and p99 the 4th (40 ms); embeddings p50 the 1st of 2
(5 ms), p95 and p99 the 2nd (7 ms); overhead 2, 4, 4 ms. 13 requests, 4 failed (30.8%).
alpha's busiest minute (11:00) holds 11 requests against a limit of 10: 110%; beta's 1.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import zipfile
from datetime import timedelta

import pytest

from tests.support.gateway import NOW, GatewayBuilder, sqlite_url
from usage_lib import Selection, Settings
from usage_lib.render.files import Report, render_csv, render_json, render_zip
from usage_lib.render.offline_page import health_html, snapshot_html
from usage_lib.render.text import text

AT = NOW - timedelta(hours=1)
EMBEDDINGS = "/v1/embeddings"
HOSTILE = '=HYPERLINK("x")<script>alert(1)</script>'


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    g = GatewayBuilder(sqlite_url(tmp_path_factory.mktemp("health") / "gateway.sqlite3"))
    org = g.org("Acme", limits={"requests_per_minute": 10})
    alpha = g.token(g.user("root", role="admin", org=org), "alpha")
    beta = g.token(g.user("ana", org=org), "beta")
    for ms in (10, 20, 30, 40):
        g.request(alpha, AT, ms=ms, processing_ms=ms // 10)
    for ms in (5, 7):
        g.request(alpha, AT, model="embed", path=EMBEDDINGS, ms=ms)
    for status, count in ((404, 1), (429, 1), (500, 2)):
        g.request(alpha, AT, status=status, ms=None, count=count)
    g.request(alpha, AT, ms=None, input_tokens=0, output_tokens=0)
    g.request(alpha, NOW - timedelta(minutes=90), status=None, ms=None)
    g.request(beta, AT, ms=None)
    g.request(beta, NOW - timedelta(days=3))  # the gateway's record reaches back (no notice)
    g.close()
    return g.url, alpha


def report_of(url: str, viewer: str = "root", org: str | None = "Acme") -> Report:
    settings = Settings(db_url=url, viewer=viewer)
    selection = Selection(now=NOW, org=org)
    return Report.of(settings.compute(selection), health=settings.compute_health(selection))


@pytest.fixture(scope="module")
def report(acme):
    return report_of(acme[0])


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """One completion of a model whose name is a spreadsheet formula and HTML at once."""
    g = GatewayBuilder(sqlite_url(tmp_path_factory.mktemp("hostile") / "gateway.sqlite3"))
    org = g.org("Acme")
    g.request(g.token(g.user("root", role="admin", org=org), "alpha"), AT, model=HOSTILE, ms=30)
    g.close()
    return report_of(g.url)


def squashed(out: str) -> list[str]:
    return [" ".join(line.split()) for line in out.splitlines()]


def rows_of(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


# -- JSON -----------------------------------------------------------------------------


def test_json_is_version_3_with_the_health_object(report):
    (data,) = render_json(report, "x").values()
    parsed = json.loads(data)
    assert parsed["version"] == 3
    assert parsed["health"] == json.loads(json.dumps(report.health.to_json()))
    assert {key: value for key, value in parsed.items() if key != "health"} == json.loads(
        json.dumps(report.usage.to_json()))
    health = parsed["health"]
    assert [(row["kind"], row["requests"], row["p50"], row["p95"], row["p99"]) for row in health["latency"]] == [
        ("completion", 4, 20.0, 40.0, 40.0), ("embedding", 2, 5.0, 7.0, 7.0)]
    assert (health["in_flight"], health["tokens_unknown"]) == (1, 1)
    assert health["oldest_in_flight"] == (NOW - timedelta(minutes=90)).isoformat()


def test_without_health_the_report_says_null_and_the_files_leave_it_out(report):
    bare = Report.of(report.usage)
    assert bare.data["health"] is None and bare.data["version"] == 3
    assert list(render_csv(bare, "x")) == ["x.csv", "x.timeseries.csv", "x.models.csv", "x.summary.csv"]
    assert "\nHealth:" not in text(bare) and 'id="aq-health"' not in snapshot_html(bare)


# -- text -------------------------------------------------------------------------------


def test_text_report_has_the_health_section(report, acme):
    lines = squashed(text(report))
    start = lines.index("Health:")
    assert lines[start:] == [
        "Health:",
        "Response time Requests p50 p95 p99",
        "Completions 4 20.0 ms 40.0 ms 40.0 ms",
        "Embeddings 2 5.0 ms 7.0 ms 7.0 ms",
        "Gateway overhead Requests p50 p95 p99",
        "Completions 4 2.0 ms 4.0 ms 4.0 ms",
        "Embeddings 0 \u2014 \u2014 \u2014",
        "Failed 4 of 13 requests (30.8%): 4xx 1, 429 1, 5xx 2",
        "In flight 1, the oldest waiting 1 h 30 min",
        "Tokens unknown 1 completion ended without reported tokens",
        "Response time by model:",
        "Model Path Requests p50 p95 p99",
        "gpt-4o Completions 4 20.0 ms 40.0 ms 40.0 ms",
        "embed Embeddings 2 5.0 ms 7.0 ms 7.0 ms",
        "Tokens near a limit (busiest minute at 80% or more of it):",
        f"#{acme[1]} 110.0% 11 of 10 requests",
    ]


def test_text_report_keeps_the_usage_sections_as_they_were(report):
    before = text(Report.of(report.usage))
    assert text(report).startswith(before.split("\n\nNote:")[0] + "\n\nHealth:")


def test_standard_users_get_no_headroom_and_a_gateway_without_overhead_says_why(tmp_path):
    g = GatewayBuilder(sqlite_url(tmp_path / "gateway.sqlite3"), processing_time_column=False)
    org = g.org("Acme", limits={"requests_per_minute": 10})
    beta = g.token(g.user("ana", org=org), "beta")
    g.request(beta, AT, ms=30)
    g.request(beta, NOW - timedelta(days=3))
    g.close()
    lines = squashed(text(report_of(g.url, viewer="ana", org=None)))
    health = lines[lines.index("Health:"):]
    assert "Gateway overhead Requests p50 p95 p99" not in health
    assert not any(line.startswith("Tokens near a limit") for line in health)
    assert health[-1] == ("Note: This gateway's database has no processing_time_ms column (gateways before it log "
                          "no time spent in the gateway itself): no gateway overhead shown.")
    assert "In flight 0" in health and "Failed 0 of 1 requests (0.0%): 4xx 0, 429 0, 5xx 0" in health


# -- CSV and zip ------------------------------------------------------------------------


def test_csv_files_hold_the_health_figures(report, acme):
    files = render_csv(report, "x")
    assert list(files) == ["x.csv", "x.timeseries.csv", "x.models.csv", "x.summary.csv", "x.latency.csv",
                           "x.latency_timeseries.csv", "x.failures.csv", "x.failures_by_model.csv",
                           "x.statuses.csv", "x.headroom.csv"]
    assert rows_of(files["x.latency.csv"]) == [
        ["measure", "kind", "model", "requests", "p50", "p90", "p95", "p99"],
        ["response", "completion", "", "4", "20.0", "40.0", "40.0", "40.0"],
        ["response", "embedding", "", "2", "5.0", "7.0", "7.0", "7.0"],
        ["response", "completion", "gpt-4o", "4", "20.0", "40.0", "40.0", "40.0"],
        ["response", "embedding", "embed", "2", "5.0", "7.0", "7.0", "7.0"],
        ["overhead", "completion", "", "4", "2.0", "4.0", "4.0", "4.0"],
        ["overhead", "embedding", "", "0", "", "", "", ""],
    ]
    over_time = rows_of(files["x.latency_timeseries.csv"])
    assert over_time[0] == ["bucket", "completion_p50", "completion_p95", "embedding_p50", "embedding_p95"]
    assert over_time[-2] == ["2026-11-24T11:00:00+00:00", "20.0", "40.0", "5.0", "7.0"]
    failures = rows_of(files["x.failures.csv"])
    assert failures[0] == ["bucket", "requests", "4xx", "429", "5xx", "failed", "failure_rate"]
    assert failures[-2] == ["2026-11-24T11:00:00+00:00", "12", "1", "1", "2", "4", "0.333333"]
    assert failures[-3] == ["2026-11-24T10:00:00+00:00", "1", "0", "0", "0", "0", "0.0"]
    assert failures[1] == ["2026-11-23T12:00:00+00:00", "0", "0", "0", "0", "0", ""]
    assert rows_of(files["x.failures_by_model.csv"]) == [
        ["model", "requests", "4xx", "429", "5xx", "failed", "in_flight", "failure_rate", "tokens_unknown"],
        ["gpt-4o", "11", "1", "1", "2", "4", "1", "0.363636", "1"],
        ["embed", "2", "0", "0", "0", "0", "0", "0.0", "0"],
    ]
    assert rows_of(files["x.statuses.csv"]) == [
        ["status_code", "kind", "requests"], ["200", "ok", "8"], ["404", "4xx", "1"], ["429", "429", "1"],
        ["500", "5xx", "2"], ["", "in flight", "1"]]
    headroom = rows_of(files["x.headroom.csv"])
    assert headroom[0] == ["token_id", "busiest_requests", "requests_limit", "busiest_input_tokens", "input_limit",
                           "busiest_output_tokens", "output_limit", "peak_share"]
    assert headroom[1] == [str(acme[1]), "11.0", "10", "100", "", "50", "", "1.1"]
    summary = dict(rows_of(files["x.summary.csv"])[1:])
    assert (summary["in_flight"], summary["oldest_in_flight"], summary["tokens_unknown"]) == (
        "1", "2026-11-24T10:30:00+00:00", "1")


def test_zip_holds_every_csv_file(report):
    (data,) = render_zip(report, "x").values()
    files = render_csv(report, "x")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["top.csv", "timeseries.csv", "models.csv", "summary.csv", "latency.csv",
                                      "latency_timeseries.csv", "failures.csv", "failures_by_model.csv",
                                      "statuses.csv", "headroom.csv"]
        assert [archive.read(name) for name in archive.namelist()] == list(files.values())


def test_csv_defuses_a_model_name_that_is_a_formula(hostile):
    files = render_csv(hostile, "x")
    for name in ("x.latency.csv", "x.failures_by_model.csv"):
        models = [row[2] if name == "x.latency.csv" else row[0] for row in rows_of(files[name])[1:]]
        assert "'" + HOSTILE in models, name
        assert HOSTILE not in models, name


# -- offline page -----------------------------------------------------------------------


def cells(table: str) -> list[list[str]]:
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table)[1:]]


def test_offline_page_has_the_health_section(report, acme):
    page = snapshot_html(report)
    section = re.search(r'<section id="aq-health".*?</section>', page, re.S).group(0)
    assert section == health_html(report)
    latency = re.search(r'<table class="aq-health-latency">.*?</table>', section).group(0)
    assert cells(latency) == [["Completions", "4", "20.0 ms", "40.0 ms", "40.0 ms"],
                              ["Embeddings", "2", "5.0 ms", "7.0 ms", "7.0 ms"]]
    overhead = re.search(r'<table class="aq-health-overhead">.*?</table>', section).group(0)
    assert cells(overhead)[0] == ["Completions", "4", "2.0 ms", "4.0 ms", "4.0 ms"]
    facts = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", section))
    assert facts == {"Failed": "4 of 13 requests (30.8%): 4xx 1, 429 1, 5xx 2",
                     "In flight": "1, the oldest waiting 1 h 30 min",
                     "Tokens unknown": "1 completion ended without reported tokens"}
    near = re.search(r'<table class="aq-health-near">.*?</table>', section).group(0)
    assert cells(near) == [[f"#{acme[1]}", "110.0%", "11 of 10 requests"]]


def test_offline_page_escapes_a_hostile_model_name(hostile):
    section = health_html(hostile)
    models = re.search(r'<table class="aq-health-models">.*?</table>', section).group(0)
    assert cells(models)[0][0] == "=HYPERLINK(&quot;x&quot;)&lt;script&gt;alert(1)&lt;/script&gt;"
    assert "<script>" not in section
    assert "<script>alert" not in snapshot_html(hostile)


# -- command line -----------------------------------------------------------------------


def test_cli_json_report_includes_health(acme):
    result = subprocess.run(
        [sys.executable, "-m", "usage_lib.cli", "report", "--db", acme[0], "--viewer", "root", "--now",
         NOW.isoformat(), "--format", "json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["version"] == 3
    settings = Settings(db_url=acme[0], viewer="root")
    assert data["health"] == json.loads(json.dumps(settings.compute_health(Selection(now=NOW)).to_json()))
    assert data["health"]["near_limit"][0]["token_id"] == acme[1]


def test_cli_notes_a_refused_choice_once(acme):
    result = subprocess.run(
        [sys.executable, "-m", "usage_lib.cli", "report", "--db", acme[0], "--viewer", "ana", "--org", "all",
         "--now", NOW.isoformat()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("note:") == 1, result.stderr
    assert "Health:" in result.stdout
