"""The `usage-dashboard` command: demo database, report, snapshot, sync, serve.

A thin layer: each command turns its arguments into `Settings` and a `Selection` and
makes one library call. Errors a user can fix print as one line on stderr (exit status
2), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from usage_lib.core.spans import DEFAULT_SPAN, SPANS
from usage_lib.core.urlstate import SECTIONS, USAGE_SECTION
from usage_lib.core.usage import DEFAULT_TOP, TOP_CHOICES, Selection
from usage_lib.demo import build_demo, demo_paths
from usage_lib.errors import UsageError
from usage_lib.history.slices import duration_text, parse_duration
from usage_lib.history.sync import DEFAULT_RETENTION, DEFAULT_SETTLE
from usage_lib.render.files import json_bytes
from usage_lib.render.text import text
from usage_lib.serving.serve import serve
from usage_lib.settings import (
    DEFAULT_STATEMENT_TIMEOUT, DEMO_DB, ENV_ARCHIVE_HEALTH, ENV_ARCHIVE_URL, ENV_DB_URL, ENV_DEMO, ENV_PRICES, ENV_ROUTER_CONFIG,
    ENV_STATEMENT_TIMEOUT, ENV_TZ, ENV_VIEWER, Settings, parse_statement_timeout,
)
from usage_lib.snapshot import FORMATS, compute_report, export_snapshot, pinned


PRICES_HELP = ("prices per million tokens (YAML or CSV: model, input_per_million, output_per_million, currency, "
               "valid_from), overriding the router config's")
STATEMENT_TIMEOUT_HELP = (f"cancel a statement on the gateway database after this long, e.g. 30s, 2m; 0: never "
                          f"(default {duration_text(DEFAULT_STATEMENT_TIMEOUT)}, or {ENV_STATEMENT_TIMEOUT} for serve)")
HEALTH_HELP = ("also archive health histograms (latency, statuses, in flight, overhead) for the health "
               "figures: several times slower; once an archive has health, every sync keeps writing it")


def _iso(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None


def _scope_arguments(parser: argparse.ArgumentParser) -> None:
    """The options naming a database, a viewer and what they look at."""
    parser.add_argument("--db", required=True, help="SQLAlchemy URL (sqlite:///gateway.sqlite3, postgresql://user@host/db) or an SQLite file")
    parser.add_argument("--router-config", type=Path, help="LiteLLM router config YAML (model_list)")
    parser.add_argument("--prices", type=Path, default=None, help=PRICES_HELP)
    parser.add_argument("--viewer", required=True, help="the gateway user looking: email or username")
    parser.add_argument("--org", default=None, help="all, or an org id or name (global admins only; others get their own org)")
    parser.add_argument("--span", default=DEFAULT_SPAN, choices=list(SPANS))
    # Checked by the core (spans.range_window), as a range from a page's URL is.
    parser.add_argument("--start", default=None, help="custom range start, ISO 8601 (no offset: in --tz); with --end, replaces --span")
    parser.add_argument("--end", default=None, help="custom range end (excluded), ISO 8601, not after --now")
    parser.add_argument("--token", default=None, help="a token id of the org (ignored when it does not fit)")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, choices=list(TOP_CHOICES))
    parser.add_argument("--tz", default="UTC", help="IANA time zone of the chart buckets")
    parser.add_argument("--now", type=_iso, default=None, help="as-of time, ISO 8601 (no offset: in --tz)")
    parser.add_argument("--archive", default=None, help="usage archive URL or SQLite file (see `sync`): settled history from it, the rest from --db")
    parser.add_argument("--statement-timeout", default=None, help=STATEMENT_TIMEOUT_HELP)


def _settings(args: argparse.Namespace) -> tuple[Settings, Selection]:
    view = Selection(tz=args.tz, now=args.now)
    timeout = (DEFAULT_STATEMENT_TIMEOUT if args.statement_timeout is None
               else parse_statement_timeout(args.statement_timeout, "--statement-timeout"))
    settings = Settings(db_url=args.db, router_config=args.router_config, viewer=args.viewer, view=view,
                        archive_url=args.archive, prices_file=args.prices, statement_timeout=timeout)
    return settings, settings.select(org=args.org, span=args.span, token=args.token, top=args.top,
                                     start=args.start, end=args.end)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.db.exists():
        raise UsageError(f"{args.db} exists; remove it first to build a new demo database")
    args.db.parent.mkdir(parents=True, exist_ok=True)
    url, router = demo_paths(args.db)
    demo = build_demo(url, router, requests=args.requests, seed=args.seed)
    print(f"wrote {demo.requests:,} requests to {args.db} and the router config {demo.router_config}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    settings, selection = _settings(args)
    report = compute_report(settings, pinned(selection))  # a refused choice is noted by _Notes
    print(json_bytes(report.data).decode("utf-8") if args.format == "json" else text(report), end="\n" if args.format == "text" else "")
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    settings, selection = _settings(args)
    for path in export_snapshot(settings, selection, args.out, section=args.view):
        print(f"wrote {path}")
    return 0


def _duration(text: str, option: str):
    duration = parse_duration(text, option)
    if not duration:
        raise UsageError(f"{option} must be longer than 0")
    return duration


def cmd_sync(args: argparse.Namespace) -> int:
    now = args.now.replace(tzinfo=timezone.utc) if args.now is not None and args.now.tzinfo is None else args.now
    settings = Settings(db_url=args.db, archive_url=args.archive, archive_health=args.health)
    result = settings.sync(now=now, settle=_duration(args.settle, "--settle"),
                           retention=_duration(args.retention, "--retention"), wait=args.wait,
                           progress=not args.quiet and sys.stderr.isatty())
    if not args.quiet:
        print(f"archived {result.slices} slices ({result.requests:,} requests) in {result.seconds:.1f} s; "
              f"complete up to {result.watermark.isoformat()}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    # Who is looking (AQUEDUCT_IDENTITY...) and a pinned as-of time come from the
    # operator's environment; the arguments name the database, router config, viewer, zone.
    env = {key: value for key, value in os.environ.items() if key not in (ENV_DB_URL, ENV_ROUTER_CONFIG, ENV_DEMO)}
    if args.db is None:
        demo_db = DEMO_DB.resolve()
        url, router = demo_paths(demo_db)
        if not demo_db.exists():
            print(f"building the demo database {demo_db} (first run) ...", flush=True)
            build_demo(url, router)
        env.update({ENV_DB_URL: url, ENV_ROUTER_CONFIG: str(args.router_config or router), ENV_DEMO: "1"})
    else:
        env[ENV_DB_URL] = args.db
        if args.router_config:
            env[ENV_ROUTER_CONFIG] = str(args.router_config)
    if args.viewer:
        env[ENV_VIEWER] = args.viewer
    env[ENV_TZ] = args.tz
    if args.health and not args.archive:
        raise UsageError("--health archives health: it needs --archive")
    if args.archive:
        env[ENV_ARCHIVE_URL] = args.archive
    if args.health:
        env[ENV_ARCHIVE_HEALTH] = "1"
    if args.prices:
        env[ENV_PRICES] = str(args.prices.resolve())
    if args.statement_timeout is not None:
        env[ENV_STATEMENT_TIMEOUT] = args.statement_timeout
    return serve(Settings.from_env(env), args.host, args.port,
                 sync_every=parse_duration(args.sync_every, "--sync-every") or None, settle=_duration(args.settle, "--settle"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usage-dashboard", description="Usage dashboard of the Aqueduct AI gateway.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="write a demo gateway database (SQLite) and router config")
    demo.add_argument("--db", type=Path, default=DEMO_DB)
    demo.add_argument("--requests", type=int, default=20_000)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(run=cmd_demo)

    report = commands.add_parser("report", help="print the dashboard's figures")
    _scope_arguments(report)
    report.add_argument("--format", choices=["json", "text"], default="text")
    report.set_defaults(run=cmd_report)

    snapshot = commands.add_parser("snapshot", help=f"export the view as {', '.join(FORMATS)}")
    _scope_arguments(snapshot)
    snapshot.add_argument("--out", type=Path, required=True, help=f"the file to write; its suffix is the format: {', '.join(FORMATS)}")
    snapshot.add_argument("--view", default=USAGE_SECTION, choices=list(SECTIONS),
                          help="the page's section a .png shows (default %(default)s); a .pdf has both, one a page")
    snapshot.set_defaults(run=cmd_snapshot)

    sync_ = commands.add_parser("sync", help="archive the gateway's settled usage (history beyond its retention)")
    sync_.add_argument("--db", required=True, help="the gateway's database URL (read only)")
    sync_.add_argument("--archive", required=True, help="archive URL (postgresql://...) or SQLite file, made on the first run")
    sync_.add_argument("--settle", default=duration_text(DEFAULT_SETTLE), help="archive a 15-minute slice once it ended this long ago (default %(default)s: longer than any stream)")
    sync_.add_argument("--retention", default=duration_text(DEFAULT_RETENTION), help="the gateway's REQUEST_RETENTION_DAYS, to tell a gap from quiet time (default %(default)s)")
    sync_.add_argument("--now", type=_iso, default=None, help="as-of time, ISO 8601 (no offset: UTC; default: now)")
    sync_.add_argument("--wait", action="store_true", help="wait for another sync writing the archive instead of exiting")
    sync_.add_argument("--health", action="store_true", help=HEALTH_HELP)
    sync_.add_argument("--quiet", action="store_true", help="print nothing unless something is wrong")
    sync_.set_defaults(run=cmd_sync)

    serve_ = commands.add_parser("serve", help="serve the dashboard with Voila (the demo database unless --db)")
    serve_.add_argument("--db", default=None, help="database URL (default: the demo database, built on first run)")
    serve_.add_argument("--router-config", type=Path, default=None)
    serve_.add_argument("--prices", type=Path, default=None, help=PRICES_HELP)
    serve_.add_argument("--viewer", default=None, help="fixed local viewer (single-user use)")
    serve_.add_argument("--tz", default="UTC")
    serve_.add_argument("--port", type=int, default=8866)
    serve_.add_argument("--host", default="127.0.0.1")
    serve_.add_argument("--archive", default=None, help="usage archive URL or SQLite file: read history from it and keep it synced")
    serve_.add_argument("--statement-timeout", default=None, help=STATEMENT_TIMEOUT_HELP)
    serve_.add_argument("--sync-every", default="1m",
                        help="with --archive: sync this often (default %(default)s; 0: never, the archive is synced elsewhere)")
    serve_.add_argument("--health", action="store_true", help=f"with --archive: {HEALTH_HELP}")
    serve_.add_argument("--settle", default=duration_text(DEFAULT_SETTLE), help="with --archive: the settle horizon (default %(default)s)")
    serve_.set_defaults(run=cmd_serve)
    return parser


class _Notes(logging.Handler):
    """The package's warnings, e.g. a choice the viewer may not make (`--org all` as an
    org admin) and what is shown instead: one `note: ...` line each on stderr. (Without a
    handler Python would print them bare, and a served page logs them to the server.)"""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        print(f"note: {record.getMessage()}", file=sys.stderr)  # sys.stderr as it is now


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    package_log = logging.getLogger("usage_lib")
    notes = _Notes()
    package_log.addHandler(notes)
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"usage-dashboard: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        package_log.removeHandler(notes)


if __name__ == "__main__":
    sys.exit(main())
