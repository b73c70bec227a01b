"""A plain-text rendering of a report, for terminals (`usage-dashboard report`).

The tiles (the seven and the cost, each with its change against the previous period
when there is one), requests, tokens and cost over time and by model, and the top table
with each row's cost and change; rows that had requests in the previous period and
have none now follow it, marked "stopped"; then, when the report has them, the health
figures (`render.health_figures`). Names are written with their control characters and
bidi marks escaped (`formatting.visible`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

from usage_lib.render import formatting
from usage_lib.render.files import Report
from usage_lib.render.health_figures import (
    BY_MODEL_HEADERS, BY_MODEL_TITLE, HEALTH_TITLE, LATENCY_HEADERS, LATENCY_TITLE, NEAR_LIMIT_TITLE,
    NONE_NEAR_LIMIT, OVERHEAD_TITLE, facts, health_notes, latency_rows, model_rows, near_limit_rows,
)
from usage_lib.render.labels import (
    COST_TILE, NEW_MARK, STOPPED_MARK, STOPPED_TITLE, TILES, TOP_TITLES, previous_period, shown_name, tile_change,
)


def _money(value: Any, currency: str | None) -> str:
    return formatting.money(None if value is None else Decimal(value), currency)


def _row_change(row: Mapping[str, Any]) -> str:
    if "previous_requests" not in row:
        return ""
    if row.get("new"):
        return NEW_MARK
    return formatting.change(row.get("change"))


def text(report: Report) -> str:
    data, usage = report.data, report.usage
    scope = data["scope"]
    org = "All" if scope["org"] == "all" else scope["org"]["name"]
    token = f", token {scope['token']['name']} (#{scope['token']['id']})" if scope["token"] else ""
    window = usage.window
    span = window.spec
    period = previous_period(span)
    when = (f"{formatting.time_range(window.start, window.until, usage.tz)}" if window.custom
            else f"{span.label} ({span.key}) as of {formatting.as_of(window.now, usage.tz)}")
    cost = data["cost"]
    currency = cost["currency"]
    lines = [f"Usage for {scope['viewer']} ({scope['role']}): {org}{token}, {when}", ""]
    for key, label, fmt in TILES:
        change = tile_change(data, key, period)
        lines.append(f"  {label:<28} {fmt(data['metrics'][key]):>16}" + (f"  ({change})" if change else ""))
    cost_line = f"  {COST_TILE[1]:<28} {_money(cost['total'], currency):>16}"
    change = tile_change(data, "cost", period) if currency is not None else ""
    cost_line += f"  ({change})" if change else ""
    note = formatting.unpriced_note(usage.cost)
    lines.append(cost_line + (f"{',' if change else ' '} {note}" if note else ""))
    if data.get("previous") is not None:
        previous = data["previous"]
        lines.append(f"  {period.capitalize()}: {previous['metrics']['total_requests']:,} requests, "
                     f"{previous['metrics']['total_tokens']:,} tokens, "
                     f"{_money(previous['cost']['total'], previous['cost']['currency'])}")

    lines += ["", f"Requests over time ({span.per_bucket}, {usage.tz}):"]
    lines.append(f"  {'':<18} {'requests':>10} {'input tokens':>14} {'output tokens':>14} {'cost':>16}")
    series = usage.timeseries
    lines += [
        f"  {formatting.bucket(bucket, span):<18} {formatting.count(requests):>10} {formatting.count(tokens_in):>14} "
        f"{formatting.count(tokens_out):>14} {formatting.money(money, currency):>16}"
        for bucket, requests, tokens_in, tokens_out, money in zip(
            series["bucket"], series["requests"], series["input_tokens"], series["output_tokens"], series["cost"])
    ]
    lines += ["", "Requests and cost by model:"]
    lines.append(f"  {'':<40} {'requests':>10} {'input tokens':>14} {'output tokens':>14} {'cost':>16}")
    for row in data["models"]:
        unpriced = row["unpriced_requests"]
        mark = f"  ({unpriced:,} unpriced)" if unpriced else ""
        lines.append(
            f"  {formatting.name(row['model']):<40} {formatting.count(row['requests']):>10} "
            f"{formatting.count(row['input_tokens']):>14} {formatting.count(row['output_tokens']):>14} "
            f"{_money(row['cost'], currency):>16}{mark}"
        )
    kind = data["top"]["kind"]
    lines += ["", f"{TOP_TITLES[kind]}:"]
    if not data["top"]["rows"]:
        lines.append("  No data available.")
    for row in data["top"]["rows"]:
        lines.append(_top_line(row, kind, currency, _row_change(row)))
    stopped = data["top"].get("stopped") or []
    if stopped:
        lines += ["", f"{STOPPED_TITLE.format(period=period)}:"]
        for row in stopped:
            lines.append(_top_line(row, kind, currency, f"{STOPPED_MARK}, {row['previous_requests']:,} req before"))
    if report.health is not None:
        lines += ["", *_health_lines(report)]
    for notice in data["notices"]:
        lines += ["", f"Note: {notice}"]
    # Names come from the data (and a notice may quote a URL): what a terminal would act
    # on is written visibly, so every line is one of ours.
    return "\n".join(formatting.visible(line) for line in lines)


def _top_line(row: Mapping[str, Any], kind: str, currency: str | None, change: str) -> str:
    extra = f"  owner {formatting.name(row['owner_email'])}" if kind == "token" else ""
    change = f"  {change:>8}" if change else ""
    return (
        f"  {row['rank']:>3}. {formatting.name(shown_name(row, kind)):<32} {row['requests']:>10,} req  "
        f"{row['input_tokens']:>12,} in  {row['output_tokens']:>12,} out  {row['total_tokens']:>12,} total  "
        f"{_money(row['cost'], currency):>16}{change}{extra}"
    )


def _latency_lines(title: str, rows: list) -> list[str]:
    lines = [f"  {title:<28}" + "".join(f" {header:>12}" for header in LATENCY_HEADERS)]
    return lines + [f"  {kind:<28}" + "".join(f" {text:>12}" for text in texts) for kind, texts in latency_rows(rows)]


def _health_lines(report: Report) -> list[str]:
    """The health section: percentiles, the one-line figures, tokens near a limit, notes."""
    health = report.data["health"]
    lines = [f"{HEALTH_TITLE}:", *_latency_lines(LATENCY_TITLE, health["latency"])]
    if health["processing"] is not None:
        lines += _latency_lines(OVERHEAD_TITLE, health["processing"])
    lines += [f"  {label:<28} {text}" for label, text in facts(health, report.health.oldest_in_flight_age_s)]
    lines += [f"  {BY_MODEL_TITLE}:", f"    {BY_MODEL_HEADERS[0]:<38} {BY_MODEL_HEADERS[1]:<12}"
              + "".join(f" {header:>12}" for header in BY_MODEL_HEADERS[2:])]
    lines += [f"    {model:<38} {kind:<12}" + "".join(f" {text:>12}" for text in texts)
              for model, kind, *texts in model_rows(health["latency_by_model"])]
    if health["near_limit"] is not None:
        near = near_limit_rows(health["near_limit"])
        lines.append(f"  {NEAR_LIMIT_TITLE}:" + ("" if near else f" {NONE_NEAR_LIMIT}"))
        lines += [f"    {token:<10} {peak:>8}  {busiest}" for token, peak, busiest in near]
    return lines + [f"  Note: {note}" for note in health_notes(report.data)]


def render_text(report: Report, stem: str) -> dict[str, bytes]:
    return {f"{stem}.txt": (text(report) + "\n").encode("utf-8")}
