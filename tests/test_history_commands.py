"""The archive from the outside: `usage-dashboard sync`, `report --archive`, the settings'
environment variable, the dashboard and `serve`'s background sync, on the tiny org
(tests/support/gateway.py: 2,047 requests one hour before NOW, Acme's 1,607)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.support.gateway import NOW, GatewayBuilder, build_tiny_org
from usage_lib.cli import main
from usage_lib.core.usage import Selection
from usage_lib.history import schema
from usage_lib.history.store import open_store, writer_lock
from usage_lib.serving.archive_sync import BackgroundSync, create_archive
from usage_lib.settings import ENV_ARCHIVE_HEALTH, ENV_ARCHIVE_URL, Settings
from usage_lib.ui.dashboard import Dashboard

ALL_REQUESTS = 2047
ACME = 1 + (2 + 64 + 512 + 1024) + 4
#: Two hours after the tiny org's requests: the settle horizon (2 h) has passed their slice.
SYNC_NOW = (NOW + timedelta(hours=1, minutes=15)).isoformat()


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "usage_lib.cli", *args], capture_output=True, text=True, timeout=120)


def one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("usage-dashboard: ") and fragment in lines[0], result.stderr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    builder = GatewayBuilder(f"sqlite:///{tmp_path_factory.mktemp('history-cli')}/gateway.sqlite3")
    org = build_tiny_org(builder)
    builder.close()
    return org


@pytest.fixture(scope="module")
def synced(tiny, tmp_path_factory) -> Path:
    """An archive after one `sync` of the tiny org."""
    archive = tmp_path_factory.mktemp("archive") / "archive.sqlite3"
    result = run("sync", "--db", tiny.url, "--archive", str(archive), "--now", SYNC_NOW)
    assert result.returncode == 0, result.stderr
    assert f"({ALL_REQUESTS:,} requests)" in result.stdout
    return archive


def report(tiny, *args: str) -> dict:
    result = run("report", "--db", tiny.url, "--now", NOW.isoformat(), "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_report_through_the_archive_has_the_direct_figures(tiny, synced):
    direct = report(tiny, "--viewer", "olga")
    archived = report(tiny, "--viewer", "olga", "--archive", str(synced))
    assert archived["metrics"]["total_requests"] == ACME
    assert archived["metrics"] == direct["metrics"]
    assert archived["top"] == direct["top"]
    assert archived["timeseries"] == direct["timeseries"]


def test_a_second_sync_archives_nothing_more(tiny, synced):
    result = run("sync", "--db", tiny.url, "--archive", str(synced), "--now", SYNC_NOW)
    assert result.returncode == 0, result.stderr
    assert "archived 0 slices (0 requests)" in result.stdout


def test_quiet_sync_prints_nothing(tiny, synced):
    result = run("sync", "--db", tiny.url, "--archive", str(synced), "--now", SYNC_NOW, "--quiet")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_a_malformed_settle_is_one_line(tiny, tmp_path):
    one_line_error(run("sync", "--db", tiny.url, "--archive", str(tmp_path / "a.sqlite3"), "--settle", "soon"),
                   "--settle: not a duration")


def test_report_with_a_missing_archive_is_one_line(tiny, tmp_path):
    result = run("report", "--db", tiny.url, "--viewer", "olga", "--archive", str(tmp_path / "none.sqlite3"))
    one_line_error(result, "run `usage-dashboard sync` first")


def test_a_second_writer_is_told_in_one_line(tiny, tmp_path):
    archive = tmp_path / "busy.sqlite3"
    store = open_store(str(archive), writable=True)
    try:
        with writer_lock(store):
            result = run("sync", "--db", tiny.url, "--archive", str(archive), "--now", SYNC_NOW)
    finally:
        store.close()
    one_line_error(result, "another sync is writing")


def test_settings_carry_the_archive_through_the_environment(tiny, synced):
    settings = Settings(db_url=tiny.url, viewer="olga", archive_url=str(synced))
    env = settings.to_env({})
    assert env[ENV_ARCHIVE_URL] == f"sqlite:///{synced}"
    assert Settings.from_env(env).archive_url == settings.archive_url
    assert ENV_ARCHIVE_URL not in Settings(db_url=tiny.url).to_env(env)


def test_the_dashboard_reads_through_the_archive(tiny, synced):
    settings = Settings(db_url=tiny.url, viewer="olga", view=Selection(now=NOW), archive_url=str(synced))
    dashboard = Dashboard(settings)
    try:
        dashboard.refresh()
        assert dashboard.usage.metrics.total_requests == ACME
        # The 1d window reaches back before the archive's first slice (11:00, the tiny
        # org's first request): said on the page, and its 23 hours are banded grey.
        assert "The usage archive starts at 2026-11-24 11:00" in dashboard.notice_box.value
        chart = dashboard.timeseries_chart
        assert len(chart.unrecorded.x) == 23
        assert "no record" in chart.tip.html_for(0) and "no record" not in chart.tip.html_for(23)
    finally:
        dashboard.close()


def test_serve_keeps_the_archive_synced_in_the_background(tiny, tmp_path):
    settings = Settings(db_url=tiny.url, viewer="olga", archive_url=str(tmp_path / "served.sqlite3"))
    create_archive(settings)
    assert open_store(settings.archive_url).state() is None  # made, nothing synced yet
    # The tiny org's requests lie in the past (NOW is 2026-11-24): the first run archives them.
    syncing = BackgroundSync(settings, every=timedelta(hours=1), settle=timedelta(hours=2)).start()
    try:
        deadline = datetime.now() + timedelta(seconds=30)
        while syncing.runs == 0 and datetime.now() < deadline:
            syncing._stopped.wait(0.1)
    finally:
        syncing.stop()
    assert syncing.runs == 1
    assert not syncing._thread.is_alive()
    state = open_store(settings.archive_url).state()
    assert state is not None and state.watermark > NOW.timestamp()


def test_serve_that_does_not_sync_needs_an_archive_and_makes_none(tiny, tmp_path):
    """`serve --sync-every 0`: one of several servers reading an archive synced elsewhere
    (docs/operations.md) never creates or writes it; a missing one is one line."""
    archive = tmp_path / "elsewhere.sqlite3"
    result = run("serve", "--db", tiny.url, "--viewer", "olga", "--archive", str(archive), "--sync-every", "0")
    one_line_error(result, "run `usage-dashboard sync` first")
    assert not archive.exists()


def slice_health_rows(archive: Path) -> int:
    store = open_store(str(archive))
    try:
        with store.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(schema.slice_health)).scalar_one()
    finally:
        store.close()


def test_sync_archives_health_only_with_health(tiny, synced, tmp_path):
    assert slice_health_rows(synced) == 0 and open_store(str(synced)).state().health_from is None
    archive = tmp_path / "health.sqlite3"
    result = run("sync", "--db", tiny.url, "--archive", str(archive), "--now", SYNC_NOW, "--health")
    assert result.returncode == 0, result.stderr
    assert f"({ALL_REQUESTS:,} requests)" in result.stdout
    assert slice_health_rows(archive) > 0 and open_store(str(archive)).state().health_from is not None


def test_settings_carry_archive_health_through_the_environment(tiny):
    settings = Settings(db_url=tiny.url, archive_url="archive.sqlite3", archive_health=True)
    env = settings.to_env({})
    assert env[ENV_ARCHIVE_HEALTH] == "1" and Settings.from_env(env).archive_health
    assert ENV_ARCHIVE_HEALTH not in Settings(db_url=tiny.url).to_env(env)
    assert not Settings.from_env({**env, ENV_ARCHIVE_HEALTH: "0"}).archive_health
    assert Settings.from_env({**env, ENV_ARCHIVE_HEALTH: "yes"}).problems


def test_serve_health_without_an_archive_is_one_line(tiny, capsys):
    assert main(["serve", "--db", tiny.url, "--viewer", "olga", "--health"]) == 2
    assert capsys.readouterr().err == "usage-dashboard: --health archives health: it needs --archive\n"
