"""A plain-text rendering of a report, for terminals (`usage-dashboard report`)."""

from __future__ import annotations

from usage_lib.render import formatting
from usage_lib.render.files import Report
from usage_lib.render.labels import TILES, TOP_TITLES, shown_name


def text(report: Report) -> str:
    data, usage = report.data, report.usage
    scope = data["scope"]
    org = "All" if scope["org"] == "all" else scope["org"]["name"]
    token = f", token {scope['token']['name']} (#{scope['token']['id']})" if scope["token"] else ""
    window = usage.window
    span = window.spec
    when = (f"{formatting.time_range(window.start, window.until, usage.tz)}" if window.custom
            else f"{span.label} ({span.key}) as of {formatting.as_of(window.now, usage.tz)}")
    lines = [f"Usage for {scope['viewer']} ({scope['role']}): {org}{token}, {when}", ""]
    lines += [f"  {label:<28} {fmt(data['metrics'][key]):>16}" for key, label, fmt in TILES]
    lines += ["", f"Requests over time ({span.per_bucket}, {usage.tz}):"]
    lines += [
        f"  {formatting.bucket(bucket, span):<18} {formatting.count(requests):>10}"
        for bucket, requests in zip(usage.timeseries["bucket"], usage.timeseries["requests"])
    ]
    lines += ["", "Requests by model:"]
    lines += [f"  {formatting.name(row['model']):<40} {formatting.count(row['requests']):>10}" for row in data["models"]]
    kind = data["top"]["kind"]
    lines += ["", f"{TOP_TITLES[kind]}:"]
    if not data["top"]["rows"]:
        lines.append("  No data available.")
    for row in data["top"]["rows"]:
        extra = ""
        if kind == "token":
            extra = f"  owner {formatting.name(row['owner_email'])}"
        lines.append(
            f"  {row['rank']:>3}. {formatting.name(shown_name(row, kind)):<32} {row['requests']:>10,} req  "
            f"{row['input_tokens']:>12,} in  {row['output_tokens']:>12,} out  {row['total_tokens']:>12,} total{extra}"
        )
    for notice in data["notices"]:
        lines += ["", f"Note: {notice}"]
    return "\n".join(lines)


def render_text(report: Report, stem: str) -> dict[str, bytes]:
    return {f"{stem}.txt": (text(report) + "\n").encode("utf-8")}
