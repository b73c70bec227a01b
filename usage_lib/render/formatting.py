"""How figures are written on the page (and in snapshots): one place, no widgets.

- counts: thousands separators, ``12,345``;
- average response times: one decimal and "ms", ``4,144.4 ms``;
- names: an empty or missing name is ``N/A``; in plain text (`visible`), control
  characters and bidi marks are written as escapes;
- times: bucket starts and the as-of line, on the dashboard zone's wall clock;
- money: two decimals, thousands separators and the currency, ``1,234.56 USD``;
  amounts under a cent with two significant digits, ``0.0031 USD``; no currency
  (no model has a price) is the em dash;
- changes against the previous period: a signed whole percent, ``+12%``, ``-3%``;
  under 1% one decimal, ``+0.4%``; none (no previous period, or nothing in it) is
  the empty string, so callers leave the change out (or say "new");
- shares of a whole (a failure rate): one decimal, ``4.8%``; a few in very many
  ``<0.1%``;
- how long something has waited: its two largest units, ``3 h 12 min``, ``45 s``.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from numbers import Real

import pandas as pd

from usage_lib.core.costs import CostSummary
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


#: What a terminal acts on instead of showing: control characters (C0, DEL, C1: line
#: breaks, tabs, escape sequences, the bell), the line and paragraph separators, and the
#: bidirectional marks that reorder the text after them.
ACTED_ON = frozenset(
    [chr(code) for code in (*range(0x20), *range(0x7F, 0xA0))]
    + list("\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
)


def visible(text: str) -> str:
    """`text` for a terminal or a plain-text file: every character of `ACTED_ON` written
    as its escape (``\\n``, ``\\x1b``, ``\\u202e``), so that a name from the data cannot
    start a line of its own, recolour the terminal or reverse the figures after it."""
    if not ACTED_ON.intersection(text):
        return text
    return "".join(ch.encode("unicode_escape").decode("ascii") if ch in ACTED_ON else ch for ch in text)


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



_CENT = Decimal("0.01")


def money(amount: Decimal | None, currency: str | None) -> str:
    """An amount and its currency: ``1,234.56 USD`` (rounded half up to the cent);
    an amount under a cent (but not 0) with two significant digits, ``0.0031 USD``;
    0 is ``0.00 USD``. Without a currency (no model has a price) or an amount: the em
    dash. The amount is never turned into a float."""
    if currency is None or amount is None:
        return PLACEHOLDER
    amount = Decimal(amount)
    if not amount.is_finite():
        return PLACEHOLDER
    if amount != 0 and abs(amount) < _CENT:
        # Two significant digits, e.g. 0.003149 -> 0.0031; 0.00996 rounds up to a cent.
        small = amount.quantize(Decimal(1).scaleb(amount.adjusted() - 1), rounding=ROUND_HALF_UP)
        if abs(small) < _CENT:
            text = format(small, "f").rstrip("0")
            return f"{text} {currency}"
    rounded = amount.quantize(_CENT, rounding=ROUND_HALF_UP)
    if rounded == 0:
        rounded = abs(rounded)  # no "-0.00"
    return f"{rounded:,.2f} {currency}"


def change(fraction: float | None) -> str:
    """A relative change (0.12: 12% more) as a signed percent: ``+12%``, ``-3%``,
    ``+1,250%`` (whole percents, rounded half away from zero); under 1% one decimal,
    ``+0.4%``; a change that rounds to nothing (0 too) is ``+0%``. None or NaN (no
    previous period, or the figure was 0 then) is ``""``: show nothing, or "new"."""
    if fraction is None or is_missing(fraction) or not math.isfinite(float(fraction)):
        return ""
    percent = Decimal(repr(float(fraction) * 100))  # repr: the float's shortest text, 0.4 not 0.40000000000000002
    tenths = percent.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    if tenths == 0:
        return "+0%"
    sign = "+" if tenths > 0 else "-"
    if abs(tenths) < 1:
        return f"{sign}{abs(tenths)}%"
    whole = abs(percent).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return f"{sign}{whole:,}%"


def unpriced_note(cost: "CostSummary") -> str | None:
    """What a cost figure leaves out for want of prices, e.g. ``leaves out 1,234
    requests of unpriced models (56,789 tokens)``; None when every request was priced."""
    if cost.complete:
        return None
    requests = cost.unpriced_requests
    tokens = cost.unpriced_input_tokens + cost.unpriced_output_tokens
    return (f"leaves out {requests:,} request{'' if requests == 1 else 's'} of unpriced models "
            f"({tokens:,} token{'' if tokens == 1 else 's'})")


def share(fraction: float | None) -> str:
    """A share of a whole (0.048: 4.8% of it): one decimal, ``4.8%``; above 0 but under
    0.05% ``<0.1%``; none (nothing to share) is the em dash."""
    if fraction is None or is_missing(fraction) or not math.isfinite(float(fraction)):
        return PLACEHOLDER
    percent = 100.0 * float(fraction)
    return "<0.1%" if 0 < percent < 0.05 else f"{percent:,.1f}%"


_AGE_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def age(seconds: float) -> str:
    """How long something has waited, in its two largest units, rounded down:
    ``45 s``, ``12 min 5 s``, ``3 h 0 min``, ``2 d 4 h``; under a second ``0 s``."""
    left, parts = int(seconds), []
    for unit, size in _AGE_UNITS:
        amount, left = divmod(left, size)
        if amount or parts:
            parts.append(f"{amount:,} {unit}")
    return " ".join(parts[:2]) or "0 s"
