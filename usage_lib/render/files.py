"""File renderers over one report: JSON, CSV (four files, and the health figures'
files when the report has them), zip.

Every renderer takes a `Report` (the figures of one export, with their JSON contract
computed once) and a file stem, and returns the files to write, by name; it never
touches the disk. `usage_lib.render.registry` maps file suffixes to them.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any, Callable, Mapping, Sequence

from usage_lib.core import latency
from usage_lib.core.headroom import COLUMNS as HEADROOM_COLUMNS
from usage_lib.core.health import FAILURE_KINDS, PATH_KINDS, Health
from usage_lib.core.usage import Usage
from usage_lib.render.health_figures import health_notes

#: A renderer: (report, file stem) -> {file name: content}.
Renderer = Callable[["Report", str], dict[str, bytes]]


@dataclass(frozen=True)
class Report:
    """The data of one export: `usage`, its `health` and their JSON contract (`data`),
    computed once.

    `widget` is the dashboard's root widget when the export should embed it (HTML).
    `health` is None when the export did not compute it: then `data["health"]` is null
    and the files leave the health figures out.
    """

    usage: Usage
    data: Mapping[str, Any]
    widget: Any = field(default=None, compare=False)
    health: Health | None = field(default=None, compare=False)

    @classmethod
    def of(cls, usage: Usage, widget: Any = None, health: Health | None = None) -> "Report":
        data = {**usage.to_json(), "health": None if health is None else health.to_json()}
        return cls(usage=usage, data=data, widget=widget, health=health)


def render_json(report: Report, stem: str) -> dict[str, bytes]:
    """The JSON report contract, as `usage-dashboard report --format json` prints it."""
    return {f"{stem}.json": json_bytes(report.data)}


def json_bytes(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


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
    columns += ["owner_email", "service_account"] if kind == "token" else []
    # Issue 14 (after the version-1 columns): cost, and the comparison with the previous period.
    return columns + ["cost", "previous_requests", "change", "status"]


def _rounded(value: Any) -> Any:
    """A fraction (a change, a rate, a share of a limit) or a percentile in a CSV cell:
    rounded to 6 decimals (0.3, not 0.30000000000000004)."""
    return None if value is None else round(value, 6)


def _status(row: Mapping[str, Any], stopped: bool) -> str:
    if stopped:
        return "stopped"
    return "new" if row.get("new") else ""


def top_csv(data: Mapping[str, Any]) -> bytes:
    """The top table: one row per org, token or user_id, the JSON report's values
    (`kind` says which; `id` is the org id, token id or user_id; empty means none),
    then the rows that stopped (requests in the previous period, none now; ranked
    among themselves). `cost` is exact (a decimal string); `change` the relative
    change of requests (0.25: 25% more; empty when there were none before);
    (rounded to 6 decimals); `status` is "new", "stopped" or empty. Without a previous period the last three
    are empty."""
    kind = data["top"]["kind"]
    columns = top_columns(kind)
    rows = [
        [kind if column == "kind" else _status(row, stopped) if column == "status"
         else _rounded(row.get(column)) if column == "change" else row.get(column)
         for column in columns]
        for stopped, group in ((False, data["top"]["rows"]), (True, data["top"].get("stopped") or []))
        for row in group
    ]
    return _csv(columns, rows)


def timeseries_csv(data: Mapping[str, Any]) -> bytes:
    columns = ["bucket", "requests", "input_tokens", "output_tokens", "cost"]
    return _csv(columns, [[p[column] for column in columns] for p in data["timeseries"]])


def models_csv(data: Mapping[str, Any]) -> bytes:
    columns = ["model", "requests", "input_tokens", "output_tokens", "cost", "unpriced_requests"]
    return _csv(columns, [[m[column] for column in columns] for m in data["models"]])


#: A cost's figures in summary.csv (the JSON report's "cost" object).
_COST_KEYS = ("currency", "unpriced_requests", "unpriced_input_tokens", "unpriced_output_tokens")


def summary_csv(data: Mapping[str, Any]) -> bytes:
    """Scope, the seven figures and the cost, one `key,value` row each; with a previous
    period also its window and figures (`previous_<key>`) and each tile's relative
    change (`change_<figure>`, rounded to 6 decimals; empty when the figure was 0 then).
    Money is exact: the JSON report's decimal strings."""
    scope, org, token = data["scope"], data["scope"]["org"], data["scope"]["token"]
    cost, previous = data["cost"], data.get("previous")
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
        ["window_end", scope["window_end"]],
        ["tz", scope["tz"]],
        ["top_kind", data["top"]["kind"]],
        *([key, value] for key, value in data["metrics"].items()),
        ["cost", cost["total"]],
        *([key, cost[key]] for key in _COST_KEYS),
    ]
    if previous is not None:
        rows += [
            ["previous_window_start", previous["window_start"]],
            ["previous_window_end", previous["window_end"]],
            *([f"previous_{key}", value] for key, value in previous["metrics"].items()),
            ["previous_cost", previous["cost"]["total"]],
            *([f"previous_{key}", previous["cost"][key]] for key in _COST_KEYS if key != "currency"),
            *([f"change_{key}", _rounded(value)] for key, value in (data.get("changes") or {}).items()),
        ]
    health = data.get("health")
    if health is not None:
        rows += [
            ["in_flight", health["in_flight"]],
            ["oldest_in_flight", health["oldest_in_flight"]],
            ["tokens_unknown", health["tokens_unknown"]],
        ]
    rows += [["notice", notice] for notice in data["notices"] + (health_notes(data) if health is not None else [])]
    return _csv(["key", "value"], rows)


def _table(columns: Sequence[str], records: Sequence[Mapping[str, Any]], rounded: Sequence[str] = ()) -> bytes:
    """One row per record, its values under `columns`; those in `rounded` to 6 decimals."""
    return _csv(columns, [[_rounded(record[c]) if c in rounded else record[c] for c in columns] for record in records])


#: The percentiles in the health figures: p50, p90, p95, p99.
PERCENTILES = tuple(f"p{round(q * 100)}" for q in latency.QUANTILES)


def latency_csv(health: Mapping[str, Any]) -> bytes:
    """Percentiles of the time in ms (6 decimals; empty without requests): `measure`
    "response" per path kind (`model` empty), then per model and kind; "overhead" (the
    time in the gateway itself) per path kind where the gateway logs it."""
    groups = (("response", health["latency"]), ("response", health["latency_by_model"]),
              ("overhead", health["processing"] or []))
    records = [{"measure": measure, "model": None, **row} for measure, rows in groups for row in rows]
    return _table(["measure", "kind", "model", "requests", *PERCENTILES], records, PERCENTILES)


def latency_timeseries_csv(health: Mapping[str, Any]) -> bytes:
    """Per bucket, p50 and p95 (ms) of each path kind."""
    percentiles = [f"{kind}_{p}" for kind in PATH_KINDS for p in ("p50", "p95")]
    return _table(["bucket", *percentiles], health["latency_over_time"], percentiles)


_FAILURES = ("requests", *FAILURE_KINDS, "failed")


def failures_csv(health: Mapping[str, Any]) -> bytes:
    """Per bucket: requests, each failure kind, failed, and the failure rate (0-1)."""
    return _table(["bucket", *_FAILURES, "failure_rate"], health["failures_over_time"], ["failure_rate"])


def failures_by_model_csv(health: Mapping[str, Any]) -> bytes:
    """Per model: the failures as per bucket, requests in flight and completions
    without reported tokens."""
    columns = ["model", *_FAILURES, "in_flight", "failure_rate", "tokens_unknown"]
    return _table(columns, health["failures_by_model"], ["failure_rate"])


def statuses_csv(health: Mapping[str, Any]) -> bytes:
    """Requests per status code (empty: in flight) and its kind."""
    return _table(["status_code", "kind", "requests"], health["statuses"])


def headroom_csv(health: Mapping[str, Any]) -> bytes:
    """Per token: its busiest minute against its limits (empty: no limit), and the
    largest share of a limit."""
    return _table(HEADROOM_COLUMNS, health["headroom"], ["busiest_requests", "peak_share"])


def csv_tables(data: Mapping[str, Any]) -> dict[str, bytes]:
    """The CSV tables of a report, by part: top, timeseries, models, summary; with
    health figures also latency, latency_timeseries, failures, failures_by_model,
    statuses and, for admins of a gateway with limits, headroom."""
    tables = {"top": top_csv(data), "timeseries": timeseries_csv(data), "models": models_csv(data),
              "summary": summary_csv(data)}
    health = data["health"]
    if health is not None:
        tables |= {"latency": latency_csv(health), "latency_timeseries": latency_timeseries_csv(health),
                   "failures": failures_csv(health), "failures_by_model": failures_by_model_csv(health),
                   "statuses": statuses_csv(health)}
        if health["headroom"] is not None:
            tables["headroom"] = headroom_csv(health)
    return tables


def render_csv(report: Report, stem: str) -> dict[str, bytes]:
    """The CSV files: the top table as `<stem>.csv`, every other table as
    `<stem>.<part>.csv` (`csv_tables`)."""
    return {f"{stem}.csv" if part == "top" else f"{stem}.{part}.csv": table
            for part, table in csv_tables(report.data).items()}


def render_zip(report: Report, stem: str) -> dict[str, bytes]:
    """The CSV files in one zip, as `<part>.csv`: top.csv, timeseries.csv, models.csv,
    summary.csv, then the health figures' files."""
    buffer = io.BytesIO()
    stamp = report.usage.window.now.astimezone(timezone.utc).timetuple()[:6]
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for part, data in csv_tables(report.data).items():
            info = zipfile.ZipInfo(f"{part}.csv", stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return {f"{stem}.zip": buffer.getvalue()}


#: How much of an org's name a file name takes.
STEM_ORG_LENGTH = 60


def file_stem(usage: Usage) -> str:
    """A file name for a download: ``aqueduct-usage_<org>_<span>_<yyyymmdd-hhmm>``."""
    scope = usage.scope
    org = "all" if scope.org is None else scope.org.name
    token = f"_token-{scope.token.id}" if scope.token is not None else ""
    when = usage.window.now.strftime("%Y%m%d-%H%M")
    # Cut: an org's name may be kilobytes, a file name at most 255 bytes.
    safe = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in org[:STEM_ORG_LENGTH]).strip("-") or "org"
    return f"aqueduct-usage_{safe}{token}_{usage.window.span}_{when}"
