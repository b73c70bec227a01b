"""Benchmark: refreshes with the usage archive (issue 13) against the direct path, and sync.

    .venv/bin/python benchmarks/history.py                 # 1M and 10M (about 15 min once the DBs exist)
    .venv/bin/python benchmarks/history.py --quick         # 1M only, fewer repetitions (about 3 min)
    .venv/bin/python benchmarks/history.py --sizes 1000000 --backends postgresql

Uses the demo databases of benchmarks/refresh.py (benchmarks/datasets.py: built once
under benchmarks/data/, fixed seed, traffic ending at datasets.NOW; the PostgreSQL server
of benchmarks/pgserver.py). A database not built yet is skipped (`--build` builds it).
Archives are made fresh by each run under benchmarks/data/history/ (SQLite files) and as
`hist_*` databases on the benchmark's PostgreSQL server. Each measurement runs in a
fresh subprocess, one at a time. `now` is always datasets.NOW, the settle horizon 2 h.

1. Refresh, direct vs archive, for each case of refresh.py's CASES, on the 1M SQLite
   gateway (SQLite archive) and the 1M PostgreSQL gateway (PostgreSQL archive on the
   same server): medians of warm refreshes, direct and archive alternated; speed-up
   (target >= 10x); figures equal (metrics, timeseries, top, models); statements sent
   to the gateway per refresh (target <= 3); the gateway rows left to it (head + tail
   ranges of the archive's plan, counted by a separate COUNT outside the timed part)
   against the rows of the whole window.
2. The same at 10M on PostgreSQL (every case; the target, >= 20x, is for the global
   admin's week).
3. A 30-day range (span 1m) over 30+ days of archived history at about 10M requests a
   week: the largest size's archive with its last whole week (hour-aligned) copied back
   by whole weeks and its measures scaled by a whole factor to about 10M requests a
   week; SQLite and PostgreSQL archives, the PostgreSQL gateway of that size for the
   tail. Target: < 300 ms per refresh for the global admin.
4. Sync: catch-up speed from the PostgreSQL gateway into a fresh archive (SQLite file,
   PostgreSQL database), requests/s (target >= 100k/s), with the time in the gateway's
   aggregate statement and in the archive's writes, and the subprocess's peak memory
   (ru_maxrss; must not grow with requests). Also the 1M SQLite gateway into its SQLite
   archive (used by part 1). A steady one-minute sync at the largest size: the archive
   as a sync at now - 1 min left it (watermark now - settle - 15 min), then a sync at
   now (writes one slice; target < 200 ms), and a sync with nothing to write.
   With `--health`, each catch-up is also run with health (`sync --health`: the health
   histograms too) into a second fresh archive, reported beside it (the target is the
   default sync's).

Results go to benchmarks/results/history-<time>.json (gitignored); the table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for path in (str(REPO), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

import datasets  # noqa: E402
from refresh import CASES, _environment, _fmt_ms, _log, _sizes  # noqa: E402

DEFAULT_SIZES = (1_000_000, 10_000_000)
WEEK = 7 * 24 * 3600
SETTLE = timedelta(hours=2)

TARGET_SPEEDUP_1M = 10
TARGET_SPEEDUP_10M = 20
TARGET_STATEMENTS = 3
TARGET_30D_MS = 300
TARGET_SYNC_RATE = 100_000
TARGET_STEADY_MS = 200
TARGET_30D_WEEKLY = 10_000_000


# --------------------------------------------------------------------------------------
# Workers: one measurement in a fresh process
# --------------------------------------------------------------------------------------


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _count_statements(engine) -> list[int]:
    from sqlalchemy import event

    counter = [0]

    @event.listens_for(engine, "before_cursor_execute")
    def _count(*_args):
        counter[0] += 1

    return counter


def _sql_timer(engine) -> list[float]:
    from sqlalchemy import event

    total = [0.0]
    started: list[float] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _before(*_args):
        started.append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _after(*_args):
        total[0] += time.perf_counter() - started.pop()

    return total


def _figures(usage) -> dict:
    data = usage.to_json()
    return {name: data[name] for name in ("metrics", "timeseries", "models", "top")}


def _rows_in(db, ranges) -> int:
    from sqlalchemy import func, select

    from usage_lib.gateway.schema import management_request as request

    total = 0
    with db.engine.connect() as conn:
        for low, high in ranges:
            query = select(func.count()).select_from(request).where(request.c.timestamp >= db.timestamp_bound(low))
            if high is not None:
                query = query.where(request.c.timestamp < db.timestamp_bound(high))
            total += int(conn.execute(query).scalar_one())
    return total


def worker_refresh(spec: dict) -> dict:
    """Direct and archive refreshes alternated (or archive only), one case."""
    from usage_lib import Selection, compute_usage, load_router_config, open_database
    from usage_lib.core.queries import window_ranges
    from usage_lib.history.archive import open_archive

    now = datetime.fromisoformat(spec["now"])
    models = load_router_config(spec["router_config"])
    selection = Selection(org=spec["org"], span=spec["span"], now=now)
    db = open_database(spec["gateway"])
    archive = open_archive(spec["archive"])
    gateway_sql = _sql_timer(db.engine)
    archive_statements = _count_statements(archive.store.engine)
    settled_seconds = [0.0]
    settled = archive.settled

    def timed_settled(*args, **kwargs):
        began = time.perf_counter()
        try:
            return settled(*args, **kwargs)
        finally:
            settled_seconds[0] += time.perf_counter() - began

    archive.settled = timed_settled

    def refresh(mode: str):
        db.statements.count = 0
        archive_statements[0] = 0
        gateway_sql[0] = settled_seconds[0] = 0.0
        began = time.perf_counter()
        usage = compute_usage(db, spec["viewer"], selection, models, archive=archive if mode == "archive" else None)
        return {"usage": usage, "seconds": time.perf_counter() - began, "statements": db.statements.count,
                "archive_statements": archive_statements[0], "gateway_sql": gateway_sql[0],
                "archive_read": settled_seconds[0]}

    modes = ["direct", "archive"] if spec["direct"] else ["archive"]
    last = {mode: refresh(mode) for mode in modes}  # warm: caches, imports, plans
    runs: dict[str, list[dict]] = {mode: [] for mode in modes}
    for i in range(spec["repeat"]):
        for mode in (modes if i % 2 == 0 else modes[::-1]):
            last[mode] = refresh(mode)
            runs[mode].append(last[mode])
    rss_peak = _rss_mb()

    def summary(mode: str) -> dict:
        items = runs[mode]
        return {
            "median_ms": statistics.median(r["seconds"] for r in items) * 1000,
            "times_ms": [r["seconds"] * 1000 for r in items],
            "gateway_sql_median_ms": statistics.median(r["gateway_sql"] for r in items) * 1000,
            "archive_read_median_ms": statistics.median(r["archive_read"] for r in items) * 1000,
            "statements": max(r["statements"] for r in items),
            "archive_statements": max(r["archive_statements"] for r in items),
        }

    usage = last["archive"]["usage"]
    by_user_id = usage.scope.top_kind == "user_id" and db.has_user_id
    cuts = tuple(edge.astimezone(timezone.utc) for edge in usage.window.edges)  # no prices: the bucket edges
    plan = archive.settled(usage.scope, usage.window, cuts, models, by_user_id)
    result = {
        "archive": summary("archive"),
        "window_rows": _rows_in(db, window_ranges(usage.window)),
        "gateway_rows": _rows_in(db, plan.gateway_ranges),
        "gateway_ranges": [[low.isoformat(), None if high is None else high.isoformat()]
                           for low, high in plan.gateway_ranges],
        "archive_groups": len(plan.keys),
        "reach_rows": usage.metrics.total_requests,
        "notices": list(usage.notices),
        "rss_peak_mb": rss_peak,
        "load_during": list(os.getloadavg()),
    }
    if spec["direct"]:
        direct = last["direct"]["usage"]
        same = _figures(direct) == _figures(usage)
        differences = [] if same else [name for name in ("metrics", "timeseries", "models", "top")
                                       if _figures(direct)[name] != _figures(usage)[name]]
        result.update(direct=summary("direct"), same_figures=same, differences=differences,
                      speedup=result["archive"]["median_ms"] and summary("direct")["median_ms"] / summary("archive")["median_ms"])
    archive.close()
    db.close()
    return result


def _instrument_sync():
    """Time the gateway's aggregate statement and the archive's writes of each chunk.

    A chunk's rows stream from the gateway into the archive's transaction in batches:
    the read time is the time spent waiting for batches, the write time the rest."""
    from usage_lib.history import sync as sync_module

    times = {"read": [], "write": [], "rows": []}
    read, write = sync_module._read_chunk, sync_module._write_chunk

    def timed_read(*args, **kwargs):
        spent, rows = 0.0, 0
        batches = iter(read(*args, **kwargs))
        while True:
            began = time.perf_counter()
            batch = next(batches, None)
            spent += time.perf_counter() - began
            if batch is None:
                break
            rows += len(batch)
            yield batch
        times["read"].append(spent)
        times["rows"].append(rows)

    def timed_write(*args, **kwargs):
        began = time.perf_counter()
        reads = len(times["read"])
        try:
            return write(*args, **kwargs)
        finally:
            spent = times["read"][-1] if len(times["read"]) > reads else 0.0
            times["write"].append(time.perf_counter() - began - spent)

    sync_module._read_chunk, sync_module._write_chunk = timed_read, timed_write
    return times


def _archive_rows(store) -> dict:
    from sqlalchemy import func, select

    from usage_lib.history import schema

    with store.engine.connect() as conn:
        return {table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for table in (schema.slice_detail, schema.slice_token, schema.hour_token, schema.slice_health)}


def worker_catchup(spec: dict) -> dict:
    """One sync into a fresh archive (catch-up of everything the gateway holds)."""
    from usage_lib import open_database
    from usage_lib.history.store import open_store
    from usage_lib.history.sync import sync

    rss_start = _rss_mb()
    times = _instrument_sync()
    now = datetime.fromisoformat(spec["now"])
    db = open_database(spec["gateway"])
    began = time.perf_counter()
    store = open_store(spec["archive"], writable=True)
    open_seconds = time.perf_counter() - began
    result = sync(db, store, now=now, settle=SETTLE, health=spec.get("health", False))
    rss_peak = _rss_mb()
    reads, writes = times["read"], times["write"]
    out = {
        "health": spec.get("health", False),
        "open_migrate_s": open_seconds,
        "sync_s": result.seconds,
        "synced": result.requests,
        "slices": result.slices,
        "days": len(reads),
        "rate": result.requests / result.seconds,
        "read_s": sum(reads), "write_s": sum(writes),
        "read_day_median_s": statistics.median(reads) if reads else None,
        "write_day_median_s": statistics.median(writes) if writes else None,
        "read_day_max_s": max(reads, default=None), "write_day_max_s": max(writes, default=None),
        "detail_rows_day_max": max(times["rows"], default=0),
        "detail_rows_day_median": statistics.median(times["rows"]) if times["rows"] else 0,
        "rss_start_mb": rss_start, "rss_peak_mb": rss_peak,
        "archive_rows": _archive_rows(store),
        "watermark": result.watermark.isoformat(),
        "load_during": list(os.getloadavg()),
    }
    store.close()
    db.close()
    return out


def worker_steady(spec: dict) -> dict:
    """Minute syncs on a caught-up archive: one that writes the next slice, one with none."""
    from sqlalchemy import update

    from usage_lib import open_database
    from usage_lib.history import schema
    from usage_lib.history.slices import floor_to
    from usage_lib.history.store import open_store
    from usage_lib.history.sync import sync

    times = _instrument_sync()
    now = datetime.fromisoformat(spec["now"])
    db = open_database(spec["gateway"])
    store = open_store(spec["archive"], writable=True)
    target = floor_to(now.timestamp() - SETTLE.total_seconds())
    before = floor_to((now - timedelta(minutes=1)).timestamp() - SETTLE.total_seconds())
    assert before < target, "now - settle must be on a slice boundary for a slice-writing minute"
    with store.engine.begin() as conn:
        conn.execute(update(schema.state).where(schema.state.c.id == 1).values(watermark=target))
    sync(db, store, now=now, settle=SETTLE)  # warm (nothing to write)
    writing, idle, slices, requests = [], [], set(), set()
    for _ in range(spec["repeat"]):
        # As a sync at now - 1 min left it: every slice before `before` written.
        with store.engine.begin() as conn:
            conn.execute(update(schema.state).where(schema.state.c.id == 1).values(watermark=before))
        result = sync(db, store, now=now, settle=SETTLE)
        writing.append(result.seconds)
        slices.add(result.slices)
        requests.add(result.requests)
        idle.append(sync(db, store, now=now, settle=SETTLE).seconds)
    out = {
        "writing_median_ms": statistics.median(writing) * 1000,
        "writing_times_ms": [t * 1000 for t in writing],
        "idle_median_ms": statistics.median(idle) * 1000,
        "slices": sorted(slices), "slice_requests": sorted(requests),
        "read_median_ms": statistics.median(times["read"]) * 1000,
        "write_median_ms": statistics.median(times["write"]) * 1000,
        "rss_peak_mb": _rss_mb(),
    }
    store.close()
    db.close()
    return out


WORKERS = {"refresh": worker_refresh, "catchup": worker_catchup, "steady": worker_steady}


# --------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------


def _spawn(spec: dict, timeout: float) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if completed.returncode != 0:
        raise RuntimeError(f"worker {spec['kind']} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _sqlite_path(url: str) -> Path:
    return Path(url.split("sqlite:///", 1)[1])


def _fresh_sqlite(path: Path) -> str:
    for suffix in ("", "-wal", "-shm", ".sync-lock"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _fresh_pg(server, name: str, template: str | None = None) -> str:
    server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                 f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else " TEMPLATE template0 ENCODING 'UTF8'"))
    return server.database_url(name)


def _pg_vacuum(url: str) -> None:
    """VACUUM ANALYZE the archive after a bulk write, as autovacuum would shortly after."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("VACUUM (ANALYZE)"))
    finally:
        engine.dispose()


def fill_30_days(url: str, weeks: int, weekly: int, log=_log) -> dict:
    """Turn a synced archive into `weeks` + 1 weeks of history: keep its last whole week
    (hour-aligned, ending at the watermark's hour), scale every measure by a whole factor
    to about `weekly` requests a week, copy that week back by whole weeks, and roll the
    hours up into days again."""
    import sqlalchemy as sa

    from usage_lib.history import schema
    from usage_lib.history.slices import DAY, ceil_to, floor_to
    from usage_lib.history.sync import _roll_up

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    tables = (schema.slice_detail, schema.slice_token, schema.hour_token)
    try:
        with engine.begin() as conn:
            watermark = conn.execute(sa.select(schema.state.c.watermark)).scalar_one()
            high = floor_to(watermark, 3600)
            low = high - WEEK
            for table in tables:
                conn.execute(sa.delete(table).where(table.c.slice < low))
            source = int(conn.execute(sa.select(sa.func.sum(schema.slice_token.c.requests))
                                      .where(schema.slice_token.c.slice < high)).scalar_one())
            factor = max(1, round(weekly / source))
            if factor > 1:
                for table in tables:
                    names = schema.DETAIL_MEASURES if table is schema.slice_detail else schema.MEASURES
                    conn.execute(sa.update(table).values({name: table.c[name] * factor for name in names}))
            for table in tables:
                columns = [c.name for c in table.columns]
                for k in range(1, weeks + 1):
                    chosen = sa.select(*[(table.c.slice - k * WEEK) if c == "slice" else table.c[c] for c in columns]) \
                        .where(table.c.slice >= low, table.c.slice < high)
                    conn.execute(sa.insert(table).from_select(columns, chosen))
            first = low - weeks * WEEK
            # The daily roll-up again, from the copied hours: every whole UTC day.
            days = (ceil_to(first, DAY), floor_to(high, DAY))
            conn.execute(sa.delete(schema.day_token))
            conn.execute(_roll_up(schema.hour_token, schema.day_token, *days, DAY, False))
            conn.execute(sa.update(schema.state).values(first_slice=first))
            rows = {table.name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
                    for table in tables}
    finally:
        engine.dispose()
    if url.startswith("postgresql"):
        _pg_vacuum(url)
    info = {"source_week_requests": source, "factor": factor, "weekly_requests": source * factor,
            "first_slice": datetime.fromtimestamp(first, timezone.utc).isoformat(),
            "days": (watermark - first) / 86400, "archive_rows": rows}
    log(f"    30-day archive: {info['days']:.1f} days, {source:,} x {factor} = {source * factor:,} requests/week, rows {rows}")
    return info


def _copy_sqlite(source: Path, target: Path) -> str:
    url = _fresh_sqlite(target)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    target.chmod(0o600)
    return url


def _refresh_spec(args, gateway: str, archive: str, case, span: str | None, direct: bool, repeat: int) -> dict:
    case_id, label, viewer, org, case_span = case
    return {"kind": "refresh", "gateway": gateway, "archive": archive, "router_config": str(args.router_config),
            "now": datasets.NOW.isoformat(), "viewer": viewer, "org": org, "span": span or case_span,
            "direct": direct, "repeat": repeat}


def run(args, server, gateways: dict, log=_log) -> dict:
    now = datasets.NOW.isoformat()
    hist = datasets.DATA / "history"
    hist.mkdir(parents=True, exist_ok=True)
    out = {"catchup": [], "refresh": [], "steady": [], "range_30d": [], "fill_30d": {}}
    archives: dict[tuple, str] = {}

    # 4a. catch-ups into fresh archives (they are also the archives parts 1-3 read)
    log("catch-up syncs into fresh archives ...")
    for (backend, size), gateway in gateways.items():
        targets = []
        if backend == "postgresql":
            targets.append(("postgresql", _fresh_pg(server, f"hist_{size}")))
            targets.append(("sqlite", _fresh_sqlite(hist / f"archive-pg-{size}.sqlite3")))
        else:
            targets.append(("sqlite", _fresh_sqlite(hist / f"archive-sqlite-{size}.sqlite3")))
        for archive_backend, url in targets:
            log(f"  {backend} {size:,} -> {archive_backend} archive ...")
            result = _spawn({"kind": "catchup", "gateway": gateway, "archive": url, "now": now}, args.timeout)
            if archive_backend == "postgresql":
                _pg_vacuum(url)
            archives[(backend, size, archive_backend)] = url
            out["catchup"].append({"gateway": backend, "requests": size, "archive": archive_backend, **result})
            log(f"    {result['synced']:,} requests in {result['sync_s']:.1f} s = {result['rate']:,.0f}/s "
                f"(gateway {result['read_s']:.1f} s, archive writes {result['write_s']:.1f} s, {result['days']} days), "
                f"peak RSS {result['rss_peak_mb']:.0f} MB")
            if args.health:
                log(f"  {backend} {size:,} -> {archive_backend} archive, with health ...")
                health_url = (_fresh_pg(server, f"hist_{size}_health") if archive_backend == "postgresql" else
                              _fresh_sqlite(hist / f"archive-{'pg' if backend == 'postgresql' else 'sqlite'}-{size}-health.sqlite3"))
                result = _spawn({"kind": "catchup", "gateway": gateway, "archive": health_url, "now": now,
                                 "health": True}, args.timeout)
                out["catchup"].append({"gateway": backend, "requests": size, "archive": archive_backend, **result})
                log(f"    {result['synced']:,} requests in {result['sync_s']:.1f} s = {result['rate']:,.0f}/s "
                    f"(gateway {result['read_s']:.1f} s, archive writes {result['write_s']:.1f} s), "
                    f"{result['archive_rows']['slice_health']:,} slice_health rows")

    # 1 + 2. direct vs archive, same backend kind
    log("refreshes, direct vs archive (alternated) ...")
    for (backend, size), gateway in gateways.items():
        archive = archives[(backend, size, backend)]
        repeat = args.repeat_10m if size >= 5_000_000 else args.repeat
        for case in CASES:
            log(f"  {backend} {size:,} {case[1]} ...")
            result = _spawn(_refresh_spec(args, gateway, archive, case, None, True, repeat), args.timeout)
            row = {"gateway": backend, "requests": size, "archive_backend": backend, "case": case[0],
                   "label": case[1], "span": case[4], **result}
            out["refresh"].append(row)
            log(f"    direct {result['direct']['median_ms']:8.1f} ms  archive {result['archive']['median_ms']:7.1f} ms "
                f"x{result['speedup']:.1f}  same={result['same_figures']}  gateway statements "
                f"{result['archive']['statements']}  gateway rows {result['gateway_rows']:,}/{result['window_rows']:,}")

    pg_sizes = sorted(size for (backend, size) in gateways if backend == "postgresql")
    if pg_sizes:
        size = pg_sizes[-1]
        gateway = gateways[("postgresql", size)]
        # 4b. steady one-minute sync
        log(f"steady one-minute sync at {size:,} ...")
        for archive_backend in ("postgresql", "sqlite"):
            url = archives[("postgresql", size, archive_backend)]
            result = _spawn({"kind": "steady", "gateway": gateway, "archive": url, "now": now,
                             "repeat": args.steady_repeat}, args.timeout)
            out["steady"].append({"gateway": "postgresql", "requests": size, "archive": archive_backend, **result})
            log(f"  {archive_backend} archive: writing one slice {result['writing_median_ms']:.0f} ms "
                f"(gateway read {result['read_median_ms']:.0f} ms, write {result['write_median_ms']:.0f} ms), "
                f"nothing to write {result['idle_median_ms']:.0f} ms")

        # 3. 30 days of history
        log(f"30-day range over {args.weeks + 1} weeks of archived history (from the {size:,} archive) ...")
        copies = {
            "postgresql": lambda: _fresh_pg(server, "hist_30d", template=f"hist_{size}"),
            "sqlite": lambda: _copy_sqlite(_sqlite_path(archives[("postgresql", size, "sqlite")]),
                                           hist / "archive-30d.sqlite3"),
        }
        for archive_backend, make in copies.items():
            url = make()
            out["fill_30d"][archive_backend] = fill_30_days(url, args.weeks, TARGET_30D_WEEKLY, log=log)
            for case in CASES:
                result = _spawn(_refresh_spec(args, gateway, url, case, "1m", False, args.repeat), args.timeout)
                out["range_30d"].append({"gateway": "postgresql", "requests": size, "archive_backend": archive_backend,
                                         "case": case[0], "label": case[1].rsplit(", ", 1)[0] + ", 1m", "span": "1m",
                                         **result})
                log(f"  {archive_backend} archive, {out['range_30d'][-1]['label']}: {result['archive']['median_ms']:.1f} ms "
                    f"(archive read {result['archive']['archive_read_median_ms']:.1f} ms), gateway statements "
                    f"{result['archive']['statements']}, gateway rows {result['gateway_rows']:,}")
    return out


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def table_lines(out: dict) -> list[str]:
    lines = ["Refresh, direct vs archive (median ms, warm, alternated; gateway statements per refresh)", "",
             "| gateway | requests | archive | case | direct ms | archive ms (archive read) | speed-up | same figures "
             "| gateway stmts | archive stmts | gateway rows read / rows in window |",
             "|" + "---|" * 11]
    for r in out["refresh"]:
        a, d = r["archive"], r["direct"]
        lines.append(
            f"| {r['gateway']} | {r['requests']:,} | {r['archive_backend']} | {r['label']} | {_fmt_ms(d['median_ms'])} | "
            f"{_fmt_ms(a['median_ms'])} ({_fmt_ms(a['archive_read_median_ms'])}) | x{r['speedup']:.1f} | "
            f"{'yes' if r['same_figures'] else 'NO ' + ','.join(r['differences'])} | {a['statements']} | "
            f"{a['archive_statements']} | {r['gateway_rows']:,} / {r['window_rows']:,} |")
    if out["range_30d"]:
        lines += ["", "30-day range (span 1m) over archived history (archive only; the gateway has the 2 h tail)", "",
                  "| archive | history | case | refresh ms (archive read) | gateway stmts | archive stmts | archive groups "
                  "| requests in figures |", "|" + "---|" * 8]
        for r in out["range_30d"]:
            fill = out["fill_30d"][r["archive_backend"]]
            a = r["archive"]
            lines.append(
                f"| {r['archive_backend']} | {fill['days']:.0f} days, {fill['weekly_requests'] / 1e6:.1f}M/week "
                f"(from {r['requests'] / 1e6:.0f}M) | {r['label']} | {_fmt_ms(a['median_ms'])} "
                f"({_fmt_ms(a['archive_read_median_ms'])}) | {a['statements']} | {a['archive_statements']} | "
                f"{r['archive_groups']:,} | {r['reach_rows']:,} |")
    lines += ["", "Sync: catch-up into a fresh archive (now = datasets.NOW, settle 2 h)", "",
              "| gateway | requests | archive | health | requests synced | days | seconds | requests/s | gateway aggregate s "
              "(median/max per day) | archive writes s (median/max per day) | archive rows detail/slice/hour/health "
              "| peak RSS MB |",
              "|" + "---|" * 12]
    for r in out["catchup"]:
        rows = r["archive_rows"]
        lines.append(
            f"| {r['gateway']} | {r['requests']:,} | {r['archive']} | {'yes' if r.get('health') else 'no'} | "
            f"{r['synced']:,} | {r['days']} | {r['sync_s']:.1f} | "
            f"{r['rate']:,.0f} | {r['read_s']:.1f} ({r['read_day_median_s']:.2f}/{r['read_day_max_s']:.2f}) | "
            f"{r['write_s']:.1f} ({r['write_day_median_s']:.2f}/{r['write_day_max_s']:.2f}) | "
            f"{rows['slice_detail']:,}/{rows['slice_token']:,}/{rows['hour_token']:,}/{rows['slice_health']:,} | "
            f"{r['rss_peak_mb']:.0f} |")
    if out["steady"]:
        lines += ["", "Steady one-minute sync (archive as a sync at now - 1 min left it)", "",
                  "| gateway | archive | sync writing one slice ms (gateway read / archive write) | sync with nothing to write ms |",
                  "|---|---|---|---|"]
        for r in out["steady"]:
            lines.append(f"| postgresql {r['requests']:,} | {r['archive']} | {_fmt_ms(r['writing_median_ms'])} "
                         f"({_fmt_ms(r['read_median_ms'])} / {_fmt_ms(r['write_median_ms'])}) | {_fmt_ms(r['idle_median_ms'])} |")
    return lines


def check_targets(out: dict) -> list[dict]:
    checks = []

    def add(target, measured, met):
        checks.append({"target": target, "measured": measured, "met": met})

    for r in out["refresh"]:
        big = r["requests"] >= 5_000_000
        if big and r["case"] != "admin_all_1w":
            continue
        want = TARGET_SPEEDUP_10M if big else TARGET_SPEEDUP_1M
        add(f"{r['gateway']} {r['requests']:,} {r['case']}: speed-up >= {want}x", round(r["speedup"], 1), r["speedup"] >= want)
    if out["refresh"]:
        worst = max(r["archive"]["statements"] for r in out["refresh"] + out["range_30d"])
        add(f"<= {TARGET_STATEMENTS} gateway statements per archive refresh", worst, worst <= TARGET_STATEMENTS)
        same = all(r["same_figures"] for r in out["refresh"])
        add("figures equal, direct vs archive", same, same)
    for r in out["range_30d"]:
        if r["case"] == "admin_all_1w":
            ms = r["archive"]["median_ms"]
            add(f"30-day range, {r['archive_backend']} archive, global admin < {TARGET_30D_MS} ms", round(ms, 1), ms < TARGET_30D_MS)
    for r in out["catchup"]:
        if r["gateway"] == "postgresql" and not r.get("health"):
            add(f"catch-up from PostgreSQL {r['requests']:,} into {r['archive']} >= {TARGET_SYNC_RATE:,}/s",
                round(r["rate"]), r["rate"] >= TARGET_SYNC_RATE)
    for r in out["steady"]:
        ms = r["writing_median_ms"]
        add(f"steady minute sync at {r['requests']:,} ({r['archive']} archive) < {TARGET_STEADY_MS} ms", round(ms, 1),
            ms < TARGET_STEADY_MS)
    for backend in ("postgresql", "sqlite"):
        rows = sorted((r for r in out["catchup"] if r["gateway"] == "postgresql" and r["archive"] == backend
                       and not r.get("health")),
                      key=lambda r: r["requests"])
        if len(rows) > 1:
            growth = rows[-1]["rss_peak_mb"] - rows[0]["rss_peak_mb"]
            add(f"catch-up peak RSS flat {rows[0]['requests']:,} -> {rows[-1]['requests']:,} ({backend} archive; growth MB)",
                round(growth, 1), growth < 50)
    return checks


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=_sizes, default=list(DEFAULT_SIZES),
                        help="comma-separated request counts (default 1000000,10000000)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="gateway backends: sqlite,postgresql")
    parser.add_argument("--sqlite-max", type=int, default=1_000_000,
                        help="skip SQLite gateways above this size (default 1000000)")
    parser.add_argument("--quick", action="store_true", help="1M only, fewer repetitions (about 3 min)")
    parser.add_argument("--repeat", type=int, default=7, help="timed refreshes per mode and case (median)")
    parser.add_argument("--repeat-10m", type=int, default=3, help="the same at >= 5M")
    parser.add_argument("--steady-repeat", type=int, default=7, help="steady minute syncs (median)")
    parser.add_argument("--weeks", type=int, default=4, help="weeks copied back for the 30-day range (default 4: 35 days)")
    parser.add_argument("--build", action="store_true", help="build missing demo databases (10M: several minutes each)")
    parser.add_argument("--data-dir", type=Path, default=datasets.DATA)
    parser.add_argument("--keep-server", action="store_true", help="leave the benchmark's server running")
    parser.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/history-<time>.json)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per measurement subprocess")
    parser.add_argument("--health", action="store_true",
                        help="also time each catch-up with health (sync --health) into a second fresh archive")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(WORKERS[spec["kind"]](spec)))
        return 0
    if args.quick:
        args.sizes = [1_000_000]
        args.repeat, args.steady_repeat = min(args.repeat, 3), min(args.steady_repeat, 3)

    started = time.perf_counter()
    load_start = os.getloadavg()
    datasets.configure(args.data_dir)
    args.router_config = datasets.write_router_config()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    server = None
    gateways: dict[tuple[str, int], str] = {}
    skipped = []
    try:
        from pgserver import PersistentPostgres

        server = PersistentPostgres(datasets.DATA / "pg")
        _log(f"starting the benchmark's PostgreSQL server in {server.base} (archives live there too) ...")
        server.start()
        present = server.databases()
        for size in args.sizes:
            if "sqlite" in backends and size <= args.sqlite_max:
                path = datasets.DATA / f"demo-{size}.sqlite3"
                if path.exists() or args.build:
                    gateways[("sqlite", size)] = datasets.sqlite_database(size, log=_log)[0]
                else:
                    skipped.append(f"sqlite-{size}: not built (--build)")
        for size in args.sizes:
            if "postgresql" in backends:
                if f"demo_{size}" in present or args.build:
                    gateways[("postgresql", size)] = datasets.postgres_database(server, size, log=_log)[0]
                else:
                    skipped.append(f"postgresql-{size}: not built (--build)")
        for note in skipped:
            _log(f"skipped {note}")
        pg_version = server.version()
        out = run(args, server, gateways)
    finally:
        if server is not None and not args.keep_server:
            server.stop()

    load_end = os.getloadavg()
    result = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "benchmarks/history.py", *(argv if argv is not None else sys.argv[1:])]),
        "environment": _environment(pg_version),
        "load_average_start": load_start, "load_average_end": load_end,
        "data": {"seed": datasets.SEED, "now": datasets.NOW.isoformat(), "skipped": skipped},
        "seconds_total": time.perf_counter() - started,
        **out,
        "targets": check_targets(out),
    }
    out_path = args.out or (HERE / "results" / f"history-{datetime.now():%Y%m%d-%H%M%S}.json")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2, default=str))

    print("\n".join(table_lines(out)))
    print()
    for check in result["targets"]:
        state = {True: "met", False: "MISSED", None: "not measured"}[check["met"]]
        print(f"- {check['target']}: {check['measured']} -> {state}")
    for note in skipped:
        print(f"- skipped {note}")
    print(f"\nload average start {load_start[0]:.2f}/{load_start[1]:.2f}/{load_start[2]:.2f}, "
          f"end {load_end[0]:.2f}/{load_end[1]:.2f}/{load_end[2]:.2f}; total {result['seconds_total']:.0f} s; "
          f"results: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
