"""Benchmark: one full dashboard refresh at 100k, 1M and 10M requests (issue 6).

    .venv/bin/python benchmarks/refresh.py                    # everything (about 8 min; 8 more to build the databases)
    .venv/bin/python benchmarks/refresh.py --sizes 1000000 --backends postgresql --no-browser

For each database size, on SQLite and on a real PostgreSQL server (the gateway's indexes,
ANALYZE and VACUUM done), and for three viewers

- global admin, All orgs, span 1w       (admin@acme.example)
- org admin, own org, span 1d           (carol@acme.example)
- standard user with teams, span 1w     (dave@acme.example)

it measures, each case in a fresh subprocess:

- the median time of one full refresh (`usage_lib.compute_usage`: every figure), warm
  (one untimed refresh first), and the part of it spent in the SQL statements;
- the number of SQL statements per refresh (engine event; the target is at most 3);
- the rows in the window (all requests with `timestamp >= now - span`) and the rows in
  the viewer's figures (their total requests);
- the process's peak memory: `ru_maxrss` of the subprocess after the refreshes, and the
  tracemalloc peak of one refresh (Python allocations only);
- the same figures computed by a straightforward per-figure implementation
  (`benchmarks/naive.py`: one query per figure, scope joins repeated), its median time,
  its statement count, and whether its figures equal ours (they must).

Then (unless --no-browser) the served page: time from navigation to all charts drawn
and from a span change to the redrawn charts, in headless Chromium on the 1M database.

Databases are built once under benchmarks/data/ (gitignored) with a fixed seed and a
fixed `now`, and reused. Results go to benchmarks/results/ (gitignored) as JSON; the
table is printed. `--experiments` also measures what an extra index or a PostgreSQL
setting would give (on the benchmark's own databases; nothing is ever created in a
gateway's database by the dashboard).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for path in (str(REPO), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

import datasets  # noqa: E402

DEFAULT_SIZES = (100_000, 1_000_000, 10_000_000)

#: (case id, label, viewer email, org, span)
CASES = (
    ("admin_all_1w", "global admin, All, 1w", "admin@acme.example", "all", "1w"),
    ("org_admin_1d", "org admin, 1d", "carol@acme.example", None, "1d"),
    ("user_teams_1w", "standard user with teams, 1w", "dave@acme.example", None, "1w"),
)

#: Targets of issue 6, at 1M requests, warm (ms).
TARGETS_MS = {
    ("postgresql", "admin_all_1w"): 95,
    ("postgresql", "org_admin_1d"): 65,
    ("postgresql", "user_teams_1w"): 150,
    ("sqlite", "admin_all_1w"): 450,
    ("sqlite", "org_admin_1d"): 200,
    ("sqlite", "user_teams_1w"): 400,
}
TARGET_10M_PG_ADMIN_MS = 1000
TARGET_MEMORY_GROWTH_MB = 50
TARGET_STATEMENTS = 3


# --------------------------------------------------------------------------------------
# Worker: one case in a fresh process
# --------------------------------------------------------------------------------------


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_worker(spec: dict) -> dict:
    """Measure one (database, case): ours, then the naive implementation."""
    import tracemalloc

    from sqlalchemy import event, func, select

    from usage_lib import Selection, compute_usage, load_router_config, open_database
    from usage_lib.gateway.schema import management_request
    from usage_lib.core.spans import window, zone

    import naive

    now = datetime.fromisoformat(spec["now"])
    models = load_router_config(spec["router_config"])
    selection = Selection(org=spec["org"], span=spec["span"], now=now)
    rss_start = _rss_mb()
    db = open_database(spec["url"])
    sql_seconds = [0.0]
    started_at: list[float] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def _before(*_args):
        started_at.append(time.perf_counter())

    @event.listens_for(db.engine, "after_cursor_execute")
    def _after(*_args):
        sql_seconds[0] += time.perf_counter() - started_at.pop()

    for name, value in spec.get("sqlite_pragmas", {}).items():
        @event.listens_for(db.engine, "connect")
        def _pragma(dbapi_connection, _record, name=name, value=value):
            dbapi_connection.execute(f"PRAGMA {name} = {value}")
        db.engine.dispose()

    def refresh():
        db.statements.count = 0
        sql_seconds[0] = 0.0
        began = time.perf_counter()
        usage = compute_usage(db, spec["viewer"], selection, models)
        return usage, time.perf_counter() - began, db.statements.count, sql_seconds[0]

    usage, first_s, _, _ = refresh()  # warm: caches, imports, plans
    rss_after_first = _rss_mb()
    times, sql_times, statements = [], [], []
    for _ in range(spec["repeat"]):
        usage, seconds, count, sql_s = refresh()
        times.append(seconds)
        sql_times.append(sql_s)
        statements.append(count)
    rss_peak = _rss_mb()

    tracemalloc.start()
    refresh()
    _current, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    win = window(spec["span"], now, zone("UTC"))
    with db.engine.connect() as conn:
        window_rows = conn.execute(
            select(func.count()).select_from(management_request)
            .where(management_request.c.timestamp >= db.timestamp_bound(win.start))
        ).scalar_one()

    result = {
        "first_ms": first_s * 1000,
        "median_ms": statistics.median(times) * 1000,
        "min_ms": min(times) * 1000,
        "max_ms": max(times) * 1000,
        "times_ms": [t * 1000 for t in times],
        "sql_median_ms": statistics.median(sql_times) * 1000,
        "statements": max(statements),
        "window_rows": int(window_rows),
        "reach_rows": usage.metrics.total_requests,
        "rss_start_mb": rss_start,
        "rss_after_first_mb": rss_after_first,
        "rss_peak_mb": rss_peak,
        "tracemalloc_peak_mb": traced_peak / 2**20,
        "load_during": list(os.getloadavg()),
    }

    if spec["naive_repeat"] > 0:
        naive_times = []
        for _ in range(spec["naive_repeat"]):
            db.statements.count = 0
            began = time.perf_counter()
            figures = naive.naive_usage(
                db, spec["viewer"], org=spec["org"], span=spec["span"], now=now, models=models
            )
            naive_times.append(time.perf_counter() - began)
            naive_statements = db.statements.count
        problems = naive.differences(usage, figures)
        result.update(
            naive_median_ms=statistics.median(naive_times) * 1000,
            naive_times_ms=[t * 1000 for t in naive_times],
            naive_statements=naive_statements,
            same_figures=not problems,
            differences=problems,
        )
    db.close()
    return result


# --------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------


def _spawn_worker(spec: dict, timeout: float) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if completed.returncode != 0:
        raise RuntimeError(f"worker failed for {spec['backend']} {spec['requests']} {spec['case']}:\n"
                           f"{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "usage_lib"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty(usage_lib)" if dirty else "")
    except OSError:
        return None


def _environment(pg_version: str | None) -> dict:
    import sqlite3

    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), None)
    except OSError:
        model = None
    try:
        with open("/proc/meminfo") as handle:
            mem_gb = round(int(handle.readline().split()[1]) / 2**20, 1)
    except OSError:
        mem_gb = None
    return {
        "cpus": os.cpu_count(), "cpu_model": model, "memory_gb": mem_gb,
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "postgresql": pg_version, "git": _git_revision(),
    }


def measure(args, databases: dict, log=_log) -> list[dict]:
    rows = []
    for (backend, size), url in databases.items():
        for case_id, label, viewer, org, span in CASES:
            big = size >= 5_000_000
            spec = {
                "backend": backend, "requests": size, "case": case_id, "url": url,
                "router_config": str(args.router_config), "now": datasets.NOW.isoformat(),
                "viewer": viewer, "org": org, "span": span,
                "repeat": args.repeat_10m if big else args.repeat,
                "naive_repeat": 0 if args.no_naive else (args.naive_repeat_10m if big else args.naive_repeat),
            }
            log(f"  {backend:10s} {size:>10,} {label} ...")
            result = _spawn_worker(spec, timeout=args.case_timeout)
            row = {"backend": backend, "requests": size, "case": case_id, "label": label, **result}
            if "naive_median_ms" in result:
                row["speedup"] = result["naive_median_ms"] / result["median_ms"]
            rows.append(row)
            log(f"    ours {row['median_ms']:8.1f} ms  statements {row['statements']}"
                + (f"  naive {row['naive_median_ms']:9.1f} ms ({row['naive_statements']} statements) "
                   f"x{row['speedup']:.1f} same={row['same_figures']}" if "speedup" in row else ""))
    return rows


# --------------------------------------------------------------------------------------
# Experiments: what an extra index or a PostgreSQL setting would give (benchmark DBs only)
# --------------------------------------------------------------------------------------

COVERING_INDEX = (
    "CREATE INDEX bench_usage_covering ON management_request (timestamp) INCLUDE "
    "(model, token_id, path, status_code, response_time_ms, input_tokens, output_tokens, user_id)"
)
SQLITE_COVERING_INDEX = (
    "CREATE INDEX bench_usage_covering ON management_request (timestamp, model, token_id, path, "
    "status_code, response_time_ms, input_tokens, output_tokens, user_id)"
)


def _pg_exec(url: str, *statements: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


EXPERIMENT_INDEX = "bench_usage_covering"


def gateway_indexes_only(backend: str, url: str, log=_log) -> list[str]:
    """Drop an experiment's index left in a benchmark database by an interrupted run (it
    would change every measurement), and return the request table's indexes."""
    import sqlalchemy as sa

    if backend == "postgresql":
        _pg_exec(url, f"DROP INDEX IF EXISTS {EXPERIMENT_INDEX}")
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    else:
        import sqlite3

        path = url.split("sqlite:///", 1)[1]
        with sqlite3.connect(path) as conn:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (EXPERIMENT_INDEX,)).fetchone():
                log(f"  {backend}: removing a leftover {EXPERIMENT_INDEX} index")
                conn.execute(f"DROP INDEX {EXPERIMENT_INDEX}")
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        names = sorted(index["name"] for index in sa.inspect(engine).get_indexes("management_request"))
    finally:
        engine.dispose()
    assert EXPERIMENT_INDEX not in names, names
    return names


def experiments(args, databases: dict, log=_log) -> list[dict]:
    """Each variant re-measures the three cases (ours only) on the chosen databases."""
    results = []

    def run(backend: str, size: int, url: str, variant: str, **extra) -> None:
        for case_id, label, viewer, org, span in CASES:
            spec = {
                "backend": backend, "requests": size, "case": case_id, "url": url,
                "router_config": str(args.router_config), "now": datasets.NOW.isoformat(),
                "viewer": viewer, "org": org, "span": span,
                "repeat": args.repeat_10m if size >= 5_000_000 else args.repeat,
                "naive_repeat": 0, **extra,
            }
            result = _spawn_worker(spec, timeout=args.case_timeout)
            results.append({"backend": backend, "requests": size, "case": case_id, "variant": variant,
                            "median_ms": result["median_ms"], "sql_median_ms": result["sql_median_ms"],
                            "statements": result["statements"]})
            log(f"    {variant:38s} {backend:10s} {size:>10,} {label:30s} {result['median_ms']:8.1f} ms")

    for (backend, size), url in databases.items():
        if size not in args.experiment_sizes:
            continue
        log(f"  experiments on {backend} {size:,}")
        run(backend, size, url, "as measured")
        if backend == "postgresql":
            database = url.rsplit("/", 1)[1]
            for setting in args.pg_experiment_settings:
                name, value = setting.split("=", 1)
                _pg_exec(url, f'ALTER DATABASE "{database}" SET {name} = {value}')
                try:
                    run(backend, size, url, f"setting {name}={value}")
                finally:
                    _pg_exec(url, f'ALTER DATABASE "{database}" RESET {name}')
            log("    creating the covering index (benchmark database only) ...")
            _pg_exec(url, f"DROP INDEX IF EXISTS {EXPERIMENT_INDEX}", COVERING_INDEX,
                     "VACUUM (ANALYZE) management_request")
            try:
                run(backend, size, url, "extra covering index (timestamp) INCLUDE (...)")
            finally:
                _pg_exec(url, "DROP INDEX IF EXISTS bench_usage_covering")
        else:
            run(backend, size, url, "connection PRAGMA threads=0 (no sorter threads)", sqlite_pragmas={"threads": 0})
            run(backend, size, url, "connection PRAGMA mmap_size=1GiB", sqlite_pragmas={"mmap_size": 2**30})
            import sqlite3

            path = url.split("sqlite:///", 1)[1]
            log("    creating the covering index (benchmark database only) ...")
            with sqlite3.connect(path) as conn:
                conn.execute(f"DROP INDEX IF EXISTS {EXPERIMENT_INDEX}")
                conn.execute(SQLITE_COVERING_INDEX)
                conn.execute("ANALYZE")
            try:
                run(backend, size, url, "extra covering index (timestamp, ...)")
            finally:
                with sqlite3.connect(path) as conn:
                    conn.execute("DROP INDEX IF EXISTS bench_usage_covering")
                    conn.execute("ANALYZE")
    return results


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def table_lines(rows: list[dict]) -> list[str]:
    header = ("| backend | requests | case | rows in window | in figures | refresh median ms "
              "(SQL) | statements | peak RSS MB | tracemalloc MB | naive ms | naive stmts | speed-up | same |")
    lines = [header, "|" + "---|" * 13]
    for row in rows:
        lines.append(
            f"| {row['backend']} | {row['requests']:,} | {row['label']} | {row['window_rows']:,} | "
            f"{row['reach_rows']:,} | {_fmt_ms(row['median_ms'])} ({_fmt_ms(row['sql_median_ms'])}) | "
            f"{row['statements']} | {row['rss_peak_mb']:.0f} | {row['tracemalloc_peak_mb']:.1f} | "
            f"{_fmt_ms(row.get('naive_median_ms'))} | {row.get('naive_statements', '-')} | "
            f"{('x%.1f' % row['speedup']) if 'speedup' in row else '-'} | "
            f"{('yes' if row['same_figures'] else 'NO') if 'same_figures' in row else '-'} |"
        )
    return lines


def check_targets(rows: list[dict]) -> list[dict]:
    """Each target of issue 6 with the measured value and met / missed / not measured."""
    checks = []
    by_key = {(r["backend"], r["requests"], r["case"]): r for r in rows}
    for (backend, case), target in TARGETS_MS.items():
        row = by_key.get((backend, 1_000_000, case))
        checks.append({
            "target": f"{backend} 1M {case} < {target} ms",
            "measured": None if row is None else round(row["median_ms"], 1),
            "met": None if row is None else row["median_ms"] < target,
        })
    row = by_key.get(("postgresql", 10_000_000, "admin_all_1w"))
    checks.append({
        "target": f"postgresql 10M admin_all_1w < {TARGET_10M_PG_ADMIN_MS} ms",
        "measured": None if row is None else round(row["median_ms"], 1),
        "met": None if row is None else row["median_ms"] < TARGET_10M_PG_ADMIN_MS,
    })
    worst = max((r["statements"] for r in rows), default=None)
    checks.append({"target": f"<= {TARGET_STATEMENTS} statements per refresh", "measured": worst,
                   "met": None if worst is None else worst <= TARGET_STATEMENTS})
    sizes = sorted({r["requests"] for r in rows})
    if len(sizes) > 1:
        growth = []
        for backend in sorted({r["backend"] for r in rows}):
            for case in [c[0] for c in CASES]:
                small = by_key.get((backend, sizes[0], case))
                large = by_key.get((backend, sizes[-1], case))
                if small and large:
                    growth.append(large["rss_peak_mb"] - small["rss_peak_mb"])
        worst_growth = max(growth) if growth else None
        checks.append({
            "target": f"peak RSS growth {sizes[0]:,} -> {sizes[-1]:,} requests < {TARGET_MEMORY_GROWTH_MB} MB",
            "measured": None if worst_growth is None else round(worst_growth, 1),
            "met": None if worst_growth is None else worst_growth < TARGET_MEMORY_GROWTH_MB,
        })
    return checks


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=_sizes, default=list(DEFAULT_SIZES),
                        help="comma-separated request counts (default 100000,1000000,10000000)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite,postgresql")
    parser.add_argument("--sqlite-max", type=int, default=10_000_000,
                        help="skip SQLite above this size (default: none skipped)")
    parser.add_argument("--repeat", type=int, default=7, help="timed refreshes per case (median)")
    parser.add_argument("--repeat-10m", type=int, default=3, help="timed refreshes per case at >= 5M")
    parser.add_argument("--naive-repeat", type=int, default=3)
    parser.add_argument("--naive-repeat-10m", type=int, default=1)
    parser.add_argument("--no-naive", action="store_true", help="skip the per-figure baseline")
    parser.add_argument("--no-browser", action="store_true", help="skip the served page (part 4)")
    parser.add_argument("--browser-size", type=int, default=1_000_000)
    parser.add_argument("--browser-backend", default="postgresql", choices=("postgresql", "sqlite"))
    parser.add_argument("--browser-repeat", type=int, default=5)
    parser.add_argument("--experiments", action="store_true",
                        help="also measure an extra covering index and PostgreSQL settings")
    parser.add_argument("--experiment-sizes", type=_sizes, default=[1_000_000, 10_000_000])
    parser.add_argument("--pg-experiment-settings", nargs="*", default=["jit=off"],
                        help="settings tried per database with ALTER DATABASE ... SET (default jit=off)")
    parser.add_argument("--data-dir", type=Path, default=datasets.DATA)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the demo databases")
    parser.add_argument("--pg-url", help="admin URL of an existing PostgreSQL server to use "
                        "(demo_<n> databases are created there); default: a server under the data dir")
    parser.add_argument("--pg-db", help="URL of one (empty or demo) PostgreSQL database; one size only")
    parser.add_argument("--pg-setting", action="append", default=[],
                        help="name=value for the benchmark's own server (repeatable), e.g. shared_buffers=1GB")
    parser.add_argument("--keep-server", action="store_true", help="leave the benchmark's server running")
    parser.add_argument("--out", type=Path, help="JSON results file (default benchmarks/results/refresh-<time>.json)")
    parser.add_argument("--case-timeout", type=float, default=1800)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0

    started = time.perf_counter()
    load_start = os.getloadavg()
    datasets.configure(args.data_dir)
    args.router_config = datasets.write_router_config()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.pg_db and len(args.sizes) != 1:
        raise SystemExit("--pg-db takes exactly one --sizes value")

    server = None
    pg_version = None
    databases: dict[tuple[str, int], str] = {}
    builds = {}
    try:
        _log(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
        if "postgresql" in backends:
            if args.pg_db:
                url = args.pg_db
            elif args.pg_url:
                from pgserver import ExternalPostgres

                server = ExternalPostgres(args.pg_url)
            else:
                from pgserver import PersistentPostgres

                settings = dict(s.split("=", 1) for s in args.pg_setting)
                server = PersistentPostgres(datasets.DATA / "pg", settings)
                _log(f"starting the benchmark's PostgreSQL server in {server.base} ...")
                server.start()
            for size in args.sizes:
                if args.pg_db:
                    url, seconds = datasets.postgres_in_database(args.pg_db, size, log=_log)
                else:
                    url, seconds = datasets.postgres_database(server, size, rebuild=args.rebuild, log=_log)
                databases[("postgresql", size)] = url
                builds[f"postgresql-{size}"] = seconds
            pg_version = datasets.server_version(databases[("postgresql", args.sizes[0])])
        if "sqlite" in backends:
            for size in args.sizes:
                if size > args.sqlite_max:
                    _log(f"SQLite {size:,}: skipped (--sqlite-max {args.sqlite_max:,})")
                    continue
                url, seconds = datasets.sqlite_database(size, rebuild=args.rebuild, log=_log)
                databases[("sqlite", size)] = url
                builds[f"sqlite-{size}"] = seconds
        ordered = dict(sorted(databases.items(), key=lambda item: (item[0][0] != "sqlite", item[0][1])))

        indexes = {f"{backend}-{size}": gateway_indexes_only(backend, url) for (backend, size), url in ordered.items()}
        _log("measuring refreshes (each case in a fresh process) ...")
        measure_started = time.perf_counter()
        rows = measure(args, ordered)
        measure_seconds = time.perf_counter() - measure_started

        browser = None
        if not args.no_browser:
            key = (args.browser_backend, args.browser_size)
            if key not in ordered:
                browser = {"status": "not measured", "reason": f"no {key[0]} database of {key[1]:,} requests in this run"}
            else:
                import browser_timing

                _log("measuring the served page in Chromium ...")
                browser = browser_timing.measure_page(ordered[key], args.router_config, datasets.NOW,
                                                      repeat=args.browser_repeat, log=_log)

        extra = experiments(args, ordered) if args.experiments else []
    finally:
        if server is not None and not args.keep_server:
            server.stop()

    load_end = os.getloadavg()
    result = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "benchmarks/refresh.py", *(argv if argv is not None else sys.argv[1:])]),
        "environment": _environment(pg_version),
        "load_average_start": load_start,
        "load_average_end": load_end,
        "data": {"seed": datasets.SEED, "now": datasets.NOW.isoformat(), "builds_seconds": builds,
                 "request_indexes": indexes},
        "seconds_total": time.perf_counter() - started,
        "seconds_measuring": measure_seconds,
        "cases": rows,
        "targets": check_targets(rows),
        "browser": browser,
        "experiments": extra,
    }
    out = args.out or (HERE / "results" / f"refresh-{datetime.now():%Y%m%d-%H%M%S}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    if args.out is None:
        (HERE / "results" / "latest.json").write_text(json.dumps(result, indent=2, default=str))

    print("\n".join(table_lines(rows)))
    print()
    for check in result["targets"]:
        state = {True: "met", False: "MISSED", None: "not measured"}[check["met"]]
        print(f"- {check['target']}: {check['measured']} -> {state}")
    if browser is not None:
        print(f"- served page: {json.dumps(browser)}")
    for item in extra:
        print(f"- experiment {item['variant']}: {item['backend']} {item['requests']:,} {item['case']} "
              f"{item['median_ms']:.1f} ms")
    print(f"\nload average start {load_start[0]:.2f}/{load_start[1]:.2f}/{load_start[2]:.2f}, "
          f"end {load_end[0]:.2f}/{load_end[1]:.2f}/{load_end[2]:.2f}; "
          f"total {result['seconds_total']:.0f} s (measuring {measure_seconds:.0f} s); results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
