"""Read-only connections to a gateway database, SQLite file or PostgreSQL server.

`open_database` checks once that the URL works and the gateway's tables are there, and
turns every way that can fail into a one-line `UsageError`. The connection can never
write: SQLite files are opened with `mode=ro` and `query_only`; PostgreSQL sessions start
with `default_transaction_read_only=on` and the time zone pinned to UTC.

Later, `Database.connect` turns a server that went away, a lock held too long and a
statement cancelled by the statement timeout into one line too; other errors (bugs) keep
their traceback. Stale PostgreSQL connections (a restarted server) are replaced before
use: the pool pings a connection when a refresh takes it (`pool_pre_ping`), so no
statement of a refresh ever runs on a dead one.

With a `statement_timeout`, no statement runs longer: PostgreSQL cancels it on the server
(`statement_timeout` session setting, lock waits included); on SQLite a progress handler
interrupts it, and a read waits for a writer's lock (the gateway writing) at most as
long (the busy timeout). SQLite files in WAL mode are read without waiting for writers.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator
from urllib.request import pathname2url

from sqlalchemy import DateTime, String, create_engine, event, inspect, literal
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.sql.elements import ColumnElement

from usage_lib.errors import UsageError
from usage_lib.gateway.schema import (
    LIMIT_COLUMNS,
    LIMIT_TABLES,
    OPTIONAL_REQUEST_COLUMNS,
    PROCESSING_TIME_COLUMN,
    REQUIRED_COLUMNS,
)

#: Read-only, UTC, no JIT: our statements run a few hundred milliseconds at most, and
#: at 10M requests the planner's cost passes `jit_above_cost`, where compiling cost more
#: than it saved (benchmarks/refresh.py --experiments). work_mem 32MB, not the default
#: 4MB: the health statements group a week's requests into some 40,000 latency groups
#: and 120,000 (token, minute) groups at 1M requests, which spilled to disk in 4MB
#: (benchmarks/health.py's plans); 32MB is per sort or hash of a running statement, and a
#: refresh runs one statement at a time. Session settings only.
PG_SESSION_OPTIONS = "-c default_transaction_read_only=on -c timezone=UTC -c jit=off -c work_mem=32MB"

#: Helper threads for SQLite's sorter (GROUP BY): a refresh sorts the window's rows, and
#: this cut that sort by a third at 1M requests on 2 cores. Connection setting only.
SQLITE_SORTER_THREADS = min(4, os.cpu_count() or 1)

#: SQLite VM steps between two looks at the statement's deadline (well under a
#: millisecond; the look costs nothing measurable).
SQLITE_DEADLINE_STEPS = 10_000
#: Without a statement timeout (`sync`), how long an SQLite read waits for a writer's
#: lock: sqlite3's own default.
SQLITE_BUSY_TIMEOUT = 5.0
#: PostgreSQL's SQLSTATE for a statement cancelled (here: by `statement_timeout`).
PG_QUERY_CANCELED = "57014"


@dataclass
class StatementCounter:
    """Counts the SQL statements sent, so tests and benchmarks can hold us to 3 a refresh."""

    count: int = 0
    log: list[str] = field(default_factory=list)

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.count += 1
        self.log.append(statement)


@dataclass
class Database:
    """An open, checked, read-only gateway database."""

    engine: Engine
    url: str
    has_user_id: bool
    statements: StatementCounter
    #: The request table has `processing_time_ms` (upcoming gateways).
    has_processing_time: bool = False
    #: Orgs, teams and profiles carry per-minute rate limits.
    has_limits: bool = False
    #: Seconds a statement may run (None: no limit).
    statement_timeout: float | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """One connection for one refresh; on PostgreSQL one snapshot for all its statements.
        A server gone, a lock held too long or a statement timeout: `UsageError` (one line)."""
        try:
            with self.engine.connect() as conn:
                if self.dialect == "postgresql":
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                yield conn
        except DBAPIError as exc:
            line = _describe_database_error(exc, make_url(self.url), self.statement_timeout)
            if line is None:
                raise
            raise UsageError(line) from None

    def timestamp_bound(self, moment: datetime) -> ColumnElement:
        """A bound value comparing correctly with `management_request.timestamp`.

        SQLite keeps naive-UTC text, `YYYY-MM-DD HH:MM:SS.ffffff` or, when the
        microsecond is 0, `YYYY-MM-DD HH:MM:SS`. Text order equals time order for both
        forms if the bound itself uses the short form exactly when its microsecond is 0:
        a shorter string sorts before any longer one it prefixes.
        """
        utc = moment.astimezone(timezone.utc)
        if self.dialect == "sqlite":
            text = utc.strftime("%Y-%m-%d %H:%M:%S")
            if utc.microsecond:
                text += f".{utc.microsecond:06d}"
            return literal(text, String())
        return literal(utc, DateTime(timezone=True))

    def close(self) -> None:
        self.engine.dispose()


class _SQLiteConnection(sqlite3.Connection):
    """An SQLite connection whose running statement is interrupted once `deadline` (a
    `time.monotonic()` value, set as each statement starts) has passed."""

    deadline: float = math.inf

    def past_deadline(self) -> bool:
        return time.monotonic() > self.deadline


def _sqlite_engine(url: URL, statement_timeout: float | None) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:"):
        raise UsageError("SQLite URL must name a database file, e.g. sqlite:///path/to/db.sqlite3")
    path = Path(database).expanduser()
    if not path.is_file():
        raise UsageError(f"database file not found: {path}")
    uri = f"file:{pathname2url(str(path.resolve()))}?mode=ro"

    def creator() -> sqlite3.Connection:
        connection = sqlite3.connect(uri, uri=True, check_same_thread=False, factory=_SQLiteConnection,
                                     timeout=statement_timeout or SQLITE_BUSY_TIMEOUT)
        connection.execute("PRAGMA query_only = ON")
        connection.execute(f"PRAGMA threads = {SQLITE_SORTER_THREADS}")
        if statement_timeout:
            connection.set_progress_handler(connection.past_deadline, SQLITE_DEADLINE_STEPS)
        return connection

    engine = create_engine("sqlite://", creator=creator)
    if statement_timeout:
        _limit_sqlite_statements(engine, statement_timeout)
    return engine


def _limit_sqlite_statements(engine: Engine, seconds: float) -> None:
    """Give each statement `seconds` from its start; none for the pool's own reset."""

    def start(conn, cursor, statement, parameters, context, executemany) -> None:
        cursor.connection.deadline = time.monotonic() + seconds

    def stop(dbapi_connection, connection_record, reset_state) -> None:
        dbapi_connection.deadline = math.inf

    event.listen(engine, "before_cursor_execute", start)
    event.listen(engine, "reset", stop)


def _postgres_engine(url: URL, statement_timeout: float | None) -> Engine:
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    options = PG_SESSION_OPTIONS
    if statement_timeout:
        options += f" -c statement_timeout={max(1, round(statement_timeout * 1000))}"
    return create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"options": options, "connect_timeout": 10},
    )


def _describe_connect_error(exc: DBAPIError, url: URL) -> str:
    message = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    lowered = message.lower()
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    if any(s in lowered for s in ("authentication failed", "password", "not permitted to log in")) or (
        "role" in lowered and "does not exist" in lowered
    ):
        return f"wrong credentials for PostgreSQL at {where} (user {url.username!r})"
    if "does not exist" in lowered and "database" in lowered:
        return f"no database {url.database!r} on PostgreSQL at {where}"
    if any(s in lowered for s in ("connection refused", "could not connect", "timeout", "translate host", "resolve",
                                  "no route", "shutting down", "starting up", "terminating connection",
                                  "closed the connection")):
        return f"cannot reach PostgreSQL at {where}: {message}"
    if "file is not a database" in lowered:
        return f"not an SQLite database: {url.database}"
    return f"cannot open database: {message}"


def _describe_database_error(exc: DBAPIError, url: URL, statement_timeout: float | None) -> str | None:
    """The one line for a statement that failed because the database is away, locked or
    too slow (`statement_timeout` seconds: None, no limit); None for any other error."""
    message = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    if getattr(exc.orig, "sqlstate", None) == PG_QUERY_CANCELED or message == "interrupted":
        within = f" within the statement timeout ({statement_timeout:g} s)" if statement_timeout else ""
        return f"the database did not answer{within}: the statement was cancelled"
    if message == "database is locked":
        waited = statement_timeout or SQLITE_BUSY_TIMEOUT
        return f"the SQLite database stayed locked by a writer for more than {waited:g} s"
    if exc.connection_invalidated or (isinstance(exc, OperationalError) and url.get_backend_name() == "postgresql"):
        return _describe_connect_error(exc, url)
    return None


@dataclass(frozen=True)
class _Schema:
    """What of the optional schema a gateway has."""

    has_user_id: bool
    has_processing_time: bool
    has_limits: bool


def _check_schema(engine: Engine) -> _Schema:
    """Fail with the missing tables/columns named; say which optional columns exist."""
    inspector = inspect(engine)
    present = set(inspector.get_table_names())
    missing = [name for name in REQUIRED_COLUMNS if name not in present]
    if missing:
        raise UsageError(
            "not an Aqueduct gateway database: missing table(s) " + ", ".join(missing)
        )
    columns = {table: {column["name"] for column in inspector.get_columns(table)} for table in REQUIRED_COLUMNS}
    for table, wanted in REQUIRED_COLUMNS.items():
        absent = [name for name in wanted if name not in columns[table]]
        if absent:
            raise UsageError(f"table {table} lacks column(s) " + ", ".join(absent))
    requests = columns["management_request"]
    return _Schema(
        has_user_id=all(name in requests for name in OPTIONAL_REQUEST_COLUMNS),
        has_processing_time=PROCESSING_TIME_COLUMN in requests,
        has_limits=all(name in columns[table] for table in LIMIT_TABLES for name in LIMIT_COLUMNS),
    )


def database_url(value: str) -> str:
    """A database URL from what a person typed: an SQLAlchemy URL, or a plain SQLite file
    path. SQLite files are made absolute, so the URL names the same file in a kernel
    started in another directory."""
    if "://" not in value:
        return f"sqlite:///{Path(value).expanduser().resolve()}"
    if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
        path = value[len("sqlite:///"):]
        if path and not path.startswith(":memory:") and "?" not in path:
            return f"sqlite:///{Path(path).expanduser().resolve()}"
    return value


def _without_password(url: str) -> str:
    """`url` with the password part of `user:password@host` masked (for messages)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


def open_database(url: str, statement_timeout: float | None = None) -> Database:
    """Open a gateway database read-only and check its tables, or raise `UsageError`.
    No statement runs longer than `statement_timeout` seconds (None: no limit)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise UsageError(f"not a database URL: {_without_password(url)!r} (expected sqlite:///FILE or postgresql://...)") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = _sqlite_engine(parsed, statement_timeout)
    elif backend == "postgresql":
        try:
            engine = _postgres_engine(parsed, statement_timeout)
        except NoSuchModuleError:
            raise UsageError(f"unsupported PostgreSQL driver in {parsed.drivername!r}; use postgresql+psycopg") from None
    else:
        raise UsageError(f"unsupported database {backend!r}: use sqlite:///FILE or postgresql://...")
    try:
        found = _check_schema(engine)
    except DBAPIError as exc:
        engine.dispose()
        line = _describe_database_error(exc, parsed, statement_timeout) or _describe_connect_error(exc, parsed)
        raise UsageError(line) from None
    except UsageError:
        engine.dispose()
        raise
    counter = StatementCounter()
    event.listen(engine, "before_cursor_execute", counter)
    return Database(
        engine=engine,
        url=parsed.render_as_string(hide_password=True),
        has_user_id=found.has_user_id,
        statements=counter,
        has_processing_time=found.has_processing_time,
        has_limits=found.has_limits,
        statement_timeout=statement_timeout,
    )
