"""Snapshots of the dashboard: offline HTML, PDF and PNG, CSV and JSON (docs/snapshots.md).

`export_snapshot(args, out)` (the `usage-dashboard snapshot` command) picks the format
from `out`'s suffix:

- ``.json``: the JSON report contract (`Usage.to_json`), byte for byte what
  ``usage-dashboard report --format json`` prints;
- ``.csv``: the top table in `out`, and beside it ``<stem>.timeseries.csv``,
  ``<stem>.models.csv`` and ``<stem>.summary.csv`` (scope and the seven figures);
  ``.zip``: the same four CSV files in one archive;
- ``.html``: one self-contained page with the live dashboard's widgets (their state
  embedded with `ipywidgets.embed`, the JavaScript that draws them inlined: see
  `usage_lib.offline_assets`), plus a static header and a static copy of the tiles and
  the table that is readable before (or without) JavaScript. It makes no request;
- ``.pdf`` and ``.png``: the real dashboard page (Voila) in headless Chromium, taken
  once both charts are drawn.

Every export takes its figures at one instant: ``--now`` when given, else the moment
the export starts (the PDF/PNG page gets the same instant through ``AQUEDUCT_NOW``).
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import zipfile
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import urlencode

from usage_lib import formatting
from usage_lib.errors import UsageError
from usage_lib.report import Usage

FORMATS = (".html", ".pdf", ".png", ".json", ".csv", ".zip")
CSV_PARTS = ("timeseries", "models", "summary")  # beside the top table, `<stem>.<part>.csv`
REPORT_SCRIPT_ID = "aqueduct-usage-report"
EXPORT_CLASS = "aq-export"  # the Export control; hidden in offline snapshots
TILES = formatting.TILES
SPAN_WORDS = {"1h": "last hour", "1d": "last day", "1w": "last week"}


# --------------------------------------------------------------------------------------
# Command line entry
# --------------------------------------------------------------------------------------


def export_snapshot(args, out: Path | str) -> Path:
    """Write the snapshot `out` (format from its suffix) for the scope in `args`.

    `args` carries db, router_config, viewer, org, span, token, top, tz and now, as the
    `snapshot` subcommand parses them. Returns `out`. Unfit input raises `UsageError`.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"cannot tell the format of {out}: use one of {', '.join(FORMATS)}")
    if out.parent and not out.parent.is_dir():
        raise UsageError(f"the directory of {out} does not exist")
    args = pinned(args)
    if suffix in (".pdf", ".png"):
        capture_page(args, [out])
        return out
    if suffix == ".html":
        usage, widget = dashboard_view(args)
        _write(out, snapshot_html(usage, widget).encode("utf-8"))
        return out
    usage = _compute(args)
    if suffix == ".json":
        _write(out, snapshot_json(usage))
    elif suffix == ".zip":
        _write(out, snapshot_zip(usage))
    else:
        for name, data in csv_files(usage, out.stem).items():
            _write(out.with_name(name), data)
    return out


def written_files(out: Path | str) -> list[Path]:
    """Every file `export_snapshot(args, out)` writes (the CSV export writes four)."""
    out = Path(out)
    if out.suffix.lower() == ".csv":
        return [out] + [out.with_name(f"{out.stem}.{part}.csv") for part in CSV_PARTS]
    return [out]


def pinned(args):
    """`args` with `now` fixed to this instant when not given, so that every part of an
    export (and the page a PDF is taken from) shows the same figures."""
    if getattr(args, "now", None) is not None:
        return args
    copy = type(args)(**vars(args)) if hasattr(args, "__dict__") else args
    copy.now = datetime.now(timezone.utc).replace(microsecond=0)
    return copy


def _compute(args) -> Usage:
    from usage_lib.cli import compute_from

    return compute_from(args)


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.part")
    partial.write_bytes(data)
    partial.replace(path)


# --------------------------------------------------------------------------------------
# JSON and CSV
# --------------------------------------------------------------------------------------


def snapshot_json(usage: Usage) -> bytes:
    """The JSON report contract, as `usage-dashboard report --format json` prints it."""
    return (json.dumps(usage.to_json(), indent=2) + "\n").encode("utf-8")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A CSV cell: None is empty; text that a spreadsheet would run as a formula (a
    token name or a client-sent user_id starting with = + - @) gets a leading '."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(value) for value in row])
    return buffer.getvalue().encode("utf-8")


def top_columns(kind: str) -> list[str]:
    columns = ["rank", "kind", "id", "name", "requests", "input_tokens", "output_tokens", "total_tokens"]
    return columns + (["owner_email", "service_account"] if kind == "token" else [])


def snapshot_csv(usage: Usage) -> bytes:
    """The top table as CSV: one row per org, token or user_id, the JSON report's values
    (`kind` says which; `id` is the org id, token id or user_id; empty means none)."""
    report = usage.to_json()
    kind = report["top"]["kind"]
    columns = top_columns(kind)
    rows = [[kind if column == "kind" else row.get(column) for column in columns] for row in report["top"]["rows"]]
    return _csv(columns, rows)


def timeseries_csv(usage: Usage) -> bytes:
    report = usage.to_json()
    return _csv(["bucket", "requests"], [[p["bucket"], p["requests"]] for p in report["timeseries"]])


def models_csv(usage: Usage) -> bytes:
    report = usage.to_json()
    return _csv(["model", "requests"], [[m["model"], m["requests"]] for m in report["models"]])


def summary_csv(usage: Usage) -> bytes:
    """Scope and the seven figures, one `key,value` row each."""
    report = usage.to_json()
    scope, org, token = report["scope"], report["scope"]["org"], report["scope"]["token"]
    rows = [
        ["viewer", scope["viewer"]],
        ["role", scope["role"]],
        ["org", "all" if org == "all" else org["name"]],
        ["org_id", None if org == "all" else org["id"]],
        ["token", None if token is None else token["name"]],
        ["token_id", None if token is None else token["id"]],
        ["span", scope["span"]],
        ["now", scope["now"]],
        ["window_start", scope["window_start"]],
        ["tz", scope["tz"]],
        ["top_kind", report["top"]["kind"]],
        *([key, value] for key, value in report["metrics"].items()),
        *(["notice", notice] for notice in report["notices"]),
    ]
    return _csv(["key", "value"], rows)


def csv_files(usage: Usage, stem: str = "usage") -> dict[str, bytes]:
    """The four CSV files of a `.csv` export, by file name (the top table first)."""
    return {
        f"{stem}.csv": snapshot_csv(usage),
        f"{stem}.timeseries.csv": timeseries_csv(usage),
        f"{stem}.models.csv": models_csv(usage),
        f"{stem}.summary.csv": summary_csv(usage),
    }


ZIP_NAMES = ("top.csv", "timeseries.csv", "models.csv", "summary.csv")


def snapshot_zip(usage: Usage) -> bytes:
    """The four CSV files in one zip: top.csv, timeseries.csv, models.csv, summary.csv."""
    buffer = io.BytesIO()
    stamp = usage.window.now.astimezone(timezone.utc).timetuple()[:6]
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in zip(ZIP_NAMES, csv_files(usage).values()):
            info = zipfile.ZipInfo(name, stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def file_stem(usage: Usage) -> str:
    """A file name for a download: ``aqueduct-usage_<org>_<span>_<yyyymmdd-hhmm>``."""
    scope = usage.scope
    org = "all" if scope.org is None else scope.org.name
    token = f"_token-{scope.token.id}" if scope.token is not None else ""
    when = usage.window.now.astimezone(formatting_zone(usage)).strftime("%Y%m%d-%H%M")
    safe = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in org).strip("-") or "org"
    return f"aqueduct-usage_{safe}{token}_{usage.window.span}_{when}"


def formatting_zone(usage: Usage):
    return _zone(usage.tz)


# --------------------------------------------------------------------------------------
# Offline HTML
# --------------------------------------------------------------------------------------


def dashboard_view(args):
    """Build the live dashboard's widgets in this process (no kernel) for `args`' scope
    and refresh them once; returns (usage, root widget). The widgets are the page's own
    (`usage_lib.dashboard.Dashboard`), so the snapshot looks like the page."""
    from usage_lib.cli import selection_from
    from usage_lib.dashboard import Dashboard, DashboardConfig

    selection = selection_from(args)
    config = DashboardConfig(
        db_url=_db_url(args.db),
        router_config=Path(args.router_config) if args.router_config else None,
        viewer=args.viewer,
        tz=args.tz or "UTC",
        now=args.now,
        selection=selection,
    )
    dashboard = Dashboard(config, selection)
    quiet = logging.getLogger("usage_lib.dashboard")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # a refused viewer is our one-line error, not also a log line
    try:
        usage = dashboard.refresh()
    finally:
        quiet.setLevel(level)
        dashboard.close()  # the database; the widgets live on until embedded
    if usage is None:
        raise UsageError(dashboard.error or "the dashboard could not compute its figures")
    return usage, dashboard.widget


def _db_url(value: str) -> str:
    from usage_lib.cli import db_url

    return db_url(value)


def _script_json(data: Any) -> str:
    """JSON that is safe inside a <script> element (no `</script>`, no `<!--`)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c").replace(
        "\u2028", "\\u2028"
    ).replace("\u2029", "\\u2029")


def _inline_script(source: str) -> str:
    # An inlined bundle must not close its own element early.
    return "<script>" + source.replace("</script", "<\\/script") + "\n</script>"


def widget_state(widget) -> tuple[dict[str, Any], dict[str, Any]]:
    """The embeddable state of `widget` and everything it references, and its view spec.

    Controls come out disabled (a snapshot has no kernel behind it)."""
    from ipywidgets.embed import dependency_state, embed_data

    data = embed_data(views=[widget], drop_defaults=True, state=dependency_state([widget], drop_defaults=True))
    state = data["manager_state"]
    for model in state["state"].values():
        model_state = model.get("state", {})
        if model.get("model_module") == "@jupyter-widgets/controls" and _interactive(model):
            model_state["disabled"] = True
    return state, data["view_specs"][0]


def _interactive(model: Mapping[str, Any]) -> bool:
    name = model.get("model_name", "")
    return name.endswith("Model") and any(
        kind in name
        for kind in ("Button", "Dropdown", "Select", "Toggle", "Text", "Slider", "Checkbox", "Radio", "Combobox", "Picker")
    ) and "Style" not in name


def snapshot_html(usage: Usage, widget=None, *, exported_at: datetime | None = None) -> str:
    """One self-contained HTML page showing `usage` (and `widget`, the dashboard's root
    widget, drawn by the inlined widget manager when JavaScript runs)."""
    from usage_lib.offline_assets import load_bundles

    report = usage.to_json()
    exported_at = exported_at or datetime.now(timezone.utc)
    title = f"Aqueduct usage: {_scope_words(report)}, as of {formatting.as_of(usage.window.now.astimezone(formatting_zone(usage)), usage.tz)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Nothing may leave the file: no fetch, image, font or frame from anywhere.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; "
        "font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'\">",
        '<meta name="generator" content="aqueduct-usage snapshot">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{PAGE_CSS}</style>",
        "</head><body>",
        _header_html(usage, report, exported_at),
        _static_html(usage, report),
    ]
    if widget is not None:
        bundles = load_bundles()
        state, view = widget_state(widget)
        parts += [
            '<main id="aq-widgets" class="aq-widgets">',
            f'<script type="application/vnd.jupyter.widget-view+json">{_script_json(view)}</script>',
            "</main>",
            f'<script type="application/vnd.jupyter.widget-state+json">{_script_json(state)}</script>',
            *(_inline_script(source) for source in bundles.scripts()),
            f"<script>{_ready_js(usage)}</script>",
        ]
    parts += [
        f'<script type="application/json" id="{REPORT_SCRIPT_ID}">{_script_json(report)}</script>',
        "</body></html>",
    ]
    return "\n".join(parts)


def _scope_words(report: Mapping[str, Any]) -> str:
    scope = report["scope"]
    org = "All orgs" if scope["org"] == "all" else scope["org"]["name"]
    token = f", token {scope['token']['name']}" if scope["token"] else ""
    return f"{org}{token}, {SPAN_WORDS.get(scope['span'], scope['span'])}"


def _header_html(usage: Usage, report: Mapping[str, Any], exported_at: datetime) -> str:
    scope = report["scope"]
    tz = formatting_zone(usage)
    as_of = formatting.as_of(usage.window.now.astimezone(tz), usage.tz)
    since = formatting.as_of(usage.window.start.astimezone(tz), usage.tz)
    org = "All" if scope["org"] == "all" else scope["org"]["name"]
    rows = [
        ("Org", org),
        ("Token", f"{scope['token']['name']} (#{scope['token']['id']})" if scope["token"] else "all tokens"),
        ("Time frame", f"{SPAN_WORDS.get(scope['span'], scope['span'])} ({scope['span']}), from {since}"),
        ("As of", as_of),
        ("Viewer", f"{scope['viewer']} ({scope['role']})"),
        ("Exported", exported_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S (UTC)")),
    ]
    items = "".join(
        f'<div class="aq-meta-item" data-field="{html.escape(k.lower().replace(" ", "-"))}"><dt>{html.escape(k)}</dt>'
        f"<dd>{html.escape(v)}</dd></div>"
        for k, v in rows
    )
    notices = "".join(f'<p class="aq-notice">{html.escape(n)}</p>' for n in report["notices"])
    return (
        '<header class="aq-snapshot-header" id="aq-snapshot-header">'
        f'<h1>Aqueduct usage <span class="aq-snapshot-tag">snapshot</span></h1><dl class="aq-meta">{items}</dl>'
        f"{notices}"
        '<p class="aq-hint" id="aq-hint">A static snapshot: the figures as of the time above; controls do not respond.</p>'
        "</header>"
    )


def _static_html(usage: Usage, report: Mapping[str, Any]) -> str:
    metrics = report["metrics"]
    tiles = "".join(
        f'<div class="aq-static-tile" data-metric="{key}"><div class="aq-static-label">{html.escape(label)}</div>'
        f'<div class="aq-static-value">{html.escape(fmt(metrics[key]))}</div></div>'
        for key, label, fmt in TILES
    )
    kind = report["top"]["kind"]
    heading = {"org": "Requests by Organization", "token": "Requests by API Key", "user_id": "Requests by User ID"}[kind]
    headers = ["#", {"org": "Organization", "token": "API Key", "user_id": "User ID"}[kind], "Requests",
               "Input Tokens", "Output Tokens", "Total Tokens"]
    if kind == "token":
        headers += ["Token Owner", "Service Account"]
    body = []
    for row in report["top"]["rows"]:
        name = row["service_account"] if kind == "token" and row.get("service_account") else row["name"]
        cells = [str(row["rank"]), formatting.name(name)] + [
            formatting.count(row[key]) for key in ("requests", "input_tokens", "output_tokens", "total_tokens")
        ]
        if kind == "token":
            cells += [formatting.name(row["owner_email"]), row["service_account"] or ""]
        body.append(
            "<tr>" + "".join(f'<td class="{"num" if 1 < i < 6 else "txt"}">{html.escape(c)}</td>' for i, c in enumerate(cells)) + "</tr>"
        )
    if not body:
        body.append(f'<tr><td colspan="{len(headers)}">No data available.</td></tr>')
    span = report["scope"]["span"]
    series = "".join(
        f"<tr><td>{html.escape(formatting.bucket(bucket, span))}</td><td class=\"num\">{formatting.count(n)}</td></tr>"
        for bucket, n in zip(usage.timeseries["bucket"], usage.timeseries["requests"])
    )
    models = "".join(
        f"<tr><td>{html.escape(formatting.name(m['model']))}</td><td class=\"num\">{formatting.count(m['requests'])}</td></tr>"
        for m in report["models"]
    )
    return (
        '<section id="aq-static" class="aq-static">'
        f'<div class="aq-static-tiles">{tiles}</div>'
        f'<h2>{heading}</h2><table class="aq-static-table" data-kind="{kind}"><thead><tr>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        + f"</tr></thead><tbody>{''.join(body)}</tbody></table>"
        '<div class="aq-static-charts">'
        f'<div><h2>Requests Over Time</h2><table class="aq-static-series"><thead><tr><th>Bucket</th><th>Requests</th></tr></thead><tbody>{series}</tbody></table></div>'
        f'<div><h2>Requests by Model</h2><table class="aq-static-models"><thead><tr><th>Model</th><th>Requests</th></tr></thead><tbody>{models}</tbody></table></div>'
        "</div>"
        "<noscript><p class=\"aq-hint\">The charts need JavaScript; the figures above are complete.</p></noscript>"
        "</section>"
    )


# In a file nothing may be cut off: the page ellipsizes long tile values and table cells
# to fit the screen; snapshots (offline HTML, PDF, PNG) let them wrap instead.
WHOLE_TEXT_CSS = """
.aq-dashboard .aq-tile-value, .aq-dashboard .aq-td:not(.aq-num), .aq-dashboard .aq-name-text {
  white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
  overflow-wrap: anywhere;
}
.aq-dashboard .aq-td.aq-num { overflow: visible !important; text-overflow: clip !important; min-width: max-content !important; }
"""

PAGE_CSS = WHOLE_TEXT_CSS + """
body{margin:0;padding:16px 24px;font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:#0f172a;background:#f8fafc}
.aq-snapshot-header{background:white;border:1px solid #e2e8f0;border-radius:8px;padding:12px 16px;margin-bottom:16px}
.aq-snapshot-header h1{font-size:18px;margin:0 0 8px}
.aq-snapshot-tag{font-size:11px;font-weight:600;text-transform:uppercase;letter-spacing:.05em;color:#4f46e5;
border:1px solid #c7d2fe;border-radius:4px;padding:1px 6px;vertical-align:middle}
.aq-meta{display:flex;flex-wrap:wrap;gap:4px 24px;margin:0}
.aq-meta-item{display:flex;gap:6px;font-size:13px}.aq-meta dt{color:#64748b}.aq-meta dd{margin:0;font-weight:500}
.aq-notice{margin:8px 0 0;padding:6px 10px;background:#fef9c3;border-radius:4px;font-size:13px}
.aq-hint{margin:8px 0 0;color:#64748b;font-size:12px}
.aq-static-tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin-bottom:16px}
.aq-static-tile{background:white;border:1px solid #e2e8f0;border-radius:8px;padding:10px 12px}
.aq-static-label{font-size:12px;color:#64748b}.aq-static-value{font-size:20px;font-weight:600;margin-top:4px}
.aq-static h2{font-size:15px;margin:16px 0 6px}
.aq-static table{border-collapse:collapse;background:white;font-size:13px}
.aq-static th,.aq-static td{border:1px solid #e2e8f0;padding:4px 8px;text-align:left}
.aq-static td.num{text-align:right;font-variant-numeric:tabular-nums}
.aq-static-charts{display:flex;flex-wrap:wrap;gap:24px}
body.aq-widgets-ready .aq-static{display:none}
body.aq-widgets-ready .aq-hint#aq-hint{display:block}
.aq-export{display:none !important}
.aq-widgets .widget-subarea{max-width:100%}
"""

# True once the dashboard is drawn: not loading, tiles filled, both charts with their
# axes' ticks and one bar group per bucket / per model (zero counts draw empty bars).
DRAWN_JS = """
(expect) => {
  const root = document.querySelector('.aq-dashboard');
  if (!root || root.classList.contains('aq-loading')) return false;
  const total = root.querySelector('.aq-tile-total-requests .aq-tile-value');
  if (!total || total.textContent.trim() === '' || total.textContent.trim() === '\u2014') return false;
  for (const [css, n] of [['.aq-timeseries', expect.timeseries], ['.aq-models', expect.models]]) {
    const chart = root.querySelector(css);
    if (!chart || !chart.querySelector('svg g.axis .tick')) return false;
    if (chart.querySelectorAll('g.bargroup').length < n) return false;
  }
  return true;
}
"""


def _drawn_expectation(usage: Usage) -> dict[str, int]:
    return {"timeseries": len(usage.timeseries), "models": len(usage.models)}


def _ready_js(usage: Usage) -> str:
    """Marks the offline page once the widget manager has drawn the dashboard, which
    hides the static copy; if drawing fails the static copy stays."""
    return (
        "(function () {\n"
        f"  var drawn = {DRAWN_JS.strip()};\n"
        f"  var expect = {json.dumps(_drawn_expectation(usage))};\n"
        "  var tries = 0;\n"
        "  var timer = setInterval(function () {\n"
        "    tries += 1;\n"
        "    if (drawn(expect)) { clearInterval(timer); document.body.classList.add('aq-widgets-ready'); }\n"
        "    else if (tries > 1200) { clearInterval(timer); }\n"
        "  }, 50);\n"
        "})();"
    )


# --------------------------------------------------------------------------------------
# PDF and PNG from the real page
# --------------------------------------------------------------------------------------

#: Headless Chromium as root, without a screen, on a closed network (see STACK-NOTES).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def page_query(args) -> str:
    """The page's URL query for `args`' org, span, token and top (`usage_lib.urlstate`'s
    keys; no org when none was asked for, so that everyone gets their default org)."""
    params = {"org": args.org, "span": args.span, "token": args.token, "top": args.top}
    return urlencode({key: value for key, value in params.items() if value is not None})


def page_env(args, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a capture's Voila server and kernels: `usage-dashboard serve`'s
    (`serve.dashboard_environment`: database, router config, zone, viewer) with the
    viewer fixed to `args.viewer` and the as-of time pinned (AQUEDUCT_NOW)."""
    from usage_lib.serve import dashboard_environment

    base = dict(os.environ if base is None else base)
    # Whatever identity source the operator's shell configures, a capture is one
    # fixed viewer: the one the command names.
    for key in ("AQUEDUCT_IDENTITY", "AQUEDUCT_IDENTITY_HEADER", "AQUEDUCT_DEMO", "AQUEDUCT_NOW", "QUERY_STRING"):
        base.pop(key, None)
    serve_args = SimpleNamespace(db=args.db, router_config=args.router_config, tz=args.tz or "UTC", viewer=args.viewer)
    env = dashboard_environment(serve_args, base)
    env["AQUEDUCT_IDENTITY"] = "fixed"
    env["AQUEDUCT_VIEWER"] = args.viewer
    if args.now is not None:
        now = args.now if args.now.tzinfo is not None else args.now.replace(tzinfo=_zone(args.tz))
        env["AQUEDUCT_NOW"] = now.isoformat()
    return env


def _zone(name: str | None):
    from usage_lib.timebuckets import zone

    return zone(name or "UTC")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class PageServer:
    """A Voila server of the dashboard notebook, started by `start_page_server`."""

    url: str
    port: int
    process: subprocess.Popen
    log: Path

    def wait_ready(self, timeout: float = 60.0) -> "PageServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
                raise UsageError("the Voila server stopped: " + " | ".join(tail))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.2)
        raise UsageError(f"the Voila server did not listen on port {self.port} within {timeout:.0f} s (log: {self.log})")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.log.parent, ignore_errors=True)


def start_page_server(env: Mapping[str, str]) -> PageServer:
    """Start the dashboard notebook under Voila as `usage-dashboard serve` runs it (the
    repository's deploy/voila.py) on a free 127.0.0.1 port, with `env` (`page_env`).
    Returns at once: call `wait_ready()`, and `stop()` at the end."""
    from usage_lib.serve import NOTEBOOK, voila_command

    if not NOTEBOOK.is_file():
        raise UsageError(f"the dashboard notebook {NOTEBOOK} is missing (PDF and PNG need a checkout of the repository)")
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="aqueduct-voila-")) / "voila.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            voila_command("127.0.0.1", port),
            cwd=NOTEBOOK.parent,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return PageServer(url=f"http://127.0.0.1:{port}/", port=port, process=process, log=log_path)


@contextmanager
def page_server(env: Mapping[str, str], *, timeout: float = 60.0) -> Iterator[PageServer]:
    """A ready Voila server of the dashboard for one capture; stopped on exit."""
    server = start_page_server(env)
    try:
        yield server.wait_ready(timeout)
    finally:
        server.stop()


def find_chromium() -> str:
    for candidate in (os.environ.get("AQUEDUCT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise UsageError("PDF and PNG snapshots need Chromium: install it (Debian: apt-get install -y chromium) "
                     "or set AQUEDUCT_CHROMIUM to its path")


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (the system's, never a downloaded one) driven by Playwright."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


# What the drawn dashboard shows: the seven tiles' texts and the table's rows (cell texts).
PAGE_FIGURES_JS = """
() => {
  const root = document.querySelector('.aq-dashboard');
  const text = el => (el ? el.textContent.replace(/\\s+/g, ' ').trim() : null);
  const tiles = {};
  for (const key of %s) {
    tiles[key] = text(root.querySelector('.aq-tile-' + key.replace(/_/g, '-') + ' .aq-tile-value'));
  }
  const rows = Array.from(root.querySelectorAll('.aq-table .aq-row')).map(
    row => Array.from(row.querySelectorAll('.aq-td')).map(cell => text(cell.querySelector('.aq-name-text') || cell)));
  return {tiles: tiles, rows: rows};
}
""" % json.dumps([key for key, _, _ in TILES])


def expected_figures(usage: Usage) -> dict[str, Any]:
    """What `PAGE_FIGURES_JS` must find for `usage`: tile texts, and per table row its
    rank, name and the four counts as the page writes them."""
    report = usage.to_json()
    kind = report["top"]["kind"]
    rows = []
    for row in report["top"]["rows"]:
        name = row["service_account"] if kind == "token" and row.get("service_account") else row["name"]
        rows.append([str(row["rank"]), formatting.name(name)]
                    + [formatting.count(row[key]) for key in ("requests", "input_tokens", "output_tokens", "total_tokens")])
    return {"tiles": {key: fmt(report["metrics"][key]) for key, _, fmt in TILES}, "rows": rows}


def check_page_figures(shown: Mapping[str, Any], usage: Usage) -> None:
    """Raise `UsageError` unless the page shows `usage`'s tiles and table rows."""
    expected = expected_figures(usage)
    if dict(shown["tiles"]) != expected["tiles"]:
        raise UsageError(f"the dashboard page shows tiles {shown['tiles']} where the report has {expected['tiles']}")
    rows = sorted((row[:6] for row in shown["rows"]), key=lambda row: int(row[0]) if row and row[0].isdigit() else 0)
    if rows != expected["rows"]:
        raise UsageError(f"the dashboard page's table differs from the report: {rows[:3]} vs {expected['rows'][:3]}")


def open_dashboard(browser, url: str, usage: Usage, *, viewport=(1280, 900), timeout_ms: int = 60_000, headers=None):
    """A page on the live dashboard at `url`, once it shows `usage` completely drawn.

    Raises `UsageError` when the page does not finish drawing, or shows other figures
    than `usage` (e.g. the scope did not reach it)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                  extra_http_headers=dict(headers or {}))
    try:
        page = context.new_page()
        page.goto(url, wait_until="load", timeout=timeout_ms)
        try:
            page.wait_for_function(DRAWN_JS, arg=_drawn_expectation(usage), timeout=timeout_ms, polling=100)
        except PlaywrightTimeout:
            error = page.evaluate("() => (document.querySelector('.aq-error') || {}).textContent || ''").strip()
            raise UsageError(f"the dashboard page did not finish drawing{': ' + error if error else ''}") from None
        page.add_style_tag(content=WHOLE_TEXT_CSS)
        check_page_figures(page.evaluate(PAGE_FIGURES_JS), usage)
        page.evaluate("() => document.fonts ? document.fonts.ready.then(() => true) : true")
        page.wait_for_timeout(200)  # the last layout (figure heights) settles
        return context, page
    except BaseException:
        context.close()
        raise


# Voila's lab template is a JupyterLab shell: panels sized by script to the window, the
# cells scrolling inside #rendered_cells, so a "full page" screenshot stops at the
# window's height. The window is made as tall as the dashboard instead.
CONTENT_HEIGHT_JS = """
() => {
  const root = document.querySelector('.aq-dashboard');
  const scroller = document.getElementById('rendered_cells');
  const top = scroller ? scroller.scrollTop : window.scrollY;
  // The children's extent, not the root's: the root may stretch to the window.
  let bottom = 0;
  for (const child of root.children) bottom = Math.max(bottom, child.getBoundingClientRect().bottom);
  const padding = parseFloat(getComputedStyle(root).paddingBottom) || 0;
  return Math.ceil(bottom + padding + top + 16);
}
"""
# The template's stylesheet has `@page { margin: 0.5in }`, which Chromium prefers to the
# margins asked for; the PDF page is the window, without margins.
PRINT_CSS = "@page { margin: 0 !important; }"


def fit_to_content(page, width: int = 1280) -> int:
    """Make the window as tall as the dashboard (the shell follows the window); returns
    that height in CSS pixels."""
    height = page.viewport_size["height"] if page.viewport_size else -1
    for _ in range(4):
        wanted = max(400, int(page.evaluate(CONTENT_HEIGHT_JS)))
        if wanted == height:
            break
        height = wanted
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(200)
    return height


def take(page, out: Path) -> None:
    """Save `page` as `out`, the whole dashboard as it shows on screen: a PNG, or a
    one-page PDF of the same size (vector text and charts)."""
    suffix = out.suffix.lower()
    partial = out.with_name(f".{out.name}.part{suffix}")
    width = page.viewport_size["width"] if page.viewport_size else 1280
    height = fit_to_content(page, width)
    if suffix == ".pdf":
        page.add_style_tag(content=PRINT_CSS)
        page.emulate_media(media="screen")
        page.pdf(path=str(partial), width=f"{width}px", height=f"{height}px", print_background=True,
                 margin={"top": "0px", "bottom": "0px", "left": "0px", "right": "0px"})
    elif suffix == ".png":
        page.screenshot(path=str(partial), full_page=True)
    else:
        raise UsageError(f"cannot take a page as {suffix}")
    partial.replace(out)


def capture_page(args, outs: Sequence[Path], *, browser=None, server: PageServer | None = None) -> Usage:
    """Save the real dashboard page for `args` as each of `outs` (.pdf or .png).

    Starts a Voila server (fixed viewer, as-of time pinned) and a headless Chromium
    unless given (tests share them). Returns the figures the page was checked against.
    """
    args = pinned(args)
    usage = _compute(args)
    with ExitStack() as stack:
        if server is None:
            server = stack.enter_context(page_server(page_env(args)))
        if browser is None:
            browser = stack.enter_context(chromium())
        context, page = open_dashboard(browser, f"{server.url}?{page_query(args)}", usage)
        try:
            for out in outs:
                take(page, Path(out))
        finally:
            context.close()
    return usage


# --------------------------------------------------------------------------------------
# The Export control of the live dashboard
# --------------------------------------------------------------------------------------


def export_buttons(dashboard):
    """The live dashboard's Export control: a button that builds the files of the view on
    screen and offers them as download links: the offline HTML snapshot, the top table
    as CSV, and all four CSV files as a zip.

    `dashboard` needs `.usage` (the figures on screen, None after an error) and
    `.widget` (its root widget). The files are made from those figures: nothing is
    recomputed, so they never hold more than the viewer sees. Call `.reset()` on the
    returned box whenever the view changes, so that no link offers an older view.
    """
    import base64

    import ipywidgets as w

    button = w.Button(description="Export", icon="download", tooltip="Download this view: HTML snapshot or CSV",
                      layout=w.Layout(width="auto"))
    button.add_class("aq-export-button")
    links = w.HTML(value="")
    links.add_class("aq-export-links")
    box = w.HBox([button, links], layout=w.Layout(align_items="center"))
    box.add_class(EXPORT_CLASS)

    def link(name: str, mime: str, data: bytes, label: str) -> str:
        encoded = base64.b64encode(data).decode("ascii")
        return (f'<a class="aq-export-link" download="{html.escape(name)}" title="{html.escape(name)}" '
                f'href="data:{mime};base64,{encoded}">{html.escape(label)}</a>')

    def prepare(_button=None) -> None:
        usage = getattr(dashboard, "usage", None)
        if usage is None:
            links.value = '<span class="aq-export-error">Nothing to export.</span>'
            return
        button.disabled = True
        # Set before the state is taken, so the snapshot holds no earlier links.
        links.value = '<span class="aq-export-busy">Preparing\u2026</span>'
        try:
            stem = file_stem(usage)
            page = snapshot_html(usage, dashboard.widget)
            links.value = " \u00b7 ".join([
                link(f"{stem}.html", "text/html;charset=utf-8", page.encode("utf-8"), "HTML"),
                link(f"{stem}.csv", "text/csv;charset=utf-8", snapshot_csv(usage), "CSV"),
                link(f"{stem}.zip", "application/zip", snapshot_zip(usage), "CSV (all, zip)"),
            ])
        except Exception as exc:  # noqa: BLE001 - shown, never raised: the page keeps working
            from usage_lib.report import describe_error

            links.value = f'<span class="aq-export-error">Export failed: {html.escape(describe_error(exc))}</span>'
        finally:
            button.disabled = False

    def reset() -> None:
        links.value = ""

    button.on_click(prepare)
    box.prepare = prepare
    box.reset = reset
    box.button = button
    box.links = links
    return box
