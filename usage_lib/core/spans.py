"""The time window and the chart's buckets (SPEC §3), right in every time zone.

Buckets are minutes, hours or days truncated in the dashboard's zone. They are computed
here as real instants (so a 25-hour autumn day in Europe/Vienna has 25 hourly buckets
and a 23-hour spring day 23), and the database only compares timestamps with them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from usage_lib.errors import UsageError, quoted


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
        Span("1m", timedelta(days=30), "day", "last 30 days", "per day", "%a %Y-%m-%d", "%d %b", "bucket", 7),
    )
}
DEFAULT_SPAN = "1d"
#: `Window.span` (and the JSON report's `scope.span`) of a custom start/end range.
CUSTOM = "custom"
#: A custom range is cut into minutes up to this length, into hours up to the next, else days.
MINUTE_BUCKETS_UP_TO = timedelta(hours=2)
HOUR_BUCKETS_UP_TO = timedelta(days=2)
SHORTEST_RANGE = timedelta(minutes=1)
#: The longest custom range: a year of daily buckets (a bucket is a few columns of the
#: usage statement, and databases cap those: SQLite at 2000, PostgreSQL at 1664).
LONGEST_RANGE = timedelta(days=366)


def bucket_unit_for(length: timedelta) -> str:
    """The bucket of a custom range: minutes up to 2 hours, hours up to 2 days, else days."""
    if length <= MINUTE_BUCKETS_UP_TO:
        return "minute"
    if length <= HOUR_BUCKETS_UP_TO:
        return "hour"
    return "day"


def custom_span(length: timedelta) -> Span:
    """How a custom range of `length` is described: the names and formats of the preset
    with the same bucket, a label of its own and ticks spaced for its length."""
    unit = bucket_unit_for(length)
    preset = next(span for span in SPANS.values() if span.bucket_unit == unit)
    if unit == "minute":  # every divides 60: ticks on round minutes
        every = next(e for limit, e in ((10, 1), (30, 5), (60, 10), (120, 20)) if length <= timedelta(minutes=limit))
    elif unit == "hour":  # every divides 24
        every = next(e for limit, e in ((8, 1), (24, 3), (48, 6)) if length <= timedelta(hours=limit))
    else:  # about eight labelled days at most
        every = max(2, math.ceil(length / timedelta(days=8)))
    return dataclasses.replace(preset, key=CUSTOM, length=length, label="custom range", tick_every=every)


def spec(span: "str | Span") -> Span:
    """A span key's `Span` (a `Span`, e.g. a custom range's `Window.spec`, as it is)."""
    return span if isinstance(span, Span) else SPANS[span]


def _real(moment: datetime) -> datetime:
    """`moment` in UTC: Python subtracts two times of one zone on the wall clock, which
    is an hour off across a DST change."""
    return moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class Window:
    span: str
    now: datetime
    start: datetime
    #: Bucket starts, aware in the dashboard zone; bucket i is [starts[i], starts[i+1]).
    starts: tuple[datetime, ...]
    #: Where the last bucket (the one holding `now`, or a custom range's last instant) ends.
    end: datetime
    #: A custom range's end (excluded: `start <= timestamp < until`); None for a preset
    #: (no upper bound: rows stamped after `now` count too).
    until: datetime | None = None

    @property
    def edges(self) -> tuple[datetime, ...]:
        return (*self.starts[1:], self.end)

    @property
    def custom(self) -> bool:
        return self.until is not None

    @property
    def spec(self) -> Span:
        """The `Span` naming and formatting this window (a custom range's: `custom_span`)."""
        return custom_span(_real(self.until) - _real(self.start)) if self.until is not None else SPANS[self.span]

    @property
    def cut(self) -> datetime:
        """Where the figures stop within the last bucket: the range's end, else `now`."""
        return self.until if self.until is not None else self.now


def previous_window(win: Window) -> Window:
    """The same length of real time just before `win`, `[start - length, start)`, as one
    bucket: what each figure's change compares with. A preset's length is its span's
    (a day is 24 hours, also across a DST change)."""
    length = _real(win.until) - _real(win.start) if win.until is not None else SPANS[win.span].length
    start = (win.start.astimezone(timezone.utc) - length).astimezone(win.start.tzinfo)
    return Window(span=win.span, now=win.now, start=start, starts=(start,), end=win.start, until=win.start)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory, a name too long
        raise UsageError(f"unknown time zone {quoted(name)} (use an IANA name such as Europe/Vienna)") from None


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


def _buckets(first: datetime, last: datetime, unit: str, tz: ZoneInfo) -> tuple[tuple[datetime, ...], datetime]:
    """Bucket starts from the bucket holding `first` to the one holding `last`, and the
    last one's end."""
    starts = [floor(first, unit, tz)]
    final = floor(last, unit, tz)
    # Compared in UTC: two times in one zone compare by wall clock, and when the clocks go
    # back 02:30 CEST and 02:30 CET are "equal" (a 1h window there had one bucket).
    while starts[-1].astimezone(timezone.utc) < final.astimezone(timezone.utc):
        starts.append(_next_start(starts[-1], unit, tz))
    return tuple(starts), _next_start(final, unit, tz)


def window(span: str, now: datetime, tz: ZoneInfo) -> Window:
    """The window `timestamp >= now - span` and its buckets up to the one holding `now`."""
    if span not in SPANS:
        raise UsageError(f"unknown span {quoted(span)}: use one of {', '.join(SPANS)}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    unit = SPANS[span].bucket_unit
    now = now.astimezone(timezone.utc)
    start = now - SPANS[span].length
    starts, end = _buckets(start, now, unit, tz)
    return Window(span=span, now=now.astimezone(tz), start=start.astimezone(tz), starts=starts, end=end)


def parse_time(value: "datetime | str", tz: ZoneInfo, what: str) -> datetime:
    """An ISO 8601 time (or a datetime) as an aware instant; without an offset it is read
    on `tz`'s wall clock."""
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    if not isinstance(moment, datetime):
        raise UsageError(f"{what}: not an ISO 8601 time: {quoted(value)} (e.g. 2026-11-24T12:00 or 2026-11-24T12:00+01:00)")
    moment = moment.replace(tzinfo=tz) if moment.tzinfo is None else moment
    try:
        moment.astimezone(timezone.utc)
    except OverflowError:  # the first or last day of the calendar, shifted out of it
        raise UsageError(f"{what}: {quoted(value)} is out of range") from None
    return moment


def range_window(start: "datetime | str | None", end: "datetime | str | None", now: datetime, tz: ZoneInfo) -> Window:
    """The custom range `start <= timestamp < end` and its buckets (`bucket_unit_for`),
    from the one holding `start` to the one holding the range's last instant.

    Raises `UsageError` (one line) for a malformed time, only one of the two, `start`
    not before `end`, a range shorter than a minute, one ending after `now`, or one
    longer than `LONGEST_RANGE`.
    """
    if (start is None) != (end is None):
        raise UsageError("a custom range needs both start and end")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    first = parse_time(start, tz, "start").astimezone(timezone.utc)
    until = parse_time(end, tz, "end").astimezone(timezone.utc)
    now = now.astimezone(timezone.utc)
    shown = lambda moment: moment.astimezone(tz).isoformat()  # noqa: E731
    if first >= until:
        raise UsageError(f"the range's start {shown(first)} is not before its end {shown(until)}")
    if until - first < SHORTEST_RANGE:
        raise UsageError(f"the range {shown(first)} to {shown(until)} is shorter than a minute")
    if until > now:
        raise UsageError(f"the range ends at {shown(until)}, after now ({shown(now)})")
    if until - first > LONGEST_RANGE:
        raise UsageError(f"the range {shown(first)} to {shown(until)} is longer than {LONGEST_RANGE.days} days")
    unit = bucket_unit_for(until - first)
    # The last instant in the range is just before `until`: a range ending on a bucket's
    # start does not show that (empty) bucket.
    starts, last_end = _buckets(first, until - timedelta(microseconds=1), unit, tz)
    return Window(span=CUSTOM, now=now.astimezone(tz), start=first.astimezone(tz), starts=starts, end=last_end,
                  until=until.astimezone(tz))
