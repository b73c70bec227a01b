"""The `usage-dashboard report` command, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

import pytest

from tests.support.gateway import GatewayBuilder, build_tiny_org
from usage_lib import Selection, compute_health, compute_usage, open_database
from usage_lib.gateway.db import database_url as db_url

NOW = "2026-11-24T12:00:00+00:00"
ACME = 1 + (2 + 64 + 512 + 1024) + 4


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "usage_lib.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def tiny_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('cli')}/gateway.sqlite3"
    builder = GatewayBuilder(url)
    org = build_tiny_org(builder)
    builder.close()
    return org


def report(org, *args: str) -> dict:
    result = run("report", "--db", org.url, "--now", NOW, "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_json_report_for_an_org_admin(tiny_url):
    data = report(tiny_url, "--viewer", "olga@example.org")
    assert data["scope"]["role"] == "org-admin"
    assert data["scope"]["org"] == {"id": tiny_url.orgs["Acme"], "name": "Acme"}
    assert data["metrics"]["total_requests"] == ACME
    assert data["top"]["kind"] == "token"
    assert [row["requests"] for row in data["top"]["rows"]] == [2 + 64 + 512 + 1024, 4, 1]


def test_org_admin_asking_for_all_gets_own_org_and_a_note(tiny_url):
    result = run("report", "--db", tiny_url.url, "--now", NOW, "--format", "json", "--viewer", "olga", "--org", "all")
    assert result.returncode == 0
    assert json.loads(result.stdout)["metrics"]["total_requests"] == ACME
    assert "not open" in result.stderr


def test_plain_path_accepted_for_sqlite(tiny_url):
    path = tiny_url.url.removeprefix("sqlite:///")
    result = run("report", "--db", path, "--now", NOW, "--viewer", "root", "--org", "all", "--format", "json")
    assert json.loads(result.stdout)["top"]["kind"] == "org"


@pytest.mark.parametrize("given", ["data/g.sqlite3", "sqlite:///data/g.sqlite3"])
def test_relative_sqlite_paths_become_absolute(given, tmp_path, monkeypatch):
    # A Voila kernel runs in the notebook's folder: a relative path would name another file.
    monkeypatch.chdir(tmp_path)
    assert db_url(given) == f"sqlite:///{tmp_path}/data/g.sqlite3"


@pytest.mark.parametrize("given", ["sqlite:////srv/g.sqlite3", "postgresql://u@h/gateway", "sqlite://"])
def test_other_database_urls_are_kept(given):
    assert db_url(given) == given


def test_token_and_top_and_zone_options(tiny_url):
    data = report(
        tiny_url, "--viewer", "root", "--org", "Acme", "--token", str(tiny_url.tokens["uwe"]),
        "--top", "10", "--tz", "Europe/Vienna", "--span", "1h",
    )
    assert data["scope"]["token"] == {"id": tiny_url.tokens["uwe"], "name": "uwe"}
    assert data["scope"]["now"] == "2026-11-24T13:00:00+01:00"
    assert data["top"]["kind"] == "user_id"
    assert [(r["id"], r["requests"]) for r in data["top"]["rows"]] == [
        ("ursula@example.org ", 1024), ("Ursula@example.org", 512), ("ursula@example.org", 64), ("", 2),
    ]
    assert len(data["timeseries"]) == 61


def test_text_report_shows_every_figure(tiny_url):
    result = run("report", "--db", tiny_url.url, "--now", NOW, "--viewer", "ursula")
    assert result.returncode == 0
    out = result.stdout
    assert "Total Requests" in out and f"{1 + 4 + 64:,}" in out
    assert "Avg Resp Time (Completion)" in out and "100.0 ms" in out
    assert "ml-bot" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--db", "sqlite:////nonexistent/x.sqlite3", "--viewer", "root"], "database file not found"),
        (["--viewer", "nobody"], "unknown viewer"),
        (["--viewer", "root", "--tz", "Mars/Olympus"], "unknown time zone"),
        (["--viewer", "root", "--router-config", "/nonexistent.yaml"], "router config not found"),
    ],
)
def test_errors_are_one_line_without_traceback(tiny_url, args, message):
    if "--db" not in args:
        args = ["--db", tiny_url.url, *args]
    result = run("report", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_span_is_refused_by_the_command_line(tiny_url):
    result = run("report", "--db", tiny_url.url, "--viewer", "root", "--span", "1y")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_text_report_writes_times_without_microseconds(tiny_url):
    result = run("report", "--db", tiny_url.url, "--viewer", "root", "--span", "1h",
                 "--now", "2026-11-24T12:00:00.123456+00:00")
    assert result.returncode == 0, result.stderr
    assert "as of 2026-11-24 12:00:00 (UTC)" in result.stdout
    assert ".123456" not in result.stdout and "123456" not in result.stdout


def test_snapshot_help_names_every_format():
    result = run("snapshot", "--help")
    for suffix in (".html", ".pdf", ".png", ".json", ".csv", ".zip"):
        assert suffix in result.stdout, suffix


def test_a_csv_snapshot_names_every_file_it_writes(tiny_url, tmp_path):
    out = tmp_path / "week.csv"
    result = run("snapshot", "--db", tiny_url.url, "--viewer", "root", "--now", NOW, "--out", str(out))
    assert result.returncode == 0, result.stderr
    written = [line.removeprefix("wrote ") for line in result.stdout.splitlines()]
    names = ["week.csv", "week.timeseries.csv", "week.models.csv", "week.summary.csv", "week.latency.csv",
             "week.latency_timeseries.csv", "week.failures.csv", "week.failures_by_model.csv", "week.statuses.csv",
             "week.headroom.csv"]
    assert written == [str(tmp_path / name) for name in names]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_month_span(tiny_url):
    data = report(tiny_url, "--viewer", "olga", "--span", "1m")
    assert data["scope"]["span"] == "1m" and data["scope"]["window_start"] == "2026-10-25T12:00:00+00:00"
    assert data["metrics"]["total_requests"] == ACME
    assert len(data["timeseries"]) == 31 and data["timeseries"][-1]["requests"] == ACME


def test_custom_range_gives_the_librarys_json(tiny_url):
    # Offset-less times are read in --tz: 11:30 to 12:30 in Vienna holds the requests at 11:00 UTC.
    data = report(tiny_url, "--viewer", "olga", "--tz", "Europe/Vienna",
                  "--start", "2026-11-24T11:30", "--end", "2026-11-24T12:30")
    db = open_database(tiny_url.url)
    try:
        selection = Selection(tz="Europe/Vienna", now=datetime.fromisoformat(NOW),
                              start="2026-11-24T11:30", end="2026-11-24T12:30")
        expected = {**compute_usage(db, "olga", selection).to_json(),
                    "health": compute_health(db, "olga", selection).to_json()}
    finally:
        db.close()
    assert data == json.loads(json.dumps(expected))
    scope = data["scope"]
    assert (scope["span"], scope["window_start"], scope["window_end"]) == (
        "custom", "2026-11-24T11:30:00+01:00", "2026-11-24T12:30:00+01:00")
    assert data["metrics"]["total_requests"] == ACME
    assert len(data["timeseries"]) == 60       # one hour: minute buckets


def test_custom_range_in_the_text_report(tiny_url):
    result = run("report", "--db", tiny_url.url, "--now", NOW, "--viewer", "olga",
                 "--start", "2026-11-24T10:00+00:00", "--end", "2026-11-24T12:00+00:00")
    assert result.returncode == 0, result.stderr
    assert "2026-11-24 10:00:00 to 2026-11-24 12:00:00 (UTC)" in result.stdout
    assert "Requests over time (per minute, UTC)" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--start", "2026-11-24T10:00"], "usage-dashboard: a custom range needs both start and end"),
    (["--start", "noon", "--end", "2026-11-24T12:00"], "usage-dashboard: start: not an ISO 8601 time: 'noon'"),
    (["--start", "2026-11-24T11:00", "--end", "2026-11-24T10:00"], "is not before its end"),
    (["--start", "2026-11-24T11:00", "--end", "2026-11-24T11:00:30"], "is shorter than a minute"),
    (["--start", "2026-11-24T11:00", "--end", "2026-11-24T12:01"], "after now (2026-11-24T12:00:00+00:00)"),
])
def test_custom_range_errors_are_one_line(tiny_url, args, message):
    result = run("report", "--db", tiny_url.url, "--now", NOW, "--viewer", "olga", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
