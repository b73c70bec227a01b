"""Opening the archive: its URL, its schema (Alembic migrations) and the one writer's lock.

An SQLite archive is one file, created mode 0600 on the first sync (it holds per-token
usage of every org) and written in WAL mode so readers never wait for the writer. A
PostgreSQL archive is a database the sync's role may write; readers open it read-only.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from usage_lib.errors import UsageError
from usage_lib.gateway.db import database_url
from usage_lib.history.schema import state

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: UTC, and no parallel workers or JIT: an archive statement reads a few thousand rows,
#: and starting workers cost more than they saved (half of a 13 ms read of a week).
ARCHIVE_SESSION_OPTIONS = "-c timezone=UTC -c max_parallel_workers_per_gather=0 -c jit=off"
#: PostgreSQL advisory lock key of the archive's one writer ("aqueduct" in ASCII, folded).
PG_LOCK_KEY = 0x61717565


@dataclass(frozen=True)
class State:
    """The archive's one state row, times as epoch seconds (UTC)."""

    first_slice: int
    watermark: int
    #: The first slice with health records (`schema.slice_health`); None: the archive
    #: keeps no health (health is read from the gateway alone).
    health_from: int | None
    gateway_oldest: int | None
    settle_seconds: int
    synced_at: int


@dataclass
class Store:
    """An open archive database."""

    engine: Engine
    url: str
    path: Path | None  # the SQLite file, None on PostgreSQL

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def state(self) -> State | None:
        """The state row, or None before the first sync."""
        with self.engine.connect() as conn:
            row = conn.execute(select(state).where(state.c.id == 1)).mappings().first()
        return None if row is None else State(**{k: v for k, v in row.items() if k != "id"})

    def close(self) -> None:
        self.engine.dispose()


# Alembic is imported where it is used: it costs every `usage-dashboard` command and
# every dashboard kernel a third of a second, and only archive users need it.


def _alembic_config():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the archive's schema to the newest migration (creating it when empty)."""
    from alembic import command

    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def _sqlite_engine(path: Path, writable: bool) -> Engine:
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(connection, _record) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        if not writable:
            cursor.execute("PRAGMA query_only = ON")
        cursor.close()

    return engine


def _make_private_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def open_store(url: str, writable: bool = False) -> Store:
    """Open the archive at `url` (an SQLAlchemy URL or an SQLite file path).

    Writable: create it if needed (SQLite: the file, mode 0600) and migrate it to the
    newest schema. Read-only: it must exist at the newest schema, else `UsageError`.
    """
    url = database_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise UsageError(f"not an archive URL: {url!r} (expected sqlite:///FILE or postgresql://...)") from None
    backend = parsed.get_backend_name()
    path = None
    if backend == "sqlite":
        if not parsed.database or parsed.database.startswith(":memory:"):
            raise UsageError("an SQLite archive must be a file, e.g. sqlite:///usage-archive.sqlite3")
        path = Path(parsed.database)
        if not path.exists():
            if not writable:
                raise UsageError(f"no archive at {path}: run `usage-dashboard sync` first")
            _make_private_file(path)
        engine = _sqlite_engine(path, writable)
    elif backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        options = ARCHIVE_SESSION_OPTIONS + ("" if writable else " -c default_transaction_read_only=on")
        try:
            engine = create_engine(parsed, pool_pre_ping=True,
                                   connect_args={"options": options, "connect_timeout": 10})
        except NoSuchModuleError:
            raise UsageError(f"unsupported PostgreSQL driver in {parsed.drivername!r}; use postgresql+psycopg") from None
    else:
        raise UsageError(f"unsupported archive database {backend!r}: use sqlite:///FILE or postgresql://...")
    shown = parsed.render_as_string(hide_password=True)
    try:
        if writable:
            if backend == "sqlite":
                with engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA journal_mode = WAL")
            upgrade(engine)
        else:
            _check_readable(engine, shown)
    except DBAPIError as exc:
        engine.dispose()
        message = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise UsageError(f"cannot open archive {shown}: {message}") from None
    except UsageError:
        engine.dispose()
        raise
    return Store(engine=engine, url=shown, path=path)


def _check_readable(engine: Engine, shown: str) -> None:
    if "archive_state" not in inspect(engine).get_table_names():
        raise UsageError(f"{shown} is not an archive yet: run `usage-dashboard sync` first")
    have, want = current_revision(engine), head_revision()
    if have != want:
        raise UsageError(f"archive {shown} has schema {have}, this version reads {want}: run `usage-dashboard sync` to migrate it")


@contextmanager
def writer_lock(store: Store, wait: bool = False) -> Iterator[None]:
    """Hold the archive's writer lock: one sync at a time. Without `wait`, a second writer
    gets a one-line `UsageError` at once."""
    busy = f"another sync is writing {store.url}; try again later (or pass --wait)"
    if store.path is not None:
        lock_path = store.path.with_name(store.path.name + ".sync-lock")
        descriptor = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise UsageError(busy) from None
            yield
        finally:
            os.close(descriptor)  # closing releases the lock
        return
    with store.engine.connect() as conn:
        if wait:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
        elif not conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": PG_LOCK_KEY}).scalar():
            raise UsageError(busy)
        conn.commit()
        try:
            yield
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
                conn.commit()
            except OperationalError:
                pass  # the connection is gone, and the lock with it
