"""Benchmark: the refresh with the health figures (issue 15) against today's refresh.

    .venv/bin/python benchmarks/health.py            # 3 rounds, SQLite + PostgreSQL at 1M (17 min on a busy 2-vCPU box)
    .venv/bin/python benchmarks/health.py --quick    # 1 round, 3 repetitions, SQLite only (smoke run)

Issue 15, item 9: at 1M requests a refresh including the health figures stays within
1.5x of today's refresh, measured side by side in one run, and within the statement budget.

- Data: refresh.py's 1M demo databases (benchmarks/datasets.py) with the gateway's
  rate-limit columns (0.1.18: `requests_per_minute`, `input_tokens_per_minute`,
  `output_tokens_per_minute` on orgs, teams and profiles), which the demo databases
  predate. So the benchmark uses a limits-enabled copy, made once and reused; the demo
  databases themselves are never touched:
  SQLite: benchmarks/data/health/demo-1000000.sqlite3, a copy of the demo file;
  PostgreSQL: the database health_1000000 on the benchmark's server (benchmarks/pgserver.py,
  started here and stopped at the end unless it was already running or `--keep-server`),
  created with demo_1000000 as its template.
  In either the columns are added and a few limits set (`LIMITS`: every org a request and
  an input-token limit, one team and one profile their own), so that the headroom
  statement resolves real limits and a few tokens are near them.
- Router config: a copy of benchmarks/data/router.yaml with `request_limit_multiplier` on
  two models (`MULTIPLIERS`), written next to the copy, so that the headroom statement
  weighs requests as on a gateway that sets them. `now` = datasets.NOW (2025-03-14 15:30 UTC).
- What is measured, per (backend, case) of refresh.py's CASES (global admin All 1w, org
  admin 1d, standard user with teams 1w):
  (a) "usage": today's refresh, `compute_usage(db, viewer, selection, models)` (every
      figure with the previous period), the page's Usage tab;
  (b) "health": `compute_health(db, viewer, selection, models, multipliers)`, the page's
      Health tab (the page computes the section it shows, nothing else);
  (c) "both": (a) then (b) on the same database object, as a JSON report, a snapshot or
      an export with both sections.
- One fresh process per (backend, case) measures all three: `--rounds` rounds (default 3),
  the order (a b c) reversed every round (c b a); in each, per refresh kind, 2 warm-up
  refreshes (`--warmup`) then 7 timed ones (`--repeat`) and their median. Reported: the
  median of the round medians of each, the ratios (b)/(a) and (c)/(a) against 1.5x (and
  (c)/(a) per round), the SQL part (engine events), of (b) per statement (the health
  statement and the headroom statement), the statements per refresh (`db.statements.count`)
  against the budget (`BUDGET`), and the worker's peak RSS (ru_maxrss).
- After the timed refreshes the worker explains the last health and headroom statements:
  on PostgreSQL `EXPLAIN (ANALYZE, BUFFERS)` (sort methods, estimated against actual
  groups), on SQLite `EXPLAIN QUERY PLAN` (temporary B-trees); the plans go into the JSON.

Results go to benchmarks/results/health-<time>.json (gitignored); the markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

SIZE = 1_000_000
TARGET_RATIO = 1.5
#: Statements per refresh: today's at most 4 (issue 14's budget; viewer, catalogue, and the
#: usage statement with the previous period as its second part: 3); the health refresh's
#: viewer, catalogue, health, and headroom for org and global admins; both in a row.
BUDGET = {"usage": 4, "health": 4, "both": 8}
#: The three refreshes, in a round's order (reversed every other round).
ROLES = ("usage", "health", "both")
HEALTH_DATABASE = f"health_{SIZE}"

#: Limits set in the limits-enabled copies (orgs: every one; team 2 runs the busiest
#: service-account token; profile 3 is the owner of a token near its limit).
LIMITS = (
    "UPDATE management_org SET requests_per_minute = 40, input_tokens_per_minute = 80000",
    "UPDATE management_team SET requests_per_minute = 1200, input_tokens_per_minute = 600000 WHERE id = 2",
    "UPDATE management_userprofile SET requests_per_minute = 25 WHERE id = 3",
)
#: Request-limit multipliers written into the router config's copy.
MULTIPLIERS = {"gpt-4o": 2.0, "claude-3-5-sonnet": 4.0}

#: Markers of the health refresh's own statements in their SQL text.
STATEMENT_MARKERS = {"health": "health_groups", "headroom": "per_minute"}


# --------------------------------------------------------------------------------------
# Worker: one (backend, case), all three refreshes, in a fresh process
# --------------------------------------------------------------------------------------


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _kind(sql: str) -> str:
    return next((kind for kind, marker in STATEMENT_MARKERS.items() if marker in sql), "other")


class StatementTimer:
    """Times every statement sent on an engine (before/after cursor events)."""

    def __init__(self, engine) -> None:
        from sqlalchemy import event

        self.sent: list[tuple[str, object, float]] = []
        self._began: list[float] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *_args) -> None:
        self._began.append(time.perf_counter())

    def _after(self, _conn, _cursor, statement, parameters, *_args) -> None:
        self.sent.append((statement, parameters, (time.perf_counter() - self._began.pop()) * 1000))

    def ms_by_kind(self) -> dict[str, float]:
        totals = {"sql": 0.0, **{kind: 0.0 for kind in STATEMENT_MARKERS}}
        for statement, _params, ms in self.sent:
            totals["sql"] += ms
            kind = _kind(statement)
            if kind in totals:
                totals[kind] += ms
        return totals


def _measure(refresh: Callable[[], object], db, timer: StatementTimer, warmup: int, repeat: int) -> dict:
    """`warmup` untimed refreshes, then `repeat` timed ones: medians of time, SQL parts, statements."""
    for _ in range(warmup):
        refresh()
    times, parts, statements = [], [], []
    for _ in range(repeat):
        db.statements.count = 0
        timer.sent.clear()
        began = time.perf_counter()
        refresh()
        times.append((time.perf_counter() - began) * 1000)
        parts.append(timer.ms_by_kind())
        statements.append(db.statements.count)
    medians = {f"{kind}_ms": statistics.median(p[kind] for p in parts) for kind in parts[0]}
    return {"median_ms": statistics.median(times), "times_ms": times, **medians,
            "statements": max(statements), "statements_min": min(statements)}


def _explain(db, sent: list[tuple[str, object, float]]) -> dict[str, list[str]]:
    """The plans of the health and headroom statements sent last."""
    plans = {}
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if db.dialect == "postgresql" else "EXPLAIN QUERY PLAN "
    with db.connect() as conn:
        for statement, params, _ms in sent:
            kind = _kind(statement)
            if kind == "other":
                continue
            rows = conn.exec_driver_sql(prefix + statement, params).all()
            plans[kind] = [row[0] if db.dialect == "postgresql" else row[-1] for row in rows]
    return plans


def _headroom_summary(health) -> dict | None:
    frame = health.headroom
    if frame is None:
        return None
    limited = frame[["requests_limit", "input_limit", "output_limit"]].notna().any(axis=1)
    return {"tokens": len(frame), "with_a_limit": int(limited.sum()), "near_limit": len(health.near_limit),
            "peak_share_max": None if frame["peak_share"].isna().all() else float(frame["peak_share"].max())}


def run_worker(spec: dict) -> dict:
    import usage_lib
    from usage_lib import Selection, compute_health, compute_usage, load_router_config, open_database
    from usage_lib.gateway.routerconfig import load_request_multipliers

    rss_start = _rss_mb()
    models = load_router_config(spec["router_config"])
    multipliers = load_request_multipliers(spec["router_config"])
    selection = Selection(org=spec["org"], span=spec["span"], now=datetime.fromisoformat(spec["now"]))
    db = open_database(spec["url"])
    if not db.has_limits:
        raise RuntimeError(f"{spec['url']} has no rate-limit columns")
    timer = StatementTimer(db.engine)
    viewer = spec["viewer"]
    last: dict[str, object] = {}

    def usage():
        last["usage"] = compute_usage(db, viewer, selection, models)

    def health():
        last["health"] = compute_health(db, viewer, selection, models, multipliers)

    def both():
        usage()
        health()

    refreshes = {"usage": usage, "health": health, "both": both}
    runs, rss_after = [], {}
    for round_index in range(spec["rounds"]):
        order = ROLES if round_index % 2 == 0 else tuple(reversed(ROLES))
        for role in order:
            measured = _measure(refreshes[role], db, timer, spec["warmup"], spec["repeat"])
            runs.append({"round": round_index + 1, "role": role, **measured})
            rss_after.setdefault(role, _rss_mb())
    health()
    plans = _explain(db, list(timer.sent))
    db.close()
    return {
        "usage_lib": str(Path(usage_lib.__file__).resolve().parent),
        "multipliers": multipliers,
        "runs": runs,
        "requests_in_figures": int(last["usage"].metrics.total_requests),
        "headroom": _headroom_summary(last["health"]),
        "has_processing_time": db.has_processing_time,
        "plans": plans,
        "rss_start_mb": rss_start,
        "rss_after_first_mb": rss_after,
        "rss_peak_mb": _rss_mb(),
        "load": list(os.getloadavg()),
    }


# --------------------------------------------------------------------------------------
# Data: the limits-enabled copies (made once)
# --------------------------------------------------------------------------------------


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _limit_statements() -> list[str]:
    from usage_lib.gateway.schema import LIMIT_COLUMNS, LIMIT_TABLES

    adds = [f"ALTER TABLE {table} ADD COLUMN {column} INTEGER" for table in LIMIT_TABLES for column in LIMIT_COLUMNS]
    return [*adds, *LIMITS]


def sqlite_copy(source: Path, target: Path, log=_log) -> str:
    """URL of the limits-enabled copy of the SQLite demo file (copied once)."""
    if not target.exists():
        log(f"copying {source.name} to {target} and adding the limit columns ...")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(source, partial)
        with sqlite3.connect(partial) as conn:
            for statement in _limit_statements():
                conn.execute(statement)
        conn.close()
        partial.replace(target)
    return f"sqlite:///{target}"


def postgres_copy(server, log=_log) -> str:
    """URL of health_1000000: demo_1000000 as template, the limit columns added (once)."""
    import sqlalchemy as sa

    if HEALTH_DATABASE not in server.databases():
        partial = f"{HEALTH_DATABASE}_partial"
        log(f"creating {HEALTH_DATABASE} from demo_{SIZE} and adding the limit columns ...")
        server.admin(f'DROP DATABASE IF EXISTS "{partial}"',
                     f'CREATE DATABASE "{partial}" TEMPLATE "demo_{SIZE}"')
        engine = sa.create_engine(server.database_url(partial), poolclass=sa.pool.NullPool,
                                  isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for statement in [*_limit_statements(), "ANALYZE management_org, management_team, "
                                  "management_userprofile"]:
                    conn.execute(sa.text(statement))
        finally:
            engine.dispose()
        server.admin(f'ALTER DATABASE "{partial}" RENAME TO "{HEALTH_DATABASE}"')
    return server.database_url(HEALTH_DATABASE)


def router_with_multipliers(source: Path, target: Path) -> Path:
    """A copy of the router config with `request_limit_multiplier` on the models of MULTIPLIERS."""
    import yaml

    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    for entry in config.get("model_list", []):
        multiplier = MULTIPLIERS.get(entry.get("model_name"))
        if multiplier is not None:
            entry.setdefault("model_info", {})["request_limit_multiplier"] = multiplier
    header = f"# {source.name} with request limit multipliers (written by benchmarks/health.py)\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return target


# --------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=60).stdout.strip()


def _spawn(spec: dict, timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    if completed.returncode != 0:
        raise RuntimeError(f"worker failed for {spec['backend']} {spec['case']}:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _median_of(runs: list[dict], role: str, key: str) -> float:
    return statistics.median(run[key] for run in runs if run["role"] == role)


def summarise(backend: str, case: tuple, result: dict) -> dict:
    """One row: the median of the round medians per refresh kind, ratios, statements, budget."""
    case_id, label, *_ = case
    runs = result["runs"]
    row = {"backend": backend, "case": case_id, "label": label}
    for role in ROLES:
        for key in ("median_ms", "sql_ms", "health_ms", "headroom_ms"):
            row[f"{role}_{key}"] = _median_of(runs, role, key)
        row[f"{role}_statements"] = max(run["statements"] for run in runs if run["role"] == role)
    per_round = {}
    for run in runs:
        per_round.setdefault(run["round"], {})[run["role"]] = run["median_ms"]
    row["both_ratio_per_round"] = [times["both"] / times["usage"] for _round, times in sorted(per_round.items())]
    row["health_ratio"] = row["health_median_ms"] / row["usage_median_ms"]
    row["both_ratio"] = row["both_median_ms"] / row["usage_median_ms"]
    row["within_ratio"] = row["both_ratio"] <= TARGET_RATIO
    row["within_budget"] = all(row[f"{role}_statements"] <= BUDGET[role] for role in ROLES)
    row.update({key: result[key] for key in ("requests_in_figures", "headroom", "plans", "rss_peak_mb",
                                             "rss_after_first_mb", "multipliers", "has_processing_time", "load")})
    return row


def measure(args, databases: dict[str, str], cases, log=_log) -> tuple[list[dict], list[dict]]:
    rows, raw = [], []
    for backend, url in databases.items():
        for case in cases:
            case_id, label, viewer, org, span = case
            spec = {"backend": backend, "case": case_id, "url": url, "router_config": str(args.router_config),
                    "now": args.now, "viewer": viewer, "org": org, "span": span,
                    "rounds": args.rounds, "warmup": args.warmup, "repeat": args.repeat}
            result = _spawn(spec, args.case_timeout)
            raw.append({"backend": backend, "case": case_id, "usage_lib": result["usage_lib"], "runs": result["runs"]})
            row = summarise(backend, case, result)
            rows.append(row)
            log(f"  {backend:10s} {label:30s} usage {row['usage_median_ms']:7.1f}  health "
                f"{row['health_median_ms']:7.1f}  both {row['both_median_ms']:7.1f} ms  "
                f"({row['both_ratio']:.2f}x; statements {row['usage_statements']}/{row['health_statements']}/"
                f"{row['both_statements']})")
    return rows, raw


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def table_lines(rows: list[dict]) -> list[str]:
    lines = [
        "| backend | case | (a) usage ms (SQL) | (b) health ms (SQL) | (c) both ms (SQL) | (b)/(a) | (c)/(a) "
        "| (c)/(a) per round | <= 1.5x | (b) SQL: health + headroom ms | statements (a) / (b) / (c) "
        "| within budget | peak RSS MB |",
        "|" + "---|" * 13,
    ]
    for row in rows:
        headroom = "-" if row["headroom"] is None else _ms(row["health_headroom_ms"])
        lines.append(
            f"| {row['backend']} | {row['label']} | {_ms(row['usage_median_ms'])} ({_ms(row['usage_sql_ms'])}) | "
            f"{_ms(row['health_median_ms'])} ({_ms(row['health_sql_ms'])}) | "
            f"{_ms(row['both_median_ms'])} ({_ms(row['both_sql_ms'])}) | {row['health_ratio']:.2f}x | "
            f"{row['both_ratio']:.2f}x | {' '.join(f'{r:.2f}' for r in row['both_ratio_per_round'])} | "
            f"{'yes' if row['within_ratio'] else '**no**'} | {_ms(row['health_health_ms'])} + {headroom} | "
            f"{row['usage_statements']} / {row['health_statements']} / {row['both_statements']} | "
            f"{'yes' if row['within_budget'] else '**no**'} | {row['rss_peak_mb']:.0f} |"
        )
    return lines


def plan_lines(rows: list[dict]) -> list[str]:
    """Per case the plan lines that tell where a statement's time goes."""
    keep = ("Sort Method", "Aggregate", "Disk", "Batches", "Execution Time", "TEMP B-TREE", "SCAN", "SEARCH")
    lines = []
    for row in rows:
        for kind, plan in row["plans"].items():
            lines.append(f"{row['backend']} {row['label']}, {kind} statement:")
            lines.extend("    " + line.strip()[:160] for line in plan if any(word in line for word in keep))
    return lines


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="rounds, the order reversed every round (default 3)")
    parser.add_argument("--repeat", type=int, default=7, help="timed refreshes per measurement (median; default 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed refreshes first (default 2)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite,postgresql")
    parser.add_argument("--cases", help="comma-separated case ids of refresh.py's CASES (default: all three)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 3 repetitions, SQLite only")
    parser.add_argument("--data-dir", type=Path, help="the demo databases' directory (default benchmarks/data)")
    parser.add_argument("--keep-server", action="store_true", help="leave the benchmark's PostgreSQL server running")
    parser.add_argument("--out", type=Path, help="JSON results file (default benchmarks/results/health-<time>.json)")
    parser.add_argument("--case-timeout", type=float, default=900)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def _cases(wanted: str | None, all_cases: tuple) -> tuple:
    if not wanted:
        return all_cases
    names = [name.strip() for name in wanted.split(",") if name.strip()]
    unknown = sorted(set(names) - {case[0] for case in all_cases})
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(c[0] for c in all_cases)}")
    return tuple(case for case in all_cases if case[0] in names)


def open_databases(backends: list[str], datasets, log=_log):
    """{backend: URL of the limits-enabled copy}, and the PostgreSQL server (or None)."""
    databases: dict[str, str] = {}
    server = None
    if "sqlite" in backends:
        source = datasets.DATA / f"demo-{SIZE}.sqlite3"
        if not source.exists():
            raise SystemExit(f"no {source}: build it with benchmarks/refresh.py --sizes {SIZE} --backends sqlite")
        databases["sqlite"] = sqlite_copy(source, datasets.DATA / "health" / source.name, log)
    if "postgresql" in backends:
        from pgserver import PersistentPostgres

        server = PersistentPostgres(datasets.DATA / "pg")
        log(f"starting the benchmark's PostgreSQL server in {server.base} ...")
        server.start()
        if not server.started_here:
            log("  (it was already running: it is left running)")
        if f"demo_{SIZE}" not in server.databases():
            server.stop()
            raise SystemExit(f"no database demo_{SIZE} on the benchmark server: build it with "
                             f"benchmarks/refresh.py --sizes {SIZE} --backends postgresql")
        databases["postgresql"] = postgres_copy(server, log)
    return databases, server


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0

    for path in (str(REPO), str(HERE)):
        if path not in sys.path:
            sys.path.insert(0, path)
    import datasets
    from refresh import CASES, _environment

    if args.quick:
        args.rounds, args.repeat, args.backends = 1, 3, "sqlite"
    if args.rounds < 1 or args.repeat < 1:
        raise SystemExit("--rounds and --repeat must be at least 1")
    if args.data_dir is not None:
        datasets.configure(args.data_dir)
    args.now = datasets.NOW.isoformat()
    cases = _cases(args.cases, CASES)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    started = time.perf_counter()
    load_start = os.getloadavg()
    _log(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
    if not datasets.ROUTER_CONFIG.exists():
        datasets.write_router_config()
    args.router_config = router_with_multipliers(datasets.ROUTER_CONFIG, datasets.DATA / "health" / "router.yaml")
    dirty = _git("status", "--porcelain", "usage_lib").splitlines()
    git = _git("rev-parse", "--short=12", "HEAD") + (f" + uncommitted changes in {len(dirty)} usage_lib file(s)"
                                                     if dirty else "")

    server = None
    pg_version = None
    try:
        databases, server = open_databases(backends, datasets)
        if "postgresql" in databases:
            pg_version = datasets.server_version(databases["postgresql"])
        _log(f"measuring: {args.rounds} round(s), {args.warmup} warm-up + {args.repeat} timed refreshes each ...")
        measure_started = time.perf_counter()
        rows, raw = measure(args, databases, cases)
        measure_seconds = time.perf_counter() - measure_started
    finally:
        if server is not None and not args.keep_server:
            server.stop()
    load_end = os.getloadavg()

    environment = _environment(pg_version)
    environment["git"] = git
    loads = [row["load"][0] for row in rows]
    result = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "benchmarks/health.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "environment": environment,
        "settings": {"rounds": args.rounds, "warmup": args.warmup, "repeat": args.repeat, "now": args.now,
                     "requests": SIZE, "databases": databases, "router_config": str(args.router_config),
                     "limits": list(LIMITS), "multipliers": MULTIPLIERS},
        "targets": {"ratio": TARGET_RATIO, "statements": BUDGET},
        "load_average_start": load_start,
        "load_average_end": load_end,
        "load_1min_after_each_case": loads,
        "seconds_total": time.perf_counter() - started,
        "seconds_measuring": measure_seconds,
        "cases": rows,
        "workers": raw,
    }
    out = args.out or (HERE / "results" / f"health-{datetime.now():%Y%m%d-%H%M%S}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))

    print(f"{git}; {SIZE:,} requests; median of {args.rounds} round median(s) of {args.repeat} warm refreshes\n")
    print("\n".join(table_lines(rows)))
    print()
    for row in rows:
        print(f"- {row['backend']} {row['label']}: {row['requests_in_figures']:,} requests in the figures; "
              f"headroom {row['headroom']}")
    print(f"- (c) within {TARGET_RATIO}x of (a) in every case: {'yes' if all(r['within_ratio'] for r in rows) else 'NO'}")
    print(f"- statements within budget {BUDGET} in every case: "
          f"{'yes' if all(r['within_budget'] for r in rows) else 'NO'}")
    print("\nPlans of the health refresh's statements (selected lines):\n")
    print("\n".join(plan_lines(rows)))
    print(f"\nload average start {load_start[0]:.2f}/{load_start[1]:.2f}/{load_start[2]:.2f}, "
          f"end {load_end[0]:.2f}/{load_end[1]:.2f}/{load_end[2]:.2f}, 1-min after each case "
          f"{min(loads):.2f}-{max(loads):.2f}; total {result['seconds_total']:.0f} s "
          f"(measuring {measure_seconds:.0f} s); results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
