"""Faults, against real servers: PostgreSQL restarted or down, a database too slow, an
SQLite gateway written while the page reads it. The page says one line (never a
traceback, on the page or in the log), offers "Try again", and never hangs.

(A sync killed at any point, twenty times in a row, and the gateway's retention job
deleting rows before or during a sync are tests/test_sync.py's; no statement writing to
the gateway is tests/test_read_only.py's.)
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.support import unavailable
from tests.support.gateway import NOW, GatewayBuilder, build_tiny_org, django_text
from tests.support.postgres import ThrowawayPostgres, find_pg_bindir
from usage_lib.cli import main as cli_main
from usage_lib.core.usage import Selection
from usage_lib.errors import UsageError
from usage_lib.gateway.db import open_database
from usage_lib.settings import DEFAULT_STATEMENT_TIMEOUT, ENV_STATEMENT_TIMEOUT, Settings
from usage_lib.ui.dashboard import Dashboard

VIEWER = "root@example.org"  # build_tiny_org's global admin
TOTAL = "Total Requests"

#: The gateway writing its SQLite file, as Django does: one transaction per request row
#: (`inserts` seconds of them), then optionally one write holding the lock `hold` seconds
#: (a retention job's big delete). Prints "holding" once it holds the lock.
WRITER = """
import sqlite3, sys, time
path, inserts, hold, token, stamp = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
conn = sqlite3.connect(path, timeout=5)
next_id = conn.execute("SELECT max(id) FROM management_request").fetchone()[0] + 1
end = time.monotonic() + inserts
while time.monotonic() < end:
    conn.execute("INSERT INTO management_request (id, token_id, timestamp, method, path, user_agent, model, "
                 "status_code, response_time_ms, input_tokens, output_tokens, user_id) "
                 "VALUES (?, ?, ?, 'POST', '/v1/chat/completions', 'gateway', 'gpt-4o', 200, 90, 10, 5, '')",
                 (next_id, token, stamp))
    conn.commit()
    next_id += 1
if hold:
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("DELETE FROM management_request WHERE timestamp < '2000-01-01'")
    print("holding", flush=True)
    time.sleep(hold)
    conn.commit()
"""


def no_tracebacks(caplog) -> None:
    """Nothing was logged with a traceback, and nothing as an error."""
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


def page(url: str, statement_timeout: timedelta | None = DEFAULT_STATEMENT_TIMEOUT) -> Dashboard:
    settings = Settings(db_url=url, viewer=VIEWER, view=Selection(now=NOW), statement_timeout=statement_timeout)
    return Dashboard(settings)


def shows_figures(dashboard: Dashboard) -> bool:
    return dashboard.error is None and "aq-failed" not in dashboard.widget._dom_classes


def shows_one_line(dashboard: Dashboard, start: str) -> None:
    """The page shows `start`... as its one line, under the failure, with "Try again"."""
    assert dashboard.error.startswith(start) and "\n" not in dashboard.error
    assert "Traceback" not in dashboard.error_box.value
    assert "aq-failed" in dashboard.widget._dom_classes
    assert dashboard.retry_button.description == "Try again" and not dashboard.retry_button.disabled


# -- PostgreSQL -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_postgres():
    """A PostgreSQL server of this module's own, to stop and start: (server, gateway URL)."""
    bindir = find_pg_bindir()
    if bindir is None:
        unavailable("no PostgreSQL server binaries found (see tests/support/postgres.py)")
    server = ThrowawayPostgres(bindir)
    try:
        server.start()
    except RuntimeError as exc:
        server.stop()
        unavailable(f"could not start a PostgreSQL server: {exc}")
    try:
        builder = GatewayBuilder(server.url)
        build_tiny_org(builder)
        builder.close()
        yield server, server.url
    finally:
        server.stop()


@pytest.mark.postgres
def test_a_postgres_restart_between_two_refreshes_goes_unnoticed(own_postgres, caplog):
    server, url = own_postgres
    dashboard = page(url)
    try:
        dashboard.refresh()
        before = dashboard.tile_texts()
        server.pause()
        server.resume()
        dashboard.refresh()  # its pooled connection died with the old server
        assert shows_figures(dashboard) and dashboard.tile_texts() == before
    finally:
        dashboard.close()
    no_tracebacks(caplog)


@pytest.mark.postgres
def test_postgres_down_is_one_line_and_try_again_works_once_it_is_back(own_postgres, caplog):
    server, url = own_postgres
    reach = f"cannot reach PostgreSQL at 127.0.0.1:{server.port}: "
    open_before, opened_while_down = page(url), page(url)
    try:
        open_before.refresh()
        figures = open_before.tile_texts()
        server.pause()
        try:
            open_before.refresh()
            shows_one_line(open_before, reach)
            opened_while_down.refresh()  # a page opened now: the database never opened
            shows_one_line(opened_while_down, reach)
            open_before.retry_button.click()  # still down: the same line, nothing raised
            shows_one_line(open_before, reach)
        finally:
            server.resume()
        for dashboard in (open_before, opened_while_down):
            dashboard.retry_button.click()
            assert shows_figures(dashboard) and dashboard.tile_texts() == figures
    finally:
        open_before.close()
        opened_while_down.close()
    no_tracebacks(caplog)


def test_a_statement_past_the_timeout_is_cancelled_on_the_server_and_said(fresh_postgres_database, caplog):
    url = fresh_postgres_database()
    builder = GatewayBuilder(url)
    build_tiny_org(builder)
    dashboard = page(url, statement_timeout=timedelta(seconds=0.5))
    try:
        dashboard.refresh()
        with builder.engine.connect() as blocker:  # a slow database: the table stays locked
            blocker.execute(sa.text("LOCK TABLE management_request IN ACCESS EXCLUSIVE MODE"))
            started = time.monotonic()
            dashboard.refresh()
            assert time.monotonic() - started < 5
            shows_one_line(dashboard, "the database did not answer within the statement timeout (0.5 s): "
                                      "the statement was cancelled")
            waiting = blocker.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")).scalar_one()
            assert waiting == 0  # the server itself gave up on the statement
            blocker.rollback()
        dashboard.retry_button.click()
        assert shows_figures(dashboard)
    finally:
        dashboard.close()
        builder.close()
    no_tracebacks(caplog)


# -- SQLite ---------------------------------------------------------------------------


@pytest.fixture
def sqlite_gateway(tmp_path):
    """A tiny SQLite gateway: (URL, path, a token of it)."""
    path = tmp_path / "gateway.sqlite3"
    builder = GatewayBuilder(f"sqlite:///{path}")
    tiny = build_tiny_org(builder)
    builder.close()
    return f"sqlite:///{path}", path, tiny.tokens["urs"]


def start_writer(path, token: int, inserts: float, hold: float = 0.0) -> subprocess.Popen:
    stamp = django_text(NOW - timedelta(minutes=30))
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(inserts), str(hold), str(token), stamp],
                            stdout=subprocess.PIPE, text=True)


def test_a_long_sqlite_statement_is_interrupted_at_the_timeout(sqlite_gateway):
    url, _, _ = sqlite_gateway
    db = open_database(url, statement_timeout=0.3)
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    try:
        started = time.monotonic()
        with pytest.raises(UsageError, match=r"^the database did not answer within the statement timeout \(0.3 s\)"):
            with db.connect() as conn:
                conn.execute(sa.text(endless)).all()
        assert time.monotonic() - started < 3
        with db.connect() as conn:  # the next statement has its own 0.3 s
            assert conn.execute(sa.text("SELECT count(*) FROM management_request")).scalar_one() > 0
    finally:
        db.close()


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_sqlite_reads_never_fail_while_the_gateway_writes(sqlite_gateway, journal, caplog):
    url, path, token = sqlite_gateway
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA journal_mode = {journal}")
    dashboard = page(url)
    try:
        dashboard.refresh()
        first = int(dashboard.tile_texts()[TOTAL].replace(",", ""))
        writer = start_writer(path, token, inserts=1.5)
        refreshes = 0
        while writer.poll() is None:
            dashboard.refresh()
            refreshes += 1
            assert shows_figures(dashboard), dashboard.error
        assert writer.returncode == 0 and refreshes >= 2
        dashboard.refresh()
        assert int(dashboard.tile_texts()[TOTAL].replace(",", "")) > first
    finally:
        dashboard.close()
    no_tracebacks(caplog)


def test_an_sqlite_read_waits_out_a_long_write_within_the_timeout(sqlite_gateway, caplog):
    """A write holding the file longer than sqlite3's default 5 s wait (which failed reads
    with "database is locked"), shorter than the statement timeout: the refresh waits."""
    url, path, token = sqlite_gateway
    dashboard = page(url)
    try:
        dashboard.refresh()
        writer = start_writer(path, token, inserts=0.0, hold=5.5)
        assert writer.stdout.readline().strip() == "holding"
        dashboard.refresh()
        assert writer.wait(10) == 0
        assert shows_figures(dashboard), dashboard.error
    finally:
        dashboard.close()
    no_tracebacks(caplog)


def test_an_sqlite_write_held_past_the_timeout_is_one_line(sqlite_gateway, caplog):
    url, path, token = sqlite_gateway
    dashboard = page(url, statement_timeout=timedelta(seconds=0.5))
    try:
        dashboard.refresh()
        writer = start_writer(path, token, inserts=0.0, hold=2.0)
        assert writer.stdout.readline().strip() == "holding"
        started = time.monotonic()
        dashboard.refresh()
        assert time.monotonic() - started < 1.5
        shows_one_line(dashboard, "the SQLite database stayed locked by a writer for more than 0.5 s")
        assert writer.wait(10) == 0
        dashboard.retry_button.click()
        assert shows_figures(dashboard)
    finally:
        dashboard.close()
    no_tracebacks(caplog)


# -- the setting ----------------------------------------------------------------------


def test_the_statement_timeout_comes_from_the_environment_and_the_command_line(sqlite_gateway, capsys):
    url, _, _ = sqlite_gateway
    assert Settings.from_env({}).statement_timeout == DEFAULT_STATEMENT_TIMEOUT == timedelta(seconds=30)
    assert Settings.from_env({ENV_STATEMENT_TIMEOUT: "2m"}).statement_timeout == timedelta(minutes=2)
    assert Settings.from_env({ENV_STATEMENT_TIMEOUT: "0"}).statement_timeout is None
    # (Without a database in the environment the demo's is looked for: another problem.)
    assert any("not a duration: 'soon'" in problem for problem in Settings.from_env({ENV_STATEMENT_TIMEOUT: "soon"}).problems)
    for timeout in (timedelta(seconds=0.5), None):
        settings = Settings(db_url=url, statement_timeout=timeout)
        assert Settings.from_env(settings.to_env()).statement_timeout == timeout
    assert Settings(db_url=url, statement_timeout=timedelta(seconds=2)).open_database().statement_timeout == 2
    argv = ["report", "--db", url, "--viewer", VIEWER, "--now", NOW.isoformat()]
    assert cli_main([*argv, "--statement-timeout", "soon"]) == 2
    assert "--statement-timeout: not a duration: 'soon'" in capsys.readouterr().err
    assert cli_main([*argv, "--statement-timeout", "10s"]) == 0
