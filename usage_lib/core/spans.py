"""The time window and the chart's buckets (SPEC §3), right in every time zone.

Buckets are minutes, hours or days truncated in the dashboard's zone. They are computed
here as real instants (so a 25-hour autumn day in Europe/Vienna has 25 hourly buckets
and a 23-hour spring day 23), and the database only compares timestamps with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from usage_lib.errors import UsageError


@dataclass(frozen=True)
class Span:
    """Everything known about one time frame, in one place: its length and bucket unit
    (SPEC §3), and how the page, the charts and the files name and write it."""

    key: str
    length: timedelta
    #: The chart's bucket: "minute", "hour" or "day" on the dashboard zone's wall clock.
    bucket_unit: str
    #: In words, e.g. on the page's as-of line and in snapshot titles.
    label: str
    #: The bucket in words, e.g. "per hour".
    per_bucket: str
    #: strftime pattern for a bucket's start in tables and tooltips.
    bucket_format: str
    #: d3 time format of the chart's axis ticks.
    axis_format: str
    #: A tick every `tick_every` of `tick_unit` ("minute", "hour" or "bucket").
    tick_unit: str
    tick_every: int

    @property
    def nominal_bucket(self) -> timedelta:
        """A bucket's usual length (a day may last 23 or 25 hours; see `window`)."""
        return {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}[self.bucket_unit]


SPANS: dict[str, Span] = {
    span.key: span
    for span in (
        Span("1h", timedelta(hours=1), "minute", "last hour", "per minute", "%Y-%m-%d %H:%M", "%H:%M", "minute", 10),
        Span("1d", timedelta(days=1), "hour", "last 24 hours", "per hour", "%Y-%m-%d %H:00", "%H:%M", "hour", 3),
        Span("1w", timedelta(weeks=1), "day", "last 7 days", "per day", "%a %Y-%m-%d", "%d %b", "bucket", 2),
    )
}
DEFAULT_SPAN = "1d"


@dataclass(frozen=True)
class Window:
    span: str
    now: datetime
    start: datetime
    #: Bucket starts, aware in the dashboard zone; bucket i is [starts[i], starts[i+1]).
    starts: tuple[datetime, ...]
    #: Where the last bucket (the one holding `now`) ends.
    end: datetime

    @property
    def edges(self) -> tuple[datetime, ...]:
        return (*self.starts[1:], self.end)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time zone {name!r} (use an IANA name such as Europe/Vienna)") from None


def floor(moment: datetime, unit: str, tz: ZoneInfo) -> datetime:
    """Truncate an instant to the start of its minute, hour or day on `tz`'s wall clock."""
    local = moment.astimezone(tz)
    if unit == "minute":
        wall = local.replace(second=0, microsecond=0)
    elif unit == "hour":
        wall = local.replace(minute=0, second=0, microsecond=0)
    else:
        wall = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
    # Round-trip through UTC so the result is a real instant (fold resolved, gaps skipped).
    return wall.astimezone(timezone.utc).astimezone(tz)


def _next_start(start: datetime, unit: str, tz: ZoneInfo) -> datetime:
    # One and a half units later lies inside the next bucket even when the wall clock
    # jumps; a day can last 23 or 25 hours, so step 26 hours for days.
    step = {"minute": timedelta(seconds=90), "hour": timedelta(minutes=90), "day": timedelta(hours=26)}[unit]
    # Python adds to aware datetimes on the wall clock: add in UTC to move real time.
    return floor(start.astimezone(timezone.utc) + step, unit, tz)


def window(span: str, now: datetime, tz: ZoneInfo) -> Window:
    """The window `timestamp >= now - span` and its buckets up to the one holding `now`."""
    if span not in SPANS:
        raise UsageError(f"unknown span {span!r}: use one of {', '.join(SPANS)}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    unit = SPANS[span].bucket_unit
    now = now.astimezone(timezone.utc)
    start = now - SPANS[span].length
    starts = [floor(start, unit, tz)]
    last = floor(now, unit, tz)
    while starts[-1] < last:
        starts.append(_next_start(starts[-1], unit, tz))
    return Window(
        span=span,
        now=now.astimezone(tz),
        start=start.astimezone(tz),
        starts=tuple(starts),
        end=_next_start(last, unit, tz),
    )
