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

SPANS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "1w": timedelta(weeks=1),
}
DEFAULT_SPAN = "1d"
BUCKET_UNIT = {"1h": "minute", "1d": "hour", "1w": "day"}


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
    unit = BUCKET_UNIT[span]
    now = now.astimezone(timezone.utc)
    start = now - SPANS[span]
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
