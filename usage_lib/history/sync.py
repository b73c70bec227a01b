"""`usage-dashboard sync`: settled slices from the gateway into the archive.

Every slice before the archive's watermark is complete. A run aggregates the settled
time after it (slices that ended at least the settle horizon ago) in SQL on the gateway,
a day at a time, and writes each day's slices, their roll-ups and the new watermark in
one archive transaction: a run killed at any point leaves the archive as it was before
that day, and readers only read below the watermark. Running it again changes nothing.
When the gateway's retention job deletes requests during a run, a day read after the job
that may have lost some is rolled back, and the run goes on as one started after the
job: it records a gap from the watermark.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Iterator, Sequence

from sqlalchemy import (Integer, String, Table, bindparam, case, delete, func, insert, literal, literal_column,
                        select, union_all, update)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from tqdm import tqdm

from usage_lib.core import health, latency
from usage_lib.core.queries import COMPLETION_PATH, EMBEDDING_PATH, bucket_index, catalogue_statement, no_affinity
from usage_lib.gateway.db import Database
from usage_lib.gateway.schema import management_request as request
from usage_lib.history import schema
from usage_lib.history.slices import DAY, HOUR, SLICE, chunks, floor_to, instant, micros
from usage_lib.history.store import State, Store, writer_lock

log = logging.getLogger(__name__)

DEFAULT_SETTLE = timedelta(hours=2)
#: The gateway's default REQUEST_RETENTION_DAYS: rows younger than this were not deleted
#: by its retention job, so no gap can start after it.
DEFAULT_RETENTION = timedelta(days=7)
#: Show a progress bar when a run has more days than this to catch up.
PROGRESS_AFTER_CHUNKS = 2
#: Aggregated rows moved from the gateway to the archive at a time.
BATCH = 10_000


@dataclass(frozen=True)
class SyncResult:
    """What one run did (times as aware UTC datetimes)."""

    watermark: datetime
    slices: int
    requests: int
    gap: tuple[datetime, datetime] | None
    seconds: float


def gateway_epoch(value: object) -> int | None:
    """A gateway timestamp as whole epoch seconds (floored); SQLite keeps naive-UTC text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp() // 1)


#: `chunk_statement`'s first column: which archive table a row is for.
DETAIL, HEALTH, PROCESSING = 0, 1, 2
#: `chunk_statement`'s columns after the kind and the slice index.
KEYS = ("token_id", "model", "user_id", "status_code")
HEALTH_KEYS = ("completion", "embedding", "zero_tokens", "bin")
USAGE_SUMS = ("input_tokens", "output_tokens", "completion_ms_sum", "completion_n", "embedding_ms_sum",
              "embedding_n")


def usage_statement(db: Database, slices: int):
    """`chunk_statement` without health: only `DETAIL` rows, requests and usage sums per
    (slice, token, model, user_id, status code), in its columns (health keys and the
    earliest timestamp NULL).

    Two levels as in `queries.usage_query`: group by plain columns and the raw path,
    then classify the few paths with the figures' case-insensitive LIKE (no latency bin,
    no zero-token flag, no processing pass: the grain stays about a tenth of the
    requests, where health's is nearly one group per request)."""
    stamp = String() if db.dialect == "sqlite" else request.c.timestamp.type
    bounds = [bindparam(f"bound_{i}", type_=stamp) for i in range(slices + 1)]
    column = no_affinity(request.c.timestamp) if db.dialect == "sqlite" else request.c.timestamp
    index = (bucket_index(column, bounds[1:-1], 0, slices - 1) if slices > 1 else literal(0, Integer())).label("slice_index")
    model = func.coalesce(request.c.model, "").label("model")
    user_id = request.c.user_id if db.has_user_id else literal(None, String())
    inner = (
        select(
            index, request.c.token_id, model, user_id.label("user_id"), request.c.status_code, request.c.path,
            func.count().label("requests"),
            func.coalesce(func.sum(request.c.input_tokens), 0).label("input_tokens"),
            func.coalesce(func.sum(request.c.output_tokens), 0).label("output_tokens"),
            func.coalesce(func.sum(request.c.response_time_ms), 0).label("ms_sum"),
            func.count(request.c.response_time_ms).label("ms_n"),
        )
        .where(request.c.timestamp >= bounds[0], request.c.timestamp < bounds[-1])
        .group_by(index, request.c.token_id, model, user_id, request.c.status_code, request.c.path)
        .subquery("slice_groups")
    )
    completion = inner.c.path.ilike(COMPLETION_PATH)
    embedding = inner.c.path.ilike(EMBEDDING_PATH)
    keys = [inner.c.slice_index, inner.c.token_id, inner.c.model, inner.c.user_id, inner.c.status_code]
    return select(
        literal(DETAIL, Integer()), *keys, *[literal(None, Integer())] * len(HEALTH_KEYS),
        func.sum(inner.c.requests), literal(None, stamp),
        func.sum(inner.c.input_tokens),
        func.sum(inner.c.output_tokens),
        func.sum(case((completion, inner.c.ms_sum), else_=0)),
        func.sum(case((completion, inner.c.ms_n), else_=0)),
        func.sum(case((embedding, inner.c.ms_sum), else_=0)),
        func.sum(case((embedding, inner.c.ms_n), else_=0)),
    ).group_by(*keys)


def chunk_statement(db: Database, slices: int):
    """Everything the archive keeps of `slices` consecutive slices with health (`sync`'s
    `health`), in one statement over the gateway. Bounds are bound parameters `bound_0` .. `bound_<slices>`, compared with
    timestamps as the figures compare them. Rows: kind, slice index, `KEYS`,
    `HEALTH_KEYS`, requests, the earliest timestamp, `USAGE_SUMS` (NULL where a kind has
    none):

    - `HEALTH`: requests per (slice, token, model, user_id, status code, path kind,
      zero-token flag, latency bin) with the earliest timestamp (`slice_health`);
    - `DETAIL`: those summed per (slice, token, model, user_id, status code) with the
      usage measures (`slice_detail`);
    - `PROCESSING`, where the gateway logs `processing_time_ms`: its histogram per
      (slice, token, model, user_id, path kind) (`slice_processing`; a second pass).

    The chunk's rows are read once, into the health grain (a common table expression),
    which the detail rows are summed from. Paths are classified row by row with the
    figures' case-insensitive LIKE: the health grain has nearly as many groups as a
    day has rows, and grouping by the raw path first, then classifying the day's few
    distinct paths, measured no faster (SQLite, 1M-request demo)."""
    stamp = String() if db.dialect == "sqlite" else request.c.timestamp.type
    bounds = [bindparam(f"bound_{i}", type_=stamp) for i in range(slices + 1)]
    column = no_affinity(request.c.timestamp) if db.dialect == "sqlite" else request.c.timestamp
    index = (bucket_index(column, bounds[1:-1], 0, slices - 1) if slices > 1 else literal(0, Integer())).label("slice_index")
    model = func.coalesce(request.c.model, "").label("model")
    user_id = (request.c.user_id if db.has_user_id else literal(None, String())).label("user_id")
    in_chunk = (request.c.timestamp >= bounds[0], request.c.timestamp < bounds[-1])
    kinds = [case((request.c.path.ilike(pattern), 1), else_=0).label(name)
             for name, pattern in (("completion", COMPLETION_PATH), ("embedding", EMBEDDING_PATH))]

    def grouped(*columns, by: tuple[str, ...]):
        """`columns` of the chunk's rows, grouped by slice, token, model, user_id, path
        kind and the labels `by`."""
        return select(index, request.c.token_id, model, user_id, *columns).where(*in_chunk).group_by(
            literal_column("slice_index"), request.c.token_id, model, user_id,
            *(literal_column(name) for name in ("completion", "embedding", *by)))

    groups = grouped(
        request.c.status_code, *kinds, health.zero_tokens(request).label("zero_tokens"),
        latency.bin_expression(request.c.response_time_ms).label("bin"),
        func.count().label("requests"), func.min(request.c.timestamp).label("oldest"),
        func.sum(request.c.input_tokens).label("input_tokens"), func.sum(request.c.output_tokens).label("output_tokens"),
        func.coalesce(func.sum(request.c.response_time_ms), 0).label("ms_sum"),
        func.count(request.c.response_time_ms).label("ms_n"),
        by=("status_code", "zero_tokens", "bin"),
    ).cte("chunk_groups")
    keys = [groups.c.slice_index, *(groups.c[name] for name in KEYS)]
    per_bin = select(literal(HEALTH, Integer()), *keys, *(groups.c[name] for name in HEALTH_KEYS), groups.c.requests,
                    groups.c.oldest, *[literal(None, Integer())] * len(USAGE_SUMS))
    detail = select(
        literal(DETAIL, Integer()), *keys, *[literal(None, Integer())] * len(HEALTH_KEYS), func.sum(groups.c.requests),
        literal(None, stamp), func.sum(groups.c.input_tokens), func.sum(groups.c.output_tokens),
        *(func.sum(case((groups.c[kind] == 1, groups.c[measure]), else_=0))
          for kind in ("completion", "embedding") for measure in ("ms_sum", "ms_n")),
    ).group_by(*keys)
    if not db.has_processing_time:
        return union_all(per_bin, detail)
    processing = grouped(
        literal(None, Integer()).label("status_code"), *kinds, literal(0, Integer()).label("zero_tokens"),
        latency.bin_expression(request.c.processing_time_ms).label("bin"), func.count().label("requests"),
        literal(None, stamp).label("oldest"), *[literal(None, Integer())] * len(USAGE_SUMS),
        by=("bin",),
    ).where(request.c.processing_time_ms.is_not(None)).subquery("processing_groups")
    return union_all(per_bin, detail, select(literal(PROCESSING, Integer()), processing))


def gateway_micros(value: object) -> int:
    """A gateway timestamp as whole microseconds since the epoch (exact); SQLite keeps
    naive-UTC text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return micros(value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc))


@dataclass(frozen=True)
class Batch:
    """Rows for one archive table, in its column order."""

    table: Table
    rows: list[tuple]

    def __len__(self) -> int:
        return len(self.rows)


def _archive_row(low: int, row: Sequence) -> tuple[Table, tuple]:
    """A `chunk_statement` row as a row of its table. PostgreSQL sums bigints to
    numeric (Decimal): the archive keeps integers."""
    kind, index, token_id, model, user_id, status, completion, embedding, zero, bin_, requests, oldest = row[:12]
    at = low + index * SLICE
    if kind == DETAIL:
        return schema.slice_detail, (at, token_id, model, user_id, status, int(requests), *(int(v) for v in row[12:]))
    if kind == HEALTH:
        in_flight = gateway_micros(oldest) if status is None else None
        return schema.slice_health, (at, token_id, model, user_id, status, completion, embedding, zero, bin_,
                                     int(requests), in_flight)
    return schema.slice_processing, (at, token_id, model, user_id, completion, embedding, bin_, int(requests))


class _RetentionRan(Exception):
    """A chunk was read after the gateway's retention job deleted requests it may hold."""


def _oldest_request(conn) -> object:
    """The gateway's oldest request time, as it stores it (None: it holds none)."""
    return conn.execute(select(func.min(request.c.timestamp))).scalar()


def _read_chunk(db: Database, low: int, high: int, first: object, health: bool = True) -> Iterator[Batch]:
    """The chunk's rows (`chunk_statement`, or `usage_statement` without `health`) for
    each archive table, in batches of at most `BATCH`: memory stays flat however many
    requests a day holds.

    `first`: the gateway's oldest request when the run began. The retention job deletes
    the oldest requests: the chunk was read whole if, once read (on PostgreSQL in the
    same snapshot), the gateway still holds `first` or a request before `low`; else
    `_RetentionRan`."""
    slices = (high - low) // SLICE
    params = {f"bound_{i}": db.timestamp_bound(instant(low + i * SLICE)).value for i in range(slices + 1)}
    statement = chunk_statement(db, slices) if health else usage_statement(db, slices)
    with db.connect() as conn:
        result = conn.execution_options(yield_per=BATCH).execute(statement, params)
        for batch in result.partitions():
            tables: dict[Table, list[tuple]] = {}
            for table, row in (_archive_row(low, row) for row in batch):
                tables.setdefault(table, []).append(row)
            yield from (Batch(table, rows) for table, rows in tables.items())
        oldest = _oldest_request(conn)
    if oldest != first and (oldest is None or gateway_epoch(oldest) >= low):
        raise _RetentionRan


def _roll_up(source, target, low: int, high: int, step: int, failed_from_status: bool):
    """INSERT INTO target SELECT sums of source's rows in [low, high) per (slice on the
    `step` grid, token, model)."""
    at = source.c.slice - source.c.slice % step if step != SLICE else source.c.slice
    sums = [func.sum(source.c[name]) for name in schema.DETAIL_MEASURES]
    failed = (func.sum(case((source.c.status_code >= 400, source.c.requests), else_=0))
              if failed_from_status else func.sum(source.c.failed))
    chosen = select(at, source.c.token_id, source.c.model, sums[0], failed, *sums[1:]).where(
        source.c.slice >= low, source.c.slice < high
    ).group_by(at, source.c.token_id, source.c.model)
    return insert(target).from_select(["slice", "token_id", "model", *schema.MEASURES], chosen)


def _insert(conn, batch: Batch) -> None:
    """Bulk-insert a batch: COPY on PostgreSQL (an INSERT per row was three times
    slower), the driver's executemany on SQLite."""
    columns = batch.table.columns
    names = ", ".join(column.name for column in columns)
    if conn.dialect.name == "postgresql":
        with conn.connection.dbapi_connection.cursor() as cursor:
            with cursor.copy(f"COPY {batch.table.name} ({names}) FROM STDIN") as copy:
                for row in batch.rows:
                    copy.write_row(row)
    else:
        marks = ", ".join("?" for _ in columns)
        conn.exec_driver_sql(f"INSERT INTO {batch.table.name} ({names}) VALUES ({marks})", batch.rows)


#: The tables a chunk's slices are replaced in (the coarser ones are rolled up).
SLICE_TABLES = (schema.slice_detail, schema.slice_token, schema.slice_health, schema.slice_processing)


def _write_chunk(conn, low: int, high: int, batches: Iterable[Batch], now: int, oldest: int | None) -> int:
    """Replace the chunk's slices with `batches`, roll `slice_detail` up and move the
    watermark to `high`, all in `conn`'s transaction; returns the requests."""
    for table in SLICE_TABLES:
        conn.execute(delete(table).where(table.c.slice >= low, table.c.slice < high))
    requests = 0
    for batch in batches:
        if batch.rows:
            _insert(conn, batch)
            if batch.table is schema.slice_detail:
                requests += sum(row[5] for row in batch.rows)
    conn.execute(_roll_up(schema.slice_detail, schema.slice_token, low, high, SLICE, True))
    # Whole hours (then days) complete once this chunk is in: from the one holding `low`
    # up to `high`, each summed from the next finer table.
    for finer, coarser, step in ((schema.slice_token, schema.hour_token, HOUR),
                                 (schema.hour_token, schema.day_token, DAY)):
        first, last = floor_to(low, step), floor_to(high, step)
        if first < last:
            conn.execute(delete(coarser).where(coarser.c.slice >= first, coarser.c.slice < last))
            conn.execute(_roll_up(finer, coarser, first, last, step, False))
    conn.execute(update(schema.state).where(schema.state.c.id == 1).values(
        watermark=high, gateway_oldest=oldest, synced_at=now))
    return requests


def _upsert(dialect: str, table, rows: list[dict]):
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = make(table).values(rows)
    return statement.on_conflict_do_update(
        index_elements=["id"], set_={name: statement.excluded[name] for name in rows[0] if name != "id"})


def _copy_catalogue(db: Database, store: Store, now: int) -> None:
    """Orgs and tokens as seen now (with owner, owner's org, service account and team)."""
    with db.connect() as conn:
        rows = list(conn.execute(catalogue_statement(False)).mappings())
    orgs = [{"id": r["id"], "name": r["name"], "last_seen": now} for r in rows if r["kind"] == "org"]
    columns = ["id", "name", "owner_id", "owner_email", "owner_org_id", "sa_id", "sa_name", "sa_team_id", "sa_org_id"]
    tokens = [{**{c: r[c] for c in columns}, "last_seen": now} for r in rows if r["kind"] == "token"]
    with store.engine.begin() as conn:
        for table, values in ((schema.seen_org, orgs), (schema.seen_token, tokens)):
            for start in range(0, len(values), 500):
                conn.execute(_upsert(store.dialect, table, values[start:start + 500]))


def _begin(store: Store, current: State | None, oldest: int | None, now: int, target: int,
           settle: timedelta, retention: timedelta, health: bool) -> tuple[int, tuple[int, int] | None]:
    """The watermark to start from, creating the state row on the first run, and the gap
    recorded when the gateway no longer holds requests after the watermark. With
    `health` on an archive without it, health starts at the watermark (`health_from`)."""
    with store.engine.begin() as conn:
        if current is None:
            # Never past the horizon: a row may still appear before it.
            first = min(floor_to(oldest), target) if oldest is not None else target
            conn.execute(insert(schema.state).values(
                id=1, first_slice=first, watermark=first, health_from=first if health else None,
                gateway_oldest=oldest, settle_seconds=int(settle.total_seconds()), synced_at=now))
            return first, None
        watermark = current.watermark
        # The gateway's oldest request now, even when no slice is due: readers take the
        # time before it from the archive alone (its retention job may have just run).
        conn.execute(update(schema.state).where(schema.state.c.id == 1).values(
            settle_seconds=int(settle.total_seconds()), gateway_oldest=oldest,
            **({"health_from": watermark} if health and current.health_from is None else {})))
        if oldest is not None and oldest < watermark:
            return watermark, None
        # No request of the gateway is older than `oldest` (or it holds none at all): the
        # time in between holds none. If the retention job may have deleted some there,
        # it is a gap.
        resume = min(floor_to(oldest), target) if oldest is not None else target
        gap_end = min(resume, floor_to(now - retention.total_seconds()))
        gap = (watermark, gap_end) if gap_end > watermark else None
        if gap:
            conn.execute(insert(schema.gap).values(start=gap[0], end=gap[1]))
            log.warning("archive gap %s to %s: the gateway deleted those requests before a sync",
                        instant(gap[0]).isoformat(), instant(gap[1]).isoformat())
        if resume > watermark:
            # Nothing to read up to `resume`: written as an empty chunk, so that the hour
            # holding the old watermark is rolled up with the slices synced before it.
            _write_chunk(conn, watermark, resume, [], now, oldest)
        return max(resume, watermark), gap


def sync(
    db: Database,
    store: Store,
    now: datetime | None = None,
    settle: timedelta = DEFAULT_SETTLE,
    retention: timedelta = DEFAULT_RETENTION,
    progress: bool = False,
    wait: bool = False,
    health: bool = False,
) -> SyncResult:
    """Write every settled slice after the watermark (see the module's docstring).

    `settle`: a slice is written once it ended at least this long before `now` (longer
    than the gateway's longest stream). `retention`: the gateway's REQUEST_RETENTION_DAYS
    (only used to tell a gap from quiet time). One writer at a time (`writer_lock`).

    `health`: also archive health histograms (`slice_health`, `slice_processing`) from
    the watermark on, which `compute_health(..., archive=...)` then reads; several times
    slower (docs/history.md). Once an archive keeps health (`State.health_from` set),
    every later sync keeps writing it, with or without `health`.
    """
    started = time.perf_counter()
    moment = now or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now_s = int(moment.timestamp())
    target = floor_to(now_s - settle.total_seconds())
    written = requests = 0
    gap = None
    with writer_lock(store, wait=wait):
        _copy_catalogue(db, store, now_s)
        while True:
            with db.connect() as conn:
                first = _oldest_request(conn)
            oldest = gateway_epoch(first)
            current = store.state()
            # An archive that keeps health keeps it: no slice after `health_from` without it.
            health = health or (current is not None and current.health_from is not None)
            start, found = _begin(store, current, oldest, now_s, target, settle, retention, health)
            gap = found or gap
            work = chunks(start, target, DAY)
            bar = tqdm(work, unit="day", desc="sync", disable=not progress or len(work) <= PROGRESS_AFTER_CHUNKS)
            try:
                for low, high in bar:
                    with store.engine.begin() as conn:
                        requests += _write_chunk(conn, low, high, _read_chunk(db, low, high, first, health), now_s,
                                                 oldest)
                    written += (high - low) // SLICE
                    bar.set_postfix(requests=requests, refresh=False)
                break
            except _RetentionRan:
                bar.close()  # that day was rolled back: begin again from the watermark
        watermark = max(start, target)
    return SyncResult(
        watermark=instant(watermark),
        slices=written,
        requests=int(requests),
        gap=None if gap is None else (instant(gap[0]), instant(gap[1])),
        seconds=time.perf_counter() - started,
    )
