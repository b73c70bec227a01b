"""The `usage-dashboard` command: demo database, report, snapshot, serve.

Errors a user can fix print as one line on stderr (exit status 2), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Sequence

from usage_lib.errors import UsageError
from usage_lib.report import TOP_CHOICES, Selection, Usage
from usage_lib.timebuckets import SPANS

DEFAULT_DEMO_DB = Path("demo/demo.sqlite3")


def _iso(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


def add_scope_arguments(parser: argparse.ArgumentParser) -> None:
    """The options naming a database, a viewer and what they look at."""
    parser.add_argument("--db", required=True, help="SQLAlchemy URL, e.g. sqlite:///gateway.sqlite3 or postgresql://user@host/db")
    parser.add_argument("--router-config", type=Path, help="LiteLLM router config YAML (model_list)")
    parser.add_argument("--viewer", required=True, help="the gateway user looking: email or username")
    parser.add_argument("--org", default=None, help="all, or an org id or name (global admins only; others get their own org)")
    parser.add_argument("--span", default="1d", choices=list(SPANS))
    parser.add_argument("--token", default=None, help="a token id of the org (ignored when it does not fit)")
    parser.add_argument("--top", type=int, default=100, choices=list(TOP_CHOICES))
    parser.add_argument("--tz", default="UTC", help="IANA time zone of the chart buckets")
    parser.add_argument("--now", type=_iso, default=None, help="as-of time, ISO 8601 (no offset: in --tz)")


def selection_from(args: argparse.Namespace) -> Selection:
    return Selection(org=args.org, span=args.span, token=args.token, top=args.top, tz=args.tz, now=args.now)


def db_url(value: str) -> str:
    """Accept a plain file path for SQLite as well as a URL; an SQLite file is made
    absolute, so the URL still names it in a kernel started in another directory."""
    if "://" not in value:
        return f"sqlite:///{Path(value).expanduser().resolve()}"
    if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
        path = value[len("sqlite:///"):]
        if path and not path.startswith(":memory:") and "?" not in path:
            return f"sqlite:///{Path(path).expanduser().resolve()}"
    return value


def compute_from(args: argparse.Namespace) -> Usage:
    from usage_lib.db import open_database
    from usage_lib.report import compute_usage
    from usage_lib.routerconfig import load_router_config

    models = load_router_config(args.router_config) if args.router_config else None
    db = open_database(db_url(args.db))
    try:
        return compute_usage(db, args.viewer, selection_from(args), models=models)
    finally:
        db.close()


def format_text(usage: Usage) -> str:
    """A plain-text rendering of a report, for terminals."""
    data = usage.to_json()
    scope, metrics = data["scope"], data["metrics"]
    org = "All" if scope["org"] == "all" else scope["org"]["name"]
    token = f", token {scope['token']['name']} (#{scope['token']['id']})" if scope["token"] else ""
    lines = [
        f"Usage for {scope['viewer']} ({scope['role']}): {org}{token}, last {scope['span']} until {scope['now']}",
        "",
        f"  Total requests           {metrics['total_requests']:>14,}",
        f"  Failed requests          {metrics['failed_requests']:>14,}",
        f"  Avg resp (completion)    {metrics['avg_response_ms_completion']:>14,.1f} ms",
        f"  Avg resp (embedding)     {metrics['avg_response_ms_embedding']:>14,.1f} ms",
        f"  Input tokens             {metrics['input_tokens']:>14,}",
        f"  Output tokens            {metrics['output_tokens']:>14,}",
        f"  Total tokens             {metrics['total_tokens']:>14,}",
        "",
        "Requests over time:",
    ]
    lines += [f"  {point['bucket']}  {point['requests']:>10,}" for point in data["timeseries"]]
    lines += ["", "Requests by model:"]
    lines += [f"  {row['model'] or 'N/A':<40} {row['requests']:>10,}" for row in data["models"]]
    kind = data["top"]["kind"]
    lines += ["", f"Top by {kind.replace('_', ' ')}:"]
    if not data["top"]["rows"]:
        lines.append("  No data available.")
    for row in data["top"]["rows"]:
        name = row["name"] or "N/A"
        extra = ""
        if kind == "token":
            extra = f"  owner {row['owner_email'] or 'N/A'}" + (f"  service account {row['service_account']}" if row["service_account"] else "")
        lines.append(
            f"  {row['rank']:>3}. {name:<32} {row['requests']:>10,} req  "
            f"{row['input_tokens']:>12,} in  {row['output_tokens']:>12,} out  {row['total_tokens']:>12,} total{extra}"
        )
    for notice in data["notices"]:
        lines += ["", f"Note: {notice}"]
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    from usage_lib.demo import build_demo, demo_paths

    if args.db.exists():
        print(f"{args.db} exists; remove it first to build a new demo database", file=sys.stderr)
        return 2
    args.db.parent.mkdir(parents=True, exist_ok=True)
    url, router = demo_paths(args.db)
    demo = build_demo(url, router, requests=args.requests, seed=args.seed)
    print(f"wrote {demo.requests:,} requests to {args.db} and the router config {demo.router_config}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    usage = compute_from(args)
    for note in usage.fallbacks:
        print(f"note: {note}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(usage.to_json(), indent=2))
    else:
        print(format_text(usage))
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    from usage_lib.snapshot import export_snapshot

    path = export_snapshot(args, args.out)
    print(f"wrote {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from usage_lib.serve import serve

    return serve(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usage-dashboard", description="Usage dashboard of the Aqueduct AI gateway.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="write a demo gateway database (SQLite) and router config")
    demo.add_argument("--db", type=Path, default=DEFAULT_DEMO_DB)
    demo.add_argument("--requests", type=int, default=20_000)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(run=cmd_demo)

    report = commands.add_parser("report", help="print the dashboard's figures")
    add_scope_arguments(report)
    report.add_argument("--format", choices=["json", "text"], default="text")
    report.set_defaults(run=cmd_report)

    snapshot = commands.add_parser("snapshot", help="export the dashboard as .html, .pdf, .png, .json or .csv")
    add_scope_arguments(snapshot)
    snapshot.add_argument("--out", type=Path, required=True)
    snapshot.set_defaults(run=cmd_snapshot)

    serve = commands.add_parser("serve", help="serve the dashboard with Voila (the demo database unless --db)")
    serve.add_argument("--db", default=None, help="database URL (default: the demo database, built on first run)")
    serve.add_argument("--router-config", type=Path, default=None)
    serve.add_argument("--viewer", default=None, help="fixed local viewer (single-user use)")
    serve.add_argument("--tz", default="UTC")
    serve.add_argument("--port", type=int, default=8866)
    serve.add_argument("--host", default="127.0.0.1")
    serve.set_defaults(run=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"usage-dashboard: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
