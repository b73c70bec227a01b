"""Slice arithmetic: epoch seconds (UTC) on the archive's 15-minute and hourly grid."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from usage_lib.errors import UsageError
from usage_lib.history.schema import HOUR, SLICE

DAY = 24 * HOUR


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def micros(moment: datetime) -> int:
    """An aware datetime as whole microseconds since the epoch (exact)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def epoch(moment: datetime) -> float:
    return moment.timestamp()


def instant(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def floor_to(seconds: float, step: int = SLICE) -> int:
    return int(seconds // step) * step


def ceil_to(seconds: float, step: int = SLICE) -> int:
    return -int(-seconds // step) * step


def chunks(start: int, end: int, size: int = DAY) -> list[tuple[int, int]]:
    """[start, end) cut at multiples of `size` (a catch-up's units of work)."""
    out = []
    low = start
    while low < end:
        high = min(end, floor_to(low, size) + size)
        out.append((low, high))
        low = high
    return out


UNITS = {"s": 1, "m": 60, "h": HOUR, "d": DAY}


def parse_duration(text: str, what: str = "duration") -> timedelta:
    """'2h', '90m', '1d', '45s' (or plain seconds) as a timedelta; `UsageError` if not."""
    value = str(text).strip().lower()
    unit = UNITS.get(value[-1:], None)
    number = value[:-1] if unit else value
    try:
        amount = float(number)
    except ValueError:
        amount = -1.0
    if amount < 0 or amount != amount:
        raise UsageError(f"{what}: not a duration: {text!r} (e.g. 2h, 90m, 1d)")
    return timedelta(seconds=amount * (unit or 1))


def duration_text(duration: timedelta) -> str:
    """A timedelta as `parse_duration` reads it back: '2h', '7d', '90s'."""
    seconds = int(duration.total_seconds())
    for unit, size in (("d", DAY), ("h", HOUR), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
