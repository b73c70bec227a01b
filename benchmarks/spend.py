"""Benchmark: the refresh with spend and the previous period (issue 14) against the refresh before it.

    .venv/bin/python benchmarks/spend.py              # 3 rounds, SQLite + PostgreSQL at 1M (a few minutes)
    .venv/bin/python benchmarks/spend.py --quick      # 1 round, 3 repetitions, SQLite only (smoke run)
    .venv/bin/python benchmarks/spend.py --reference 67006bb --rounds 5 --backends postgresql

Issue 14, item 8: a refresh with everything of the issue stays within 1.3x of today's
refresh time at 1M requests, measured side by side in one run, and within the statement
budget (today 3, at most 4 with the previous period).

- The reference ("today") is a git worktree of `--reference` (default 67006bb, the commit
  before prices and spend) under /tmp, made once and reused. The current tree is this
  working tree (`--current REV`: a worktree of REV instead).
- Data: refresh.py's 1M demo databases (benchmarks/datasets.py: the SQLite file
  benchmarks/data/demo-1000000.sqlite3 and the database demo_1000000 on the benchmark's
  PostgreSQL server, benchmarks/pgserver.py, started here and stopped at the end unless
  `--keep-server` or it was already running), the router config
  benchmarks/data/router.yaml and `now` = datasets.NOW (2025-03-14 15:30 UTC).
- The current tree refreshes with everything of the issue: prices (a copy of router.yaml
  with `model_info: input_cost_per_token / output_cost_per_token` for every model but the
  self-hosted llama, written to /tmp and read with `load_price_book`) and the previous
  period (`compare`, compute_usage's default). The reference has neither.
- A third measurement (unless `--no-split`): the current tree with prices but without the
  previous period (`compare=False`), to tell the previous period's share of the extra
  time from the rest (running totals of tokens, Decimal costs).
- Cases: refresh.py's CASES (global admin All 1w, org admin 1d, standard user with teams 1w).
- Rounds (`--rounds`, default 3): in each round every (backend, case) is measured for the
  reference and for the current tree (and the split), one right after the other, the
  order reversed every round (ref, cur, split / split, cur, ref / ...). Each
  measurement is a fresh subprocess with PYTHONPATH set to its tree (it checks that
  `usage_lib` came from there): 2 warm-up refreshes (`compute_usage`, every figure),
  then 7 timed ones (`--repeat`).
- Per case: the median of the rounds' medians for either tree and their ratio
  current / reference (target <= 1.3), the per-round ratios, the SQL part, the statements
  sent per refresh (the engine's counter, `db.statements.count`, as refresh.py counts
  them; target <= 4 for the current tree), the median time of each statement, and the
  worker's peak RSS (ru_maxrss).
- A case whose ratio is above the target is profiled afterwards (cProfile of one warm
  refresh in a worker of each tree; `--profile` profiles every case): the top functions,
  the time per statement, the rows in the window and in the previous window, and on
  PostgreSQL `EXPLAIN (ANALYZE, BUFFERS)` of the statements over 5 ms go into the JSON
  and are printed.

Results go to benchmarks/results/spend-<time>.json (gitignored); the markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

DEFAULT_REFERENCE = "67006bb"
SIZE = 1_000_000
TARGET_RATIO = 1.3
TARGET_STATEMENTS = 4
REFERENCE_STATEMENTS = 3

#: What is measured, in a round's order: today's refresh, the current one with everything
#: of the issue, and (unless --no-split) the current one without the previous period
#: (`compare=False`), which tells the previous period's share from the rest.
NO_PREVIOUS = "current_no_previous"
ROLES = ("reference", "current", NO_PREVIOUS)
SHORT = {"reference": "ref", "current": "cur", NO_PREVIOUS: "cur-noprev"}

#: Prices written into the copy of router.yaml (USD per token, LiteLLM's keys). The
#: self-hosted llama stays unpriced, so the unpriced share is computed too.
PRICES_PER_TOKEN = {
    "gpt-4o": ("0.0000025", "0.00001"),
    "gpt-4o-mini": ("0.00000015", "0.0000006"),
    "claude-3-5-sonnet": ("0.000003", "0.000015"),
    "mistral-small": ("0.0000002", "0.0000006"),
    "text-embedding-3-small": ("0.00000002", "0"),
    "gemini-1.5-pro": ("0.00000125", "0.000005"),
}


# --------------------------------------------------------------------------------------
# Worker: one (tree, backend, case) in a fresh process; imports usage_lib from its tree
# --------------------------------------------------------------------------------------


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _profile_rows(profile, key: str, limit: int) -> list[dict]:
    import pstats

    stats = pstats.Stats(profile)
    stats.sort_stats(key)
    rows = []
    for func in stats.fcn_list[:limit]:
        calls, primitive, tottime, cumtime, _callers = stats.stats[func]
        filename, line, name = func
        rows.append({"function": f"{filename}:{line}({name})", "calls": calls, "primitive_calls": primitive,
                     "tottime_ms": round(tottime * 1000, 2), "cumtime_ms": round(cumtime * 1000, 2)})
    return rows


def run_worker(spec: dict) -> dict:
    import usage_lib

    tree = Path(spec["tree"]).resolve()
    origin = Path(usage_lib.__file__).resolve()
    if tree not in origin.parents:
        raise RuntimeError(f"usage_lib imported from {origin}, not from {tree}")

    from sqlalchemy import event

    from usage_lib import Selection, compute_usage, load_router_config, open_database

    rss_start = _rss_mb()
    now = datetime.fromisoformat(spec["now"])
    models = load_router_config(spec["router_config"])
    kwargs = {}
    if spec["prices"] is not None:
        from usage_lib.core.prices import load_price_book

        kwargs["prices"] = load_price_book(Path(spec["prices"]), None)
    if spec.get("compare") is False:
        kwargs["compare"] = False
    selection = Selection(org=spec["org"], span=spec["span"], now=now)
    db = open_database(spec["url"])
    sql_seconds = [0.0]
    started_at: list[float] = []
    #: (first words of the SQL, ms) of each statement of the current refresh
    per_statement: list[tuple[str, float]] = []
    #: (SQL, parameters) of each statement of the current refresh, for EXPLAIN
    sent: list[tuple[str, object]] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def _before(*_args):
        started_at.append(time.perf_counter())

    @event.listens_for(db.engine, "after_cursor_execute")
    def _after(_conn, _cursor, statement, parameters, *_args):
        seconds = time.perf_counter() - started_at.pop()
        sql_seconds[0] += seconds
        per_statement.append((" ".join(str(statement).split())[:80], seconds * 1000))
        sent.append((statement, parameters))

    def refresh():
        db.statements.count = 0
        sql_seconds[0] = 0.0
        per_statement.clear()
        sent.clear()
        began = time.perf_counter()
        usage = compute_usage(db, spec["viewer"], selection, models, **kwargs)
        return usage, time.perf_counter() - began, db.statements.count, sql_seconds[0]

    warmups = [refresh()[1] * 1000 for _ in range(spec["warmup"])]
    times, sql_times, statements, statement_times = [], [], [], []
    for _ in range(spec["repeat"]):
        usage, seconds, count, sql_s = refresh()
        times.append(seconds * 1000)
        sql_times.append(sql_s * 1000)
        statements.append(count)
        statement_times.append(list(per_statement))
    heads = [head for head, _ms in statement_times[-1]]
    by_position = [statistics.median(run[i][1] for run in statement_times if len(run) > i)
                   for i in range(len(heads))]
    result = {
        "usage_lib": str(origin.parent),
        "warmup_ms": warmups,
        "median_ms": statistics.median(times),
        "times_ms": times,
        "sql_median_ms": statistics.median(sql_times),
        "statements": max(statements),
        "statements_min": min(statements),
        "statement_median_ms": by_position,
        "statement_sql": heads,
        "requests_in_figures": int(usage.metrics.total_requests),
        "rss_start_mb": rss_start,
        "rss_peak_mb": _rss_mb(),
        "load": list(os.getloadavg()),
    }
    cost = getattr(usage, "cost", None)
    if cost is not None:  # the current tree: show that prices and the previous period were on
        result["cost"] = {"currency": cost.currency, "total": format(cost.total, "f"),
                          "unpriced_requests": int(cost.unpriced_requests)}
        previous = getattr(usage, "previous", None)
        result["previous_requests"] = None if previous is None else int(previous.metrics.total_requests)

    if spec.get("profile"):
        import cProfile

        profile = cProfile.Profile()
        db.statements.count = 0
        began = time.perf_counter()
        profile.enable()
        compute_usage(db, spec["viewer"], selection, models, **kwargs)
        profile.disable()
        from sqlalchemy import func, select

        from usage_lib.gateway.schema import management_request

        def rows_since(start, end):
            condition = management_request.c.timestamp >= db.timestamp_bound(start)
            if end is not None:
                condition &= management_request.c.timestamp < db.timestamp_bound(end)
            with db.engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(management_request)
                                        .where(condition)).scalar_one())

        explained = []
        if db.dialect == "postgresql":  # where the big statements' time goes, node by node
            statements = [(sql, params) for (sql, params), ms in zip(list(sent), by_position) if ms > 5]
            with db.connect() as conn:
                for sql, params in statements:
                    plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).scalars().all()
                    explained.append({"sql": sql, "parameters": {k: str(v) for k, v in dict(params).items()},
                                      "plan": plan})
        previous = getattr(usage, "previous", None)
        result["profile"] = {
            "explain_analyze": explained,
            "rows_in_window": rows_since(usage.window.start, None),
            "rows_in_previous_window": None if previous is None else rows_since(previous.window.start,
                                                                                previous.window.until),
            "statement_median_ms": by_position,
            "statement_sql": heads,
            "refresh_ms_under_profile": (time.perf_counter() - began) * 1000,
            "by_tottime": _profile_rows(profile, "tottime", spec.get("profile_top", 25)),
            "by_cumtime": _profile_rows(profile, "cumulative", spec.get("profile_top", 25)),
        }
    db.close()
    return result


# --------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _git(*args: str, cwd: Path = REPO) -> str:
    completed = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    if completed.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {completed.stderr.strip()}")
    return completed.stdout.strip()


def worktree(rev: str, role: str, log=_log) -> tuple[Path, str]:
    """A detached worktree of `rev` under /tmp (reused when present); (path, full sha)."""
    sha = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    path = Path("/tmp") / f"aqueduct-usage-{role}-{sha[:12]}"
    if path.exists():
        head = _git("rev-parse", "HEAD", cwd=path)
        if head != sha:
            raise RuntimeError(f"{path} exists at {head[:12]}, not at {sha[:12]}; remove it "
                               f"(git worktree remove {path})")
        dirty = _git("status", "--porcelain", "usage_lib", cwd=path)
        if dirty:
            raise RuntimeError(f"{path} has changes in usage_lib:\n{dirty}")
        log(f"{role}: reusing the worktree {path} ({sha[:12]})")
    else:
        log(f"{role}: making a worktree of {rev} ({sha[:12]}) at {path} ...")
        # --force: the path may still be registered from a worktree whose directory is gone.
        _git("worktree", "add", "--force", "--detach", str(path), sha)
    return path, sha


def priced_router_config(source: Path, target: Path) -> Path:
    """A copy of the router config with LiteLLM's per-token costs under `model_info`."""
    import yaml

    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    for entry in config.get("model_list", []):
        price = PRICES_PER_TOKEN.get(entry.get("model_name"))
        if price is not None:
            info = entry.setdefault("model_info", {})
            info["input_cost_per_token"] = float(price[0])
            info["output_cost_per_token"] = float(price[1])
    header = (f"# {source.name} with per-token prices for every model but the self-hosted llama\n"
              "# (written by benchmarks/spend.py)\n")
    target.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return target


def _spawn(spec: dict, timeout: float) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = spec["tree"]
    env.pop("PYTHONHOME", None)
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                               cwd=spec["tree"], env=env)
    if completed.returncode != 0:
        raise RuntimeError(f"worker failed for {spec['tree_role']} {spec['backend']} {spec['case']}:\n"
                           f"{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def measure(args, trees: dict, databases: dict, cases, log=_log) -> list[dict]:
    """Every round: each (backend, case) for every role, back to back, order reversed every round."""
    roles = [role for role in ROLES if role in trees]
    runs = []
    for round_index in range(args.rounds):
        order = list(roles) if round_index % 2 == 0 else list(reversed(roles))
        log(f"round {round_index + 1}/{args.rounds} ({' then '.join(order)})")
        for backend, url in databases.items():
            for case_id, label, viewer, org, span in cases:
                line = []
                for role in order:
                    tree = trees[role]
                    spec = {
                        "tree": str(tree["path"]), "tree_role": role, "backend": backend, "case": case_id,
                        "url": url, "router_config": str(tree["router_config"]), "prices": tree["prices"],
                        "now": args.now, "viewer": viewer, "org": org, "span": span,
                        "warmup": args.warmup, "repeat": args.repeat, "compare": tree.get("compare"),
                    }
                    result = _spawn(spec, args.case_timeout)
                    runs.append({"round": round_index + 1, "role": role, "backend": backend,
                                 "case": case_id, "label": label, **result})
                    line.append(f"{SHORT[role]} {result['median_ms']:7.1f} ms ({result['statements']} st)")
                log(f"  {backend:10s} {label:30s} " + "  ".join(line))
    return runs


def summarise(runs: list[dict], databases: dict, cases) -> list[dict]:
    rows = []
    for backend in databases:
        for case_id, label, *_ in cases:
            mine = [r for r in runs if r["backend"] == backend and r["case"] == case_id]
            if not mine:
                continue
            by_role = {role: [r for r in mine if r["role"] == role] for role in ROLES}
            by_role = {role: rs for role, rs in by_role.items() if rs}
            medians = {role: statistics.median(r["median_ms"] for r in rs) for role, rs in by_role.items()}
            sql = {role: statistics.median(r["sql_median_ms"] for r in rs) for role, rs in by_role.items()}
            round_ratios = []
            for round_index in sorted({r["round"] for r in mine}):
                pair = {r["role"]: r["median_ms"] for r in mine if r["round"] == round_index}
                round_ratios.append(pair["current"] / pair["reference"])
            ratio = medians["current"] / medians["reference"]
            plain = medians.get(NO_PREVIOUS)
            statements = {role: max(r["statements"] for r in rs) for role, rs in by_role.items()}
            current_last = by_role["current"][-1]
            per_statement = {}
            for role, rs in by_role.items():
                count = min(len(r["statement_median_ms"]) for r in rs)
                per_statement[role] = [statistics.median(r["statement_median_ms"][i] for r in rs)
                                       for i in range(count)]
            rows.append({
                "backend": backend, "case": case_id, "label": label,
                "reference_ms": medians["reference"], "current_ms": medians["current"], "ratio": ratio,
                "round_ratios": round_ratios,
                "no_previous_ms": plain,
                "no_previous_ratio": None if plain is None else plain / medians["reference"],
                "no_previous_sql_ms": sql.get(NO_PREVIOUS),
                "no_previous_statements": statements.get(NO_PREVIOUS),
                "reference_round_medians_ms": [r["median_ms"] for r in by_role["reference"]],
                "current_round_medians_ms": [r["median_ms"] for r in by_role["current"]],
                "reference_sql_ms": sql["reference"], "current_sql_ms": sql["current"],
                "reference_statement_ms": per_statement["reference"],
                "current_statement_ms": per_statement["current"],
                "no_previous_statement_ms": per_statement.get(NO_PREVIOUS),
                "reference_statement_sql": by_role["reference"][-1]["statement_sql"],
                "current_statement_sql": current_last["statement_sql"],
                "reference_statements": statements["reference"], "current_statements": statements["current"],
                "reference_rss_peak_mb": max(r["rss_peak_mb"] for r in by_role["reference"]),
                "current_rss_peak_mb": max(r["rss_peak_mb"] for r in by_role["current"]),
                "requests_in_figures": current_last["requests_in_figures"],
                "same_requests": len({r["requests_in_figures"] for r in mine}) == 1,
                "cost": current_last.get("cost"),
                "previous_requests": current_last.get("previous_requests"),
                "within_ratio": ratio <= TARGET_RATIO,
                "within_statements": statements["current"] <= TARGET_STATEMENTS,
            })
    return rows


def profile_cases(args, trees: dict, databases: dict, rows: list[dict], cases, log=_log) -> list[dict]:
    """cProfile of one warm refresh per tree for the cases above the target (all: --profile)."""
    wanted = [row for row in rows if args.profile or not row["within_ratio"]]
    profiles = []
    by_id = {case[0]: case for case in cases}
    for row in wanted:
        case_id, label, viewer, org, span = by_id[row["case"]]
        for role in ("reference", "current"):
            tree = trees[role]
            spec = {
                "tree": str(tree["path"]), "tree_role": role, "backend": row["backend"], "case": case_id,
                "url": databases[row["backend"]], "router_config": str(tree["router_config"]),
                "prices": tree["prices"], "now": args.now, "viewer": viewer, "org": org, "span": span,
                "warmup": args.warmup, "repeat": 1, "profile": True, "profile_top": args.profile_top,
            }
            log(f"profiling {role} {row['backend']} {label} ...")
            result = _spawn(spec, args.case_timeout)
            profiles.append({"role": role, "backend": row["backend"], "case": case_id, "label": label,
                             "median_ms": result["median_ms"], **result["profile"]})
    return profiles


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def table_lines(rows: list[dict]) -> list[str]:
    lines = [
        "| backend | case | reference ms (SQL) | current ms (SQL) | current / reference | ratios per round "
        "| <= 1.3x | statements ref / cur | <= 4 | peak RSS MB ref / cur | current without previous period ms "
        "(ratio) |",
        "|" + "---|" * 11,
    ]
    for row in rows:
        lines.append(
            f"| {row['backend']} | {row['label']} | {_ms(row['reference_ms'])} ({_ms(row['reference_sql_ms'])}) | "
            f"{_ms(row['current_ms'])} ({_ms(row['current_sql_ms'])}) | {row['ratio']:.2f}x | "
            f"{' '.join(f'{r:.2f}' for r in row['round_ratios'])} | {'yes' if row['within_ratio'] else '**no**'} | "
            f"{row['reference_statements']} / {row['current_statements']} | "
            f"{'yes' if row['within_statements'] else '**no**'} | "
            f"{row['reference_rss_peak_mb']:.0f} / {row['current_rss_peak_mb']:.0f} | "
            + ("-" if row["no_previous_ms"] is None else
               f"{_ms(row['no_previous_ms'])} ({row['no_previous_ratio']:.2f}x)") + " |"
        )
    return lines


def statement_lines(rows: list[dict]) -> list[str]:
    lines = ["| backend | case | reference: ms per statement | current: ms per statement "
             "| current without previous period |", "|---|---|---|---|---|"]
    for row in rows:
        plain = row.get("no_previous_statement_ms")
        lines.append(f"| {row['backend']} | {row['label']} | "
                     f"{' + '.join(_ms(v) for v in row['reference_statement_ms'])} | "
                     f"{' + '.join(_ms(v) for v in row['current_statement_ms'])} | "
                     f"{'-' if plain is None else ' + '.join(_ms(v) for v in plain)} |")
    return lines


def profile_lines(profiles: list[dict], top: int = 15) -> list[str]:
    lines = []
    for item in profiles:
        lines.append(f"\n{item['role']} {item['backend']} {item['label']}: "
                     f"{item['refresh_ms_under_profile']:.1f} ms under cProfile "
                     f"(unprofiled median {item['median_ms']:.1f} ms); rows in the window "
                     f"{item['rows_in_window']:,}, in the previous window "
                     f"{'-' if item['rows_in_previous_window'] is None else format(item['rows_in_previous_window'], ',')}")
        for head, ms in zip(item["statement_sql"], item["statement_median_ms"]):
            lines.append(f"  statement {ms:8.1f} ms  {head}")
        for explained in item.get("explain_analyze", []):
            lines.append("  EXPLAIN (ANALYZE, BUFFERS):")
            lines.extend("    " + line for line in explained["plan"][:40])
        lines.append("  by own time:")
        for entry in item["by_tottime"][:top]:
            lines.append(f"  {entry['tottime_ms']:8.1f} ms own {entry['cumtime_ms']:8.1f} ms cum "
                         f"{entry['calls']:>8} calls  {entry['function']}")
    return lines


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--reference", default=DEFAULT_REFERENCE,
                        help=f"revision measured as today's refresh (default {DEFAULT_REFERENCE})")
    parser.add_argument("--current", help="revision measured as the current tree (default: this working tree)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, reference and current alternating (default 3)")
    parser.add_argument("--repeat", type=int, default=7, help="timed refreshes per measurement (median; default 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed refreshes first (default 2)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite,postgresql")
    parser.add_argument("--cases", help="comma-separated case ids of refresh.py's CASES (default: all three)")
    parser.add_argument("--no-split", action="store_true",
                        help="skip the current tree without the previous period (compare=False)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 3 repetitions, SQLite only")
    parser.add_argument("--profile", action="store_true", help="profile every case, not only those above 1.3x")
    parser.add_argument("--profile-top", type=int, default=25, help="functions kept per profile (default 25)")
    parser.add_argument("--data-dir", type=Path, help="the demo databases' directory (default benchmarks/data)")
    parser.add_argument("--keep-server", action="store_true", help="leave the benchmark's PostgreSQL server running")
    parser.add_argument("--out", type=Path, help="JSON results file (default benchmarks/results/spend-<time>.json)")
    parser.add_argument("--case-timeout", type=float, default=600)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0

    # Only the orchestrator imports the benchmark helpers (and with them this tree's
    # usage_lib); a worker imports usage_lib from its own tree.
    for path in (str(REPO), str(HERE)):
        if path not in sys.path:
            sys.path.insert(0, path)
    import datasets
    from refresh import CASES, _environment, gateway_indexes_only

    if args.quick:
        args.rounds, args.repeat, args.backends = 1, 3, "sqlite"
    if args.rounds < 1 or args.repeat < 1:
        raise SystemExit("--rounds and --repeat must be at least 1")
    if args.data_dir is not None:
        datasets.configure(args.data_dir)
    args.now = datasets.NOW.isoformat()
    cases = CASES
    if args.cases:
        wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
        unknown = sorted(set(wanted) - {c[0] for c in CASES})
        if unknown:
            raise SystemExit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(c[0] for c in CASES)}")
        cases = tuple(c for c in CASES if c[0] in wanted)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    started = time.perf_counter()
    load_start = os.getloadavg()
    _log(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")

    router_config = datasets.ROUTER_CONFIG
    if not router_config.exists():
        datasets.write_router_config()
    priced = priced_router_config(router_config, Path("/tmp") / "aqueduct-usage-spend-router-prices.yaml")

    reference_path, reference_sha = worktree(args.reference, "reference")
    if args.current:
        current_path, current_sha = worktree(args.current, "current")
        current_git = current_sha[:12]
    else:
        current_path, current_sha = REPO, _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "usage_lib").splitlines()
        current_git = current_sha[:12] + (f" + uncommitted changes in {len(dirty)} usage_lib file(s)" if dirty else "")
    trees = {
        "reference": {"path": reference_path, "git": reference_sha[:12], "router_config": router_config,
                      "prices": None},
        "current": {"path": current_path, "git": current_git, "router_config": priced, "prices": str(priced)},
    }
    if not args.no_split:
        trees[NO_PREVIOUS] = {**trees["current"], "compare": False}
    _log(f"reference {trees['reference']['git']} at {reference_path}; current {current_git} at {current_path}")

    server = None
    pg_version = None
    databases: dict[str, str] = {}
    try:
        if "sqlite" in backends:
            path = datasets.DATA / f"demo-{SIZE}.sqlite3"
            if not path.exists():
                raise SystemExit(f"no {path}: build it with benchmarks/refresh.py --sizes {SIZE} --backends sqlite")
            databases["sqlite"] = f"sqlite:///{path}"
        if "postgresql" in backends:
            from pgserver import PersistentPostgres

            server = PersistentPostgres(datasets.DATA / "pg")
            _log(f"starting the benchmark's PostgreSQL server in {server.base} ...")
            server.start()
            if not server.started_here:
                _log("  (it was already running: it is left running)")
            name = f"demo_{SIZE}"
            if name not in server.databases():
                raise SystemExit(f"no database {name} on the benchmark server: build it with "
                                 f"benchmarks/refresh.py --sizes {SIZE} --backends postgresql")
            databases["postgresql"] = server.database_url(name)
            pg_version = datasets.server_version(databases["postgresql"])
        indexes = {backend: gateway_indexes_only(backend, url) for backend, url in databases.items()}

        _log(f"measuring: {args.rounds} round(s), {args.warmup} warm-up + {args.repeat} timed refreshes each ...")
        measure_started = time.perf_counter()
        runs = measure(args, trees, databases, cases)
        measure_seconds = time.perf_counter() - measure_started
        load_end = os.getloadavg()
        rows = summarise(runs, databases, cases)
        profiles = profile_cases(args, trees, databases, rows, cases)
    finally:
        if server is not None and not args.keep_server:
            server.stop()

    environment = _environment(pg_version)
    environment["git"] = current_git
    loads = [r["load"][0] for r in runs]
    result = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "benchmarks/spend.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "environment": environment,
        "reference": {"rev": args.reference, "sha": reference_sha, "path": str(reference_path)},
        "current": {"rev": args.current or "working tree", "sha": current_sha, "git": current_git,
                    "path": str(current_path), "prices": str(priced)},
        "settings": {"rounds": args.rounds, "warmup": args.warmup, "repeat": args.repeat, "now": args.now,
                     "requests": SIZE, "databases": databases, "request_indexes": indexes},
        "targets": {"ratio": TARGET_RATIO, "statements": TARGET_STATEMENTS},
        "load_average_start": load_start,
        "load_average_end": load_end,
        "load_1min_during": {"min": min(loads), "max": max(loads), "median": statistics.median(loads)},
        "seconds_total": time.perf_counter() - started,
        "seconds_measuring": measure_seconds,
        "cases": rows,
        "runs": runs,
        "profiles": profiles,
    }
    out = args.out or (HERE / "results" / f"spend-{datetime.now():%Y%m%d-%H%M%S}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))

    print(f"reference {args.reference} ({reference_sha[:12]}) vs current {current_git}; 1M requests; "
          f"median of {args.rounds} round median(s) of {args.repeat} warm refreshes\n")
    print("\n".join(table_lines(rows)))
    print("\nSQL statements of one refresh, in order (median ms):\n")
    print("\n".join(statement_lines(rows)))
    print()
    ratio_ok = all(r["within_ratio"] for r in rows)
    statements_ok = all(r["within_statements"] for r in rows)
    print(f"- within {TARGET_RATIO}x of the reference in every case: {'yes' if ratio_ok else 'NO'}")
    print(f"- at most {TARGET_STATEMENTS} statements per refresh: {'yes' if statements_ok else 'NO'}")
    if any(not r["same_requests"] for r in rows):
        print("- WARNING: the trees disagree on the requests in the figures for some case")
    for row in rows:
        if row["cost"]:
            print(f"- {row['backend']} {row['label']}: cost {row['cost']['total']} {row['cost']['currency']}, "
                  f"{row['cost']['unpriced_requests']:,} unpriced of {row['requests_in_figures']:,} requests; "
                  f"previous period {row['previous_requests']}")
    if profiles:
        print("\n".join(profile_lines(profiles)))
    print(f"\nload average start {load_start[0]:.2f}/{load_start[1]:.2f}/{load_start[2]:.2f}, "
          f"end {load_end[0]:.2f}/{load_end[1]:.2f}/{load_end[2]:.2f}, 1-min during "
          f"{min(loads):.2f}-{max(loads):.2f}; total {result['seconds_total']:.0f} s "
          f"(measuring {measure_seconds:.0f} s); results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
