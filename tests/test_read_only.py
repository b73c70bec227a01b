"""Read-only, still (issue 16, item 4): no statement of a refresh, an export or a sync
writes to the gateway's database, and only the sync writes the archive.

On PostgreSQL everything runs as a role granted CONNECT and SELECT only (no INSERT,
UPDATE, DELETE, TEMP or CREATE): a write would fail the command; besides, the server's
counts of rows inserted, updated and deleted in the gateway's tables stay the same. On
SQLite the library's connection refuses a write, and the file keeps its bytes. The
exports are those of `render.registry` (.html, .json, .csv, .zip, .txt); PDF and PNG are
left out: they take the page from Voila in a browser (seconds each), whose kernel
refreshes through the same `Settings` and `open_database` as the .html export.

The gateway is `build_tiny_org`'s (2047 requests an hour before NOW), with per-minute
limits on Acme so that the headroom is read too.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from tests.support.archive import dump
from tests.support.gateway import NOW, GatewayBuilder, build_tiny_org
from usage_lib.cli import main as cli_main
from usage_lib.core.usage import Selection
from usage_lib.gateway import schema
from usage_lib.gateway.db import open_database
from usage_lib.render.registry import RENDERERS
from usage_lib.settings import Settings

VIEWER = "root@example.org"  # build_tiny_org's global admin
ALL_REQUESTS = 2047          # build_tiny_org: 1 + 2 + 4 + ... + 1024
LATER = NOW + timedelta(hours=3)   # the tiny org's requests are settled (2 h) by then


def tiny_gateway(url: str) -> None:
    """`build_tiny_org` at `url`, with limits on Acme (its tokens' headroom)."""
    g = GatewayBuilder(url)
    tiny = build_tiny_org(g)
    with g.engine.begin() as conn:
        conn.execute(update(schema.management_org).where(schema.management_org.c.id == tiny.orgs["Acme"])
                     .values(requests_per_minute=100, input_tokens_per_minute=10_000))
    g.close()


def read_everything(url: str, out: Path, capsys, archive_url: str | None = None) -> None:
    """As the global admin, over all orgs: a usage refresh, a health refresh with the
    headroom, every export that needs no browser, and the `report` command."""
    settings = Settings(db_url=url, viewer=VIEWER, view=Selection(now=LATER), archive_url=archive_url)
    scope = ["--db", url, "--viewer", VIEWER, "--org", "all", "--now", LATER.isoformat(),
             *(["--archive", archive_url] if archive_url else [])]
    selection = settings.select(org="all")
    assert settings.compute(selection).metrics.total_requests == ALL_REQUESTS
    headroom = settings.compute_health(selection).headroom
    assert headroom is not None and headroom["requests_limit"].notna().any()
    for suffix in RENDERERS:
        assert cli_main(["snapshot", *scope, "--out", str(out / f"view{suffix}")]) == 0
    capsys.readouterr()
    assert cli_main(["report", *scope]) == 0
    assert f"{ALL_REQUESTS:,}" in capsys.readouterr().out


def sync(url: str, archive_url: str, now: datetime = LATER) -> None:
    """The `sync` command."""
    assert cli_main(["sync", "--db", url, "--archive", archive_url, "--now", now.isoformat(), "--quiet"]) == 0


# -- PostgreSQL: a role that may only read ---------------------------------------------


@pytest.fixture
def reader(fresh_postgres_database):
    """(URL of the gateway as a role granted CONNECT and SELECT only, admin URL)."""
    admin_url = fresh_postgres_database("gateway")
    tiny_gateway(admin_url)
    role, database = f"reader_{uuid.uuid4().hex[:12]}", make_url(admin_url).database
    admin = create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
            conn.execute(text(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC'))  # CONNECT and TEMP
            conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
            conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"'))
            conn.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"'))
        yield make_url(admin_url).set(username=role).render_as_string(hide_password=False), admin_url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()


def gateway_writes(admin_url: str) -> int:
    """Rows inserted, updated and deleted in the gateway's tables so far, read once no
    other session is on the database: a session's counts reach the statistics when it
    ends."""
    engine = create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            others = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                          "AND pid <> pg_backend_pid()")
            deadline = time.monotonic() + 10
            while conn.execute(others).scalar_one():
                assert time.monotonic() < deadline, "a session on the gateway stayed open"
                time.sleep(0.05)
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            counts = text("SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables")
            return conn.execute(counts).scalar_one()
    finally:
        engine.dispose()


def test_the_reader_role_may_not_write_anything(reader):
    """The fixture's premise: without the library's read-only session, the role's
    writes, temporary tables and new tables are refused."""
    url, _ = reader
    engine = create_engine(url, poolclass=NullPool)
    try:
        for statement in ("INSERT INTO management_org (id, name) VALUES (99, 'X')",
                          "UPDATE management_request SET input_tokens = 0", "DELETE FROM management_request",
                          "CREATE TEMP TABLE scratch (id integer)", "CREATE TABLE scratch (id integer)"):
            with engine.connect() as conn, pytest.raises(ProgrammingError, match="permission denied"):
                conn.execute(text(statement))
    finally:
        engine.dispose()


def test_refreshes_exports_and_the_report_command_run_as_a_role_that_may_only_read(reader, tmp_path, capsys):
    url, admin_url = reader
    before = gateway_writes(admin_url)
    assert before >= ALL_REQUESTS  # the builder's inserts: the counts reach the statistics
    read_everything(url, tmp_path, capsys)
    assert gateway_writes(admin_url) == before


def test_a_sync_reads_the_gateway_as_a_role_that_may_only_read(reader, fresh_postgres_database):
    url, admin_url = reader
    archive_url = fresh_postgres_database("archive")  # a separate database the sync may write
    before = gateway_writes(admin_url)
    sync(url, archive_url)
    assert gateway_writes(admin_url) == before
    assert sum(row[5] for row in dump(archive_url)["slice_detail"]) == ALL_REQUESTS   # column 5: requests


# -- SQLite: opened read-only ----------------------------------------------------------


@pytest.fixture
def sqlite_gateway(tmp_path) -> tuple[str, Path]:
    """(URL, file) of a tiny gateway alone in its directory."""
    path = tmp_path / "gateway" / "gateway.sqlite3"
    path.parent.mkdir()
    tiny_gateway(f"sqlite:///{path}")
    return f"sqlite:///{path}", path


def test_a_write_through_the_librarys_sqlite_connection_fails(sqlite_gateway):
    url, _ = sqlite_gateway
    db = open_database(url)
    try:
        for statement in ("DELETE FROM management_request", "CREATE TEMP TABLE scratch (id integer)"):
            with db.connect() as conn, pytest.raises(OperationalError, match="readonly database"):
                conn.execute(text(statement))
    finally:
        db.close()


def test_refreshes_exports_the_report_command_and_a_sync_leave_the_sqlite_gateway_byte_for_byte(
        sqlite_gateway, tmp_path, capsys):
    """Not a byte of the file changes, and no journal or other file appears beside it."""
    url, path = sqlite_gateway
    before = path.read_bytes()
    read_everything(url, tmp_path, capsys)
    sync(url, f"sqlite:///{tmp_path / 'archive.sqlite3'}")
    assert path.read_bytes() == before
    assert list(path.parent.iterdir()) == [path]


# -- the archive: written by the sync alone --------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_reading_an_archive_leaves_it_as_it_was_and_only_a_sync_changes_it(backend, new_archive, sqlite_gateway,
                                                                             tmp_path, capsys):
    """The gateway on SQLite; the archive on each backend: every row (SQLite: every byte
    of the file) stays the same through refreshes, exports and the report command that
    read it; the next sync changes it."""
    url, _ = sqlite_gateway
    archive_url = new_archive(backend)
    sync(url, archive_url)
    archive_file = Path(make_url(archive_url).database) if backend == "sqlite" else None
    rows, data = dump(archive_url), archive_file.read_bytes() if archive_file else None
    read_everything(url, tmp_path, capsys, archive_url=archive_url)
    assert dump(archive_url) == rows
    assert archive_file is None or archive_file.read_bytes() == data
    sync(url, archive_url, now=LATER + timedelta(hours=1))
    assert dump(archive_url) != rows
