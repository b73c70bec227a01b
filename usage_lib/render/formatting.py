"""How figures are written on the page (and in snapshots): one place, no widgets.

- counts: thousands separators, ``12,345``;
- average response times: one decimal and "ms", ``4,144.4 ms``;
- names: an empty or missing name is ``N/A``;
- times: bucket starts and the as-of line, on the dashboard zone's wall clock.
"""

from __future__ import annotations

import math
from datetime import datetime
from numbers import Real

import pandas as pd

from usage_lib.core.spans import Span, spec

NA = "N/A"
PLACEHOLDER = "\u2014"  # an em dash, for a tile without a value


def is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def count(value: object) -> str:
    """A count with thousands separators; missing values show as an em dash."""
    if is_missing(value):
        return PLACEHOLDER
    return f"{int(value):,}"


def milliseconds(value: object) -> str:
    """An average response time: one decimal and "ms" (``0.0 ms`` when nothing to average)."""
    if is_missing(value) or (isinstance(value, Real) and not math.isfinite(float(value))):
        return PLACEHOLDER
    return f"{float(value):,.1f} ms"


def name(value: object) -> str:
    """A name, an org or a user_id; empty or missing shows as N/A."""
    if is_missing(value):
        return NA
    text = str(value)
    return text if text != "" else NA


def bucket(moment: datetime, span: str | Span) -> str:
    """A chart bucket's start on its own wall clock (it is aware, in the dashboard zone);
    `span` a key or a window's `spec` (custom ranges)."""
    return moment.strftime(spec(span).bucket_format)


def as_of(moment: datetime, tz: str) -> str:
    """``2026-11-24 12:00:00 (UTC)``: when the figures were taken, on the dashboard zone's clock."""
    return f"{moment.strftime('%Y-%m-%d %H:%M:%S')} ({tz})"


def time_range(start: datetime, end: datetime, tz: str) -> str:
    """A custom range: ``2026-11-01 00:00:00 to 2026-11-15 00:00:00 (UTC)``, end excluded."""
    return f"{start.strftime('%Y-%m-%d %H:%M:%S')} to {end.strftime('%Y-%m-%d %H:%M:%S')} ({tz})"

