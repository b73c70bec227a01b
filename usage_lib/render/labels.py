"""What the page and the files call things: the metric tiles, the top table's titles and
columns, the roles. The live widgets and the static HTML both read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from usage_lib.core.spans import SPANS, Span
from usage_lib.render.formatting import change, count, milliseconds, name

#: The metrics bar: (metric key, tile label, formatter), in display order.
TILES = (
    ("total_requests", "Total Requests", count),
    ("failed_requests", "Failed Requests", count),
    ("avg_response_ms_completion", "Avg Resp Time (Completion)", milliseconds),
    ("avg_response_ms_embedding", "Avg Resp Time (Embedding)", milliseconds),
    ("input_tokens", "Input Tokens", count),
    ("output_tokens", "Output Tokens", count),
    ("total_tokens", "Total Tokens", count),
)

#: The cost tile (issue 14), after the seven: its figure is money (`formatting.money`).
COST_TILE = ("cost", "Cost")
#: A tile's change against the previous period, e.g. "+12% vs previous 24 hours".
VS_PREVIOUS = "{change} vs {period}"
#: A tile whose figure was 0 in the previous period (no change to show).
NONE_BEFORE = "none in the {period}"
#: The top table's change column (vs the previous period) and its marks.
COST_TITLE = "Cost"
CHANGE_TITLE = "Change"
NEW_MARK = "new"
STOPPED_MARK = "stopped"
#: Below the top table: rows with requests in the previous period and none now.
STOPPED_TITLE = "Stopped since the {period}"


def previous_period(span: Span) -> str:
    """The period before a window, in words: "previous 24 hours", "previous hour",
    "previous 7 days"; a custom range's: "previous 90 minutes", "previous 3 days"."""
    if span.key in SPANS:
        return "previous " + span.label.removeprefix("last ")
    seconds = int(span.length.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            amount = seconds // size
            return f"previous {unit}" if amount == 1 else f"previous {amount:,} {unit}s"
    return f"previous {seconds:,} seconds"


def tile_change(data: Mapping[str, Any], key: str, period: str) -> str:
    """A tile's change in words (`data`: the JSON report): "+12% vs previous 24 hours",
    "none in the previous 24 hours" (the figure was 0 then), or "" without a previous
    period."""
    changes = data.get("changes")
    if changes is None:
        return ""
    text = change(changes.get(key))
    return VS_PREVIOUS.format(change=text, period=period) if text else NONE_BEFORE.format(period=period)


ROLE_NAMES = {"admin": "Global admin", "org-admin": "Org admin", "user": "User"}

#: The top table's title, by level (SPEC §3).
TOP_TITLES = {"org": "Requests by Organization", "token": "Requests by API Key", "user_id": "Requests by User ID"}
SERVICE_ACCOUNT_BADGE = "Service Account"
EMPTY_TEXT = "No data available."
#: The hover text of a token row the viewer may not open (SPEC §3 drill-down).
CLOSED_TOKEN_HINT = "Only the token's owner, its team and org admins can open this token"
NO_ORG_HINT = "Tokens whose owner has no profile belong to no organization: there is nothing to open"

#: Under the Failed Requests tile's count: its share of all requests.
FAILED_SHARE = "{share} of total"

#: The charts' axis titles. The time axis names the bucket unit and the zone, e.g. "Day (UTC)".
VALUE_AXIS_LABEL = "Requests"
TIME_AXIS_LABEL = "{unit} ({tz})"
#: Added to the time axis title: the first and last buckets hold only part of their
#: minute, hour or day (the window starts mid-bucket; the last one ends now).
PARTIAL_AXIS_NOTE = "pale bars: partial {unit}s"
#: A partial bucket's tooltip line.
PARTIAL_FROM = "partial {unit}: from {time}"
PARTIAL_UNTIL = "partial {unit}: up to {time}"
#: Buckets of which no record exists (an archive gap, or before its history): the time
#: axis note and their tooltip line.
UNRECORDED_AXIS_NOTE = "grey: no record"
UNRECORDED_NOTE = "no record of this time (see the notice above)"


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    numeric: bool = False
    css: str = ""


RANK = Column("rank", "#", numeric=True, css="aq-rank")
NUMBERS = (
    Column("requests", "Requests", numeric=True),
    Column("input_tokens", "Input Tokens", numeric=True),
    Column("output_tokens", "Output Tokens", numeric=True),
    Column("total_tokens", "Total Tokens", numeric=True),
)

#: The top table's columns at each level, the name column's heading included.
TOP_COLUMNS: dict[str, tuple[Column, ...]] = {
    "org": (RANK, Column("name", "Organization", css="aq-name"), *NUMBERS),
    "token": (
        RANK,
        Column("name", "API Key", css="aq-name"),
        *NUMBERS,
        Column("owner_email", "Token Owner", css="aq-text"),
        Column("service_account", "Service Account", css="aq-text"),
    ),
    "user_id": (RANK, Column("name", "User ID", css="aq-name"), *NUMBERS),
}


def shown_name(row: Mapping[str, Any], kind: str) -> Any:
    """The name a report row (`Usage.to_json()["top"]["rows"]`) shows: a token of a
    service account shows the service account's name, as the gateway's page does."""
    if kind == "token" and row.get("service_account"):
        return row["service_account"]
    return row["name"]


def cell_text(column: Column, value: Any) -> str:
    """How the top table writes `value` in `column`."""
    if column.key == "rank":
        return str(value)
    if column.numeric:
        return count(value)
    return name(value)
