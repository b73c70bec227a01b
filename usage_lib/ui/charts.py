"""The bqplot charts: requests over time and requests by model, and (issue 14) tokens,
requests by model and cost over time (`StackedTimeChart`) and cost by model (the models
chart's cost view); for the Health section (issue 15) response times over time
(`LatencyChart`) and failures over time with the failure rate (`FailuresChart`).

Each chart is built once and updated in place from a `Usage`'s frames (the figures
are never recomputed here). bqplot traps handled (see STACK-NOTES):

- the time scale is padded by half a bucket on both sides, or the first and last bars
  are clipped;
- the ordinal scale's domain is set on every update, or it keeps its first order;
- figures get ``flex: 0 0 auto`` so a flex parent cannot squeeze them;
- values are sent as float64 (int64 would go out as int32).

The time chart puts its bars at their index (0, 1, 2, ...) on a linear scale and writes
every bucket's label itself, from its start on the dashboard zone's wall clock
(`wall_clock_labels`, the axis's `tick_labels`): a date axis would have to place bars
at wall-clock times, and on an autumn DST day the wall clock repeats an hour (two bars
labelled 02:00 in Europe/Vienna) which no position on a date axis can show.

What the charts say beyond the bars: value axes end at the first round tick above the
largest bar (`nice_ticks`), every axis but the models' has a title, and the partial
buckets at both ends of the time chart (the window starts inside its first bucket, the
last one ends now) are drawn pale, with the part they cover in their tooltip. Buckets of
which nothing is recorded (`Usage.unrecorded`: an archive gap) get a grey band behind.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Callable, Mapping, Sequence

import html
import math

import bqplot as bq
import numpy as np
import pandas as pd
import ipywidgets as widgets
from ipywidgets import Layout

from usage_lib.core.spans import Span, Window, spec
from usage_lib.render import formatting
from usage_lib.render.labels import (
    PARTIAL_AXIS_NOTE, PARTIAL_FROM, PARTIAL_UNTIL, TIME_AXIS_LABEL, UNRECORDED_AXIS_NOTE, UNRECORDED_NOTE,
    VALUE_AXIS_LABEL,
)

#: The palette, shared with the page's stylesheet (dashboard.py).
PRIMARY = "#4f46e5"
#: Bars of partial buckets (the time chart's first and last).
PARTIAL = "#a5b4fc"
#: The band behind buckets without a record.
UNRECORDED = "#e2e8f0"
AXIS_COLOR = "#64748b"
GRID_COLOR = "#e2e8f0"

TIMESERIES_HEIGHT = 260
MODEL_ROW_HEIGHT = 30
MODEL_CHART_PADDING = 72
MODEL_CHART_MIN_HEIGHT = 140


#: The cost view of the models chart marks a model that has no price (unpriced, not free).
UNPRICED_SUFFIX = " (unpriced)"
COST_AXIS_LABEL = "Cost ({currency})"
NO_PRICES_AXIS_LABEL = "Cost (no prices configured)"


def cost_label(currency: str | None) -> str:
    """The cost axis title: "Cost (USD)"; without prices, says so."""
    return NO_PRICES_AXIS_LABEL if currency is None else COST_AXIS_LABEL.format(currency=currency)


def _axis_style(axis: bq.Axis) -> bq.Axis:
    axis.color = AXIS_COLOR
    axis.grid_color = GRID_COLOR
    axis.label_color = AXIS_COLOR
    axis.tick_style = {"font-size": "11px", "fill": AXIS_COLOR}
    return axis


def _figure(marks, axes, margin, height: int) -> bq.Figure:
    return bq.Figure(
        marks=marks,
        axes=axes,
        fig_margin=margin,
        padding_x=0,
        padding_y=0,
        background_style={"fill": "white"},
        layout=Layout(width="100%", height=f"{height}px", flex="0 0 auto", min_width="0"),
        animation_duration=0,
        display_toolbar=False,
    )


#: Tick steps: these times a power of ten (2.5 only where it stays a whole number).
NICE_STEPS = (1, 2, 2.5, 3, 4, 5)


def nice_ticks(value: float, max_intervals: int = 5) -> np.ndarray:
    """Round ticks from 0 to the first one above `value`, the tallest bar.

    Of the steps `NICE_STEPS` times a power of ten, with 3 to `max_intervals` intervals
    (fewer only below 3), the one whose last tick is the lowest above `value`: the axis
    ends just above the tallest bar (662 -> 750, 1,940 -> 2,000), never leaving a quarter
    of it empty (at worst exactly a quarter, when `value` is itself a round number: its
    bar would otherwise touch the end). Counts are integers: no step below 1.
    """
    value = max(float(value), 0.0)
    fewest = min(3, math.floor(value) + 1)
    best: tuple[float, float] | None = None
    for power in range(0, 19):
        for multiple in NICE_STEPS:
            step = multiple * 10**power
            if not float(step).is_integer():
                continue
            intervals = math.floor(value / step) + 1
            if not fewest <= intervals <= max_intervals:
                continue
            top = intervals * step
            # The lowest end; of equal ends the larger step (fewer labels).
            if best is None or (top, -step) < (best[0], -best[1]):
                best = (top, step)
    top, step = best if best is not None else (1.0, 1.0)
    return np.arange(0.0, top + step / 2, step)


def nice_amount_ticks(value: float, max_intervals: int = 5) -> np.ndarray:
    """`nice_ticks` for amounts that need not be whole (money): below 10 the amount is
    scaled up by powers of ten first (0.037 -> 0.04 with ticks 0, 0.01, ... 0.04)."""
    value = max(float(value), 0.0)
    if value == 0:
        return np.array([0.0, 1.0])
    power = 0
    while value * 10**power < 10 and power < 12:
        power += 1
    ticks = nice_ticks(value * 10**power, max_intervals) / 10**power
    return np.round(ticks, power + 2)


def amount_format(step: float) -> str:
    """A d3 number format showing ticks `step` apart: ``,.2f`` for cents, more digits for
    smaller steps, none (with thousands) from 1 up."""
    if step >= 1:
        return ",.0f" if step >= 10 else ",.2~f"
    digits = max(2, -math.floor(math.log10(step)) + (0 if float(f"{step:.1e}".split("e")[0]).is_integer() else 1))
    return f",.{digits}~f"


def tick_indexes(starts: list, span: str | Span) -> list[int]:
    """The buckets (indexes) labelled on the axis: round bucket starts, every 10 minutes,
    every 3 hours, or every other day counting back from today's (so the newest day is
    always labelled), on the wall clock of the starts' zone.

    Day buckets also label the first day, the partial one the window starts in, and drop
    the tick next to it (8 days: the 1st, 4th, 6th and 8th), so labels never crowd.
    """
    unit, every = spec(span).tick_unit, spec(span).tick_every
    last = len(starts) - 1
    picked = []
    for index, moment in enumerate(starts):
        number = {"minute": moment.minute, "hour": moment.hour, "bucket": last - index}[unit]
        if number % every == 0:
            picked.append(index)
    if unit == "bucket" and starts:
        picked = [0] + [index for index in picked if index >= every]
    return picked


def partial_buckets(window: Window | None, n_buckets: int) -> set[int]:
    """Indexes of the buckets only partly in the window: the first when the window starts
    after its start, the last when it ends after now (a custom range: after its end)."""
    if window is None or n_buckets == 0:
        return set()
    partial = set()
    if _utc(window.start) > _utc(window.starts[0]):
        partial.add(0)
    if _utc(window.cut) < _utc(window.end):
        partial.add(n_buckets - 1)
    return partial


def _utc(moment: datetime) -> datetime:
    """Two times in one zone compare by wall clock (02:30 CEST "equals" 02:30 CET when the
    clocks go back): compare instants in UTC."""
    return moment.astimezone(timezone.utc)


def unrecorded_buckets(window: Window | None, spans) -> set[int]:
    """Indexes of the buckets that overlap a span (start, end) of which nothing is recorded."""
    if window is None:
        return set()
    return {
        index for index, (start, end) in enumerate(zip(window.starts, window.edges))
        if any(_utc(low) < _utc(end) and _utc(high) > _utc(start) for low, high in spans)
    }


#: How a partial bucket's tooltip writes where the window cuts it.
_CUT_FORMAT = {"minute": "%H:%M:%S", "hour": "%H:%M", "day": "%a %H:%M"}


def wall_clock_labels(starts: list[datetime], span: str | Span) -> list[str]:
    """Each bucket's axis label: its start on its own wall clock (the starts are aware, in
    the dashboard zone), in the span's axis format (``02:00``, ``24 Nov``).

    On an autumn DST day the wall clock repeats: two buckets get the same label, as the
    clocks on the wall showed (`repeated_wall_clock` tells them apart)."""
    return [moment.strftime(spec(span).axis_format) for moment in starts]


def repeated_wall_clock(starts: list[datetime]) -> set[int]:
    """Indexes of the buckets whose wall-clock start another bucket shares (the hour the
    clocks go back repeats, in two UTC offsets)."""
    seen: dict[datetime, list[int]] = {}
    for index, moment in enumerate(starts):
        seen.setdefault(moment.replace(tzinfo=None), []).append(index)
    return {index for indexes in seen.values() if len(indexes) > 1 for index in indexes}


def _offset_note(moment: datetime) -> str:
    """``CEST, UTC+02:00``: which of two equal wall-clock times a bucket is."""
    offset = moment.utcoffset()
    total = int(offset.total_seconds()) if offset is not None else 0
    sign = "+" if total >= 0 else "-"
    hours, minutes = divmod(abs(total) // 60, 60)
    name = moment.tzname() or ""
    utc = f"UTC{sign}{hours:02d}:{minutes:02d}"
    return f"{name}, {utc}" if name and not name.startswith(("+", "-")) and name != "UTC" else utc


def bucket_notes(starts: list[datetime], span: Span, window: Window | None, partial: set[int],
                 missing: set[int]) -> dict[int, str]:
    """The tooltip's third line per bucket: where the window cuts a partial bucket, that
    nothing is recorded, and which of two equal wall-clock starts (a DST change) it is."""
    unit = span.bucket_unit
    notes = {}
    if window is not None:
        if 0 in partial:
            notes[0] = PARTIAL_FROM.format(unit=unit, time=window.start.strftime(_CUT_FORMAT[unit]))
        if len(starts) - 1 in partial:
            notes[len(starts) - 1] = PARTIAL_UNTIL.format(unit=unit, time=window.cut.strftime(_CUT_FORMAT[unit]))
    notes.update({index: UNRECORDED_NOTE for index in missing})
    for index in repeated_wall_clock(starts):  # the clocks went back: which of the two
        notes[index] = " \u00b7 ".join(filter(None, (_offset_note(starts[index]), notes.get(index))))
    return notes


def time_axis_label(span: Span, tz: str | None, partial: set[int], missing: set[int]) -> str:
    """The time axis title: the bucket unit and zone, and what pale and grey bars mean."""
    unit = span.bucket_unit
    axis_label = TIME_AXIS_LABEL.format(unit=unit.capitalize(), tz=tz) if tz else unit.capitalize()
    if partial:
        axis_label += " \u00b7 " + PARTIAL_AXIS_NOTE.format(unit=unit)
    if missing:
        axis_label += " \u00b7 " + UNRECORDED_AXIS_NOTE
    return axis_label


class HoverTip:
    """A chart tooltip: an HTML widget the kernel fills when a bar is hovered.

    bqplot 0.13.1's own Tooltip cannot format times: a date format with ":" is taken for
    a number format and the tooltip's view fails to render. This one shows any text, in
    the page's style, for both charts.
    """

    def __init__(self, noun: str = "requests") -> None:
        self.widget = widgets.HTML("", layout=Layout(width="auto"))
        self.widget.add_class("aq-chart-tip")
        self.noun = noun
        #: (title, value) per bar: a count, a text, or (label, text) lines.
        self.rows: list[tuple[str, object]] = []
        #: A third line for some rows (by index), e.g. that a bucket is partial.
        self.notes: dict[int, str] = {}

    def set_rows(self, rows: list[tuple[str, object]], notes: dict[int, str] | None = None) -> None:
        self.rows = rows
        self.notes = dict(notes or {})
        self.widget.value = ""

    def html_for(self, index: int) -> str:
        """The tooltip of row `index`: its title, its value (a count and the noun, or text
        lines: (label, value) pairs, e.g. per series of a stacked bar) and its note."""
        if not 0 <= index < len(self.rows):
            return ""
        title, value = self.rows[index]
        note = self.notes.get(index)
        note_html = f'<div class="aq-tip-note">{html.escape(note)}</div>' if note else ""
        if isinstance(value, (list, tuple)):
            body = "".join(
                f'<div class="aq-tip-line"><span class="aq-tip-key">{html.escape(label)}</span> '
                f"<b>{html.escape(text)}</b></div>"
                for label, text in value
            )
        elif isinstance(value, str):
            body = f'<div class="aq-tip-count"><b>{html.escape(value)}</b></div>'
        else:
            body = f'<div class="aq-tip-count"><b>{value:,}</b> {self.noun}</div>'
        return f'<div class="aq-tip-title">{html.escape(title)}</div>{body}{note_html}'

    def on_hover(self, _mark, content: dict) -> None:
        point = content.get("point") or content.get("data") or {}
        index = point.get("index") if isinstance(point, dict) else None
        if isinstance(index, int):
            self.widget.value = self.html_for(index)


class TimeseriesChart:
    """"Requests Over Time": one bar per bucket, in order, at its index; the axis labels
    are the buckets' wall-clock starts (`labels`); tooltips with time and count."""

    def __init__(self) -> None:
        #: Each bar's wall-clock label (`wall_clock_labels`), bar i at position i.
        self.labels: list[str] = []
        self.x_scale = bq.LinearScale()
        self.y_scale = bq.LinearScale(min=0.0, max=1.0)
        self.tip = HoverTip()
        self.bars = bq.Bars(
            x=np.array([], dtype="float64"),
            y=np.array([], dtype="float64"),
            scales={"x": self.x_scale, "y": self.y_scale},
            colors=[PRIMARY],
            padding=0.15,
            align="center",
            tooltip=self.tip.widget,
            tooltip_style={"opacity": 1.0},
            stroke="white",
            stroke_width=0.0,
            opacities=[1.0],
        )
        self.bars.on_hover(self.tip.on_hover)
        self.unrecorded = bq.Bars(
            x=np.array([], dtype="float64"),
            y=np.array([], dtype="float64"),
            scales={"x": self.x_scale, "y": self.y_scale},
            colors=[UNRECORDED],
            padding=0.0,
            align="center",
            stroke_width=0.0,
            # Behind the bars and deaf to the pointer: hovering is for the bars' tooltips.
            enable_hover=False,
            interactions={},
        )
        self.x_axis = _axis_style(
            # Every tick is one of `tick_labels`' keys: the format is only a fallback.
            bq.Axis(scale=self.x_scale, grid_lines="none", tick_format="d", label_offset="34px")
        )
        self.y_axis = _axis_style(
            bq.Axis(scale=self.y_scale, side="left", grid_lines="solid", tick_format=",d",
                    label=VALUE_AXIS_LABEL, label_offset="48px")
        )
        self.figure = _figure(
            [self.unrecorded, self.bars], [self.x_axis, self.y_axis], {"top": 12, "bottom": 48, "left": 66, "right": 16}, TIMESERIES_HEIGHT
        )
        self.figure.add_class("aq-chart")
        self.figure.add_class("aq-timeseries")

    def update(self, timeseries: pd.DataFrame, span: str | Span, window: Window | None = None,
               tz: str | None = None, unrecorded=()) -> None:
        """Show `usage.timeseries` (bucket, requests) for `span` (a key or `usage.window.spec`);
        with `usage.window` the partial buckets are drawn pale, with `usage.tz` the time
        axis names the zone, with `usage.unrecorded` buckets without a record are banded."""
        span = spec(span)
        starts = list(timeseries["bucket"])
        x = np.arange(len(starts), dtype="float64")
        y = timeseries["requests"].to_numpy(dtype="float64")
        self.labels = wall_clock_labels(starts, span)
        # Half a bucket of room on both sides: the end bars are whole.
        lo, hi = (-0.5, len(starts) - 0.5) if len(starts) else (None, None)
        ticks = nice_ticks(y.max() if len(y) else 0)
        partial = partial_buckets(window, len(starts))
        missing = unrecorded_buckets(window, unrecorded)
        notes = bucket_notes(starts, span, window, partial, missing)
        self.tip.set_rows(
            [(formatting.bucket(moment, span), int(n)) for moment, n in zip(starts, timeseries["requests"])], notes
        )
        axis_label = time_axis_label(span, tz, partial, missing)
        with self.bars.hold_sync(), self.x_scale.hold_sync(), self.y_scale.hold_sync(), self.x_axis.hold_sync():
            self.x_scale.min = lo
            self.x_scale.max = hi
            self.y_scale.max = float(ticks[-1])
            self.y_axis.tick_values = ticks
            self.x_axis.tick_values = np.array(tick_indexes(starts, span), dtype="float64")
            # Keys as JavaScript writes a tick's number: "3".
            self.x_axis.tick_labels = {str(index): label for index, label in enumerate(self.labels)}
            self.x_axis.label = axis_label
            # One colour per bar (bqplot's "auto" colour mode with one series).
            self.bars.colors = [PARTIAL if index in partial else PRIMARY for index in range(len(starts))] or [PRIMARY]
            self.bars.x = x
            self.bars.y = y
        with self.unrecorded.hold_sync():
            self.unrecorded.x = x[sorted(missing)] if missing else np.array([], dtype="float64")
            self.unrecorded.y = np.full(len(missing), float(ticks[-1]))

    def clear(self) -> None:
        self.tip.set_rows([])
        self.labels = []
        for bars in (self.bars, self.unrecorded):
            with bars.hold_sync():
                bars.x = np.array([], dtype="float64")
                bars.y = np.array([], dtype="float64")


#: Colours of stacked series, in order (the last, grey, is "other" when there is one).
SERIES_COLORS = ("#4f46e5", "#0ea5e9", "#f59e0b", "#10b981", "#ec4899", "#8b5cf6")
OTHER_COLOR = "#94a3b8"
#: Input tokens below, output tokens on top.
TOKEN_COLORS = ("#4f46e5", "#38bdf8")
STACKED_HEIGHT = 236
#: A partial bucket's stacked bar: pale, as the requests chart's `PARTIAL` colour.
PARTIAL_OPACITY = 0.45


class StackedTimeChart:
    """A time chart of one or more series stacked per bucket (tokens: input and output;
    requests by model; cost), laid out as "Requests Over Time": bar i at position i,
    the buckets' wall-clock starts as labels, partial and unrecorded buckets named in the
    tooltip and the axis title. A legend (an HTML row of swatches) names the series.

    `money`: the values are amounts (ticks may be fractions); their texts come from
    `update`'s `text`.
    """

    def __init__(self, css: str, value_label: str, money: bool = False, tick_format: str = ",d") -> None:
        self.css = css
        self.money = money
        self.value_label = value_label
        #: Each bar's wall-clock label, bar i at position i.
        self.labels: list[str] = []
        #: The series shown, bottom first, and their values per bucket (float64).
        self.names: list[str] = []
        self.values = np.zeros((0, 0), dtype="float64")
        self.x_scale = bq.LinearScale()
        self.y_scale = bq.LinearScale(min=0.0, max=1.0)
        self.tip = HoverTip()
        self.bars = bq.Bars(
            x=np.array([], dtype="float64"),
            y=np.array([], dtype="float64"),
            scales={"x": self.x_scale, "y": self.y_scale},
            type="stacked",
            colors=[PRIMARY],
            # Colours per series, opacities per bucket: partial buckets pale, as in "Requests Over Time".
            color_mode="element",
            opacity_mode="group",
            padding=0.15,
            align="center",
            tooltip=self.tip.widget,
            tooltip_style={"opacity": 1.0},
            stroke="white",
            stroke_width=0.0,
        )
        self.bars.on_hover(self.tip.on_hover)
        self.x_axis = _axis_style(bq.Axis(scale=self.x_scale, grid_lines="none", tick_format="d", label_offset="34px"))
        self.y_axis = _axis_style(
            bq.Axis(scale=self.y_scale, side="left", grid_lines="solid", tick_format=tick_format if not money else ",.2f",
                    label=value_label, label_offset="48px")
        )
        self.figure = _figure([self.bars], [self.x_axis, self.y_axis],
                              {"top": 12, "bottom": 48, "left": 66, "right": 16}, STACKED_HEIGHT)
        self.figure.add_class("aq-chart")
        self.figure.add_class(css)
        self.legend = widgets.HTML("", layout=Layout(width="auto"))
        self.legend.add_class("aq-legend")
        self.widget = widgets.VBox([self.figure, self.legend], layout=Layout(width="100%", min_width="0"))
        self.widget.add_class("aq-chart-box")

    def update(self, starts: Sequence[datetime], series: Mapping[str, Sequence], span: str | Span,
               window: Window | None = None, tz: str | None = None, unrecorded=(),
               text: Callable[[object], str] = formatting.count, value_label: str | None = None,
               colors: Sequence[str] | None = None, total: Callable[[int], str] | None = None) -> None:
        """Show `series` (name -> one value per bucket of `starts`, bottom first); `text`
        writes a value in the tooltip, `total(index)` the bucket's total line (if any)."""
        span = spec(span)
        starts = list(starts)
        self.names = list(series)
        raw = [list(values) for values in series.values()]
        values = np.array([[float(v) for v in row] for row in raw], dtype="float64").reshape(len(raw), len(starts))
        self.values = values
        x = np.arange(len(starts), dtype="float64")
        self.labels = wall_clock_labels(starts, span)
        lo, hi = (-0.5, len(starts) - 0.5) if len(starts) else (None, None)
        tallest = values.sum(axis=0).max() if values.size else 0.0
        ticks = nice_amount_ticks(tallest) if self.money else nice_ticks(tallest)
        partial = partial_buckets(window, len(starts))
        missing = unrecorded_buckets(window, unrecorded)
        notes = bucket_notes(starts, span, window, partial, missing)
        rows = []
        for index, moment in enumerate(starts):
            lines = [(name, text(row[index])) for name, row in zip(self.names, raw)]
            if total is not None:
                lines.append(("total", total(index)))
            rows.append((formatting.bucket(moment, span), lines))
        self.tip.set_rows(rows, notes)
        palette = list(colors or SERIES_COLORS)
        shown_colors = [palette[i % len(palette)] for i in range(len(self.names))] or [PRIMARY]
        with self.bars.hold_sync(), self.x_scale.hold_sync(), self.y_scale.hold_sync(), self.x_axis.hold_sync(), \
                self.y_axis.hold_sync():
            self.x_scale.min = lo
            self.x_scale.max = hi
            self.y_scale.max = float(ticks[-1])
            self.y_axis.tick_values = ticks
            if self.money:
                self.y_axis.tick_format = amount_format(float(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0)
            self.y_axis.label = value_label or self.value_label
            self.x_axis.tick_values = np.array(tick_indexes(starts, span), dtype="float64")
            self.x_axis.tick_labels = {str(index): label for index, label in enumerate(self.labels)}
            self.x_axis.label = time_axis_label(span, tz, partial, missing)
            self.bars.colors = shown_colors
            self.bars.opacities = [PARTIAL_OPACITY if index in partial else 1.0 for index in range(len(starts))] or [1.0]
            self.bars.x = x
            self.bars.y = values if len(values) else np.zeros((1, len(starts)), dtype="float64")
        self.legend.value = "" if len(self.names) < 2 else "".join(
            f'<span class="aq-legend-item"><span class="aq-swatch" style="background:{color}"></span>'
            f"{html.escape(name)}</span>"
            for name, color in zip(self.names, shown_colors)
        )

    def clear(self) -> None:
        self.tip.set_rows([])
        self.labels = []
        self.names = []
        self.values = np.zeros((0, 0), dtype="float64")
        self.legend.value = ""
        with self.bars.hold_sync():
            self.bars.x = np.array([], dtype="float64")
            self.bars.y = np.array([], dtype="float64")


class ModelsChart:
    """"Requests by Model": horizontal bars, every configured model (zeros too), largest on
    top; the figure grows with the number of models."""

    def __init__(self) -> None:
        #: "requests" or "cost" (`update`); `order`: the frame's rows in the order shown.
        self.metric = "requests"
        self.order: list[int] = []
        self.model_scale = bq.OrdinalScale()
        self.count_scale = bq.LinearScale(min=0.0, max=1.0)
        self.tip = HoverTip()
        self.bars = bq.Bars(
            x=np.array([], dtype=str),
            y=np.array([], dtype="float64"),
            scales={"x": self.model_scale, "y": self.count_scale},
            orientation="horizontal",
            # bqplot treats a bar at its base as negative and puts its label left of the
            # axis; a base a hair below 0 keeps the "0" of unused models readable.
            base=-1e-9,
            colors=[PRIMARY],
            padding=0.3,
            tooltip=self.tip.widget,
            tooltip_style={"opacity": 1.0},
            label_display=True,
            label_display_format=",d",
            label_font_style={"font-size": "11px", "fill": "#334155", "text-anchor": "start", "dominant-baseline": "central", "font-weight": "600"},
            # horizontal bars swap the offsets: "vertical" moves the label along the bar
            label_display_horizontal_offset=0,
            label_display_vertical_offset=6,
            # The axis ends just above the longest bar: its label goes on into the
            # figure's right margin instead of being cut off at the plot's edge.
            apply_clip=False,
        )
        self.bars.on_hover(self.tip.on_hover)
        self.model_axis = _axis_style(bq.Axis(scale=self.model_scale, side="left", grid_lines="none"))
        self.count_axis = _axis_style(
            # 2k, 1.5k: five labels fit the narrow plot beside long model names.
            bq.Axis(scale=self.count_scale, side="bottom", grid_lines="solid", tick_format="~s",
                    label=VALUE_AXIS_LABEL, label_offset="32px")
        )
        self.figure = _figure(
            [self.bars],
            [self.model_axis, self.count_axis],
            {"top": 8, "bottom": 48, "left": 160, "right": 48},
            MODEL_CHART_MIN_HEIGHT,
        )
        self.figure.add_class("aq-chart")
        self.figure.add_class("aq-models")

    @staticmethod
    def height_for(n_models: int) -> int:
        return max(MODEL_CHART_MIN_HEIGHT, MODEL_CHART_PADDING + MODEL_ROW_HEIGHT * n_models)

    def update(self, models: pd.DataFrame, metric: str = "requests", currency: str | None = None) -> None:
        """Show `usage.models` (model, requests) in its display order, first on top; with
        `metric` "cost", each model's cost (most first; unpriced models last, marked),
        written with `currency`."""
        self.metric = metric
        if metric == "cost":
            self._update_cost(models, currency)
            return
        self.order = list(range(len(models)))
        names = [formatting.name(model) for model in models["model"]]
        counts = models["requests"].to_numpy(dtype="float64")
        longest = max((len(n) for n in names), default=8)
        self.tip.set_rows([(name, int(n)) for name, n in zip(names, models["requests"])])
        with self.bars.hold_sync(), self.model_scale.hold_sync(), self.count_scale.hold_sync(), \
                self.count_axis.hold_sync():
            # A vertical ordinal axis puts its first value at the bottom: list them bottom-up.
            # (OrdinalScale(reverse=True) flips again on every domain update in bqplot 0.13.1.)
            self.model_scale.domain = names[::-1]
            # The longest bar's label may stand in the right margin (the bars are not clipped).
            ticks = nice_ticks(counts.max() if len(counts) else 0)
            self.count_scale.max = float(ticks[-1])
            self.count_axis.tick_values = ticks
            self.count_axis.tick_format = "~s"
            self.count_axis.label = VALUE_AXIS_LABEL
            self.bars.label_display_format = ",d"
            self.bars.x = np.array(names, dtype=str)
            self.bars.y = counts
        self.figure.fig_margin = {"top": 8, "bottom": 48, "left": min(260, 24 + 7 * longest), "right": 48}
        self.figure.layout.height = f"{self.height_for(len(names))}px"

    def _update_cost(self, models: pd.DataFrame, currency: str | None) -> None:
        records = models.to_dict("records")
        # Most cost first; ties (and unpriced models, at 0) in the frame's order.
        order = sorted(range(len(records)), key=lambda i: (-records[i]["cost"], records[i]["unpriced_requests"] > 0, i))
        names, amounts, rows = [], [], []
        for i in order:
            record = records[i]
            name = formatting.name(record["model"])
            unpriced = int(record["unpriced_requests"])
            if unpriced and record["cost"] == 0:
                name += UNPRICED_SUFFIX
            names.append(name)
            amounts.append(float(record["cost"]))
            lines = [("cost", formatting.money(record["cost"], currency)), ("requests", formatting.count(record["requests"]))]
            if unpriced:
                lines.append(("unpriced", f"{unpriced:,} request{'' if unpriced == 1 else 's'} left out"))
            rows.append((name, lines))
        self.order = order
        values = np.array(amounts, dtype="float64")
        longest = max((len(n) for n in names), default=8)
        ticks = nice_amount_ticks(values.max() if len(values) else 0)
        step = float(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
        self.tip.set_rows(rows)
        with self.bars.hold_sync(), self.model_scale.hold_sync(), self.count_scale.hold_sync(), \
                self.count_axis.hold_sync():
            self.model_scale.domain = names[::-1]
            self.count_scale.max = float(ticks[-1])
            self.count_axis.tick_values = ticks
            self.count_axis.tick_format = "~s" if step >= 1000 else amount_format(step)
            self.count_axis.label = cost_label(currency)
            # Three significant digits: 14.1, 0.21, 0.0031 (the tooltip has the exact amount).
            self.bars.label_display_format = ",.3~r"
            self.bars.x = np.array(names, dtype=str)
            self.bars.y = values
        self.figure.fig_margin = {"top": 8, "bottom": 48, "left": min(260, 24 + 7 * longest), "right": 56}
        self.figure.layout.height = f"{self.height_for(len(names))}px"

    def clear(self) -> None:
        self.tip.set_rows([])
        with self.bars.hold_sync(), self.model_scale.hold_sync():
            self.model_scale.domain = []
            self.bars.x = np.array([], dtype=str)
            self.bars.y = np.array([], dtype="float64")


#: The failure-rate line over the failures chart, on its own axis at the right.
RATE_COLOR = "#0f172a"
RATE_DOT_SIZE = 18
RATE_AXIS_NOTE = "right axis"


def share_ticks(highest: float) -> np.ndarray:
    """Ticks of a share (0-1) axis: 0 to the first round percent above `highest` (33.3%
    -> 0, 10, ... 40%), never past 100% (then quarters); without any share above 0,
    quarters up to 100%."""
    quarters = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    if not highest > 0:
        return quarters
    ticks = nice_amount_ticks(highest * 100) / 100
    return quarters if ticks[-1] > 1 else ticks


def share_format(step: float) -> str:
    """A d3 percent format showing ticks `step` apart (a share), trailing zeros left
    out: ``.0~%`` for 10% steps, ``.3~%`` for 0.025% steps (0%, 0.025%, 0.05%)."""
    percent = step * 100
    digits = 0
    while digits < 4 and abs(round(percent, digits) - percent) > 1e-9:
        digits += 1
    return f".{digits}~%"


class FailuresChart(StackedTimeChart):
    """Failures per bucket stacked by kind (`StackedTimeChart`) with the failure rate
    (failed / all requests) as a line over them, on a percent axis at the right: the
    counts say how many failed, the line whether a bucket failed more than usual for
    its traffic. A bucket without requests has no rate: a gap in the line, no dot (not
    0%); a dot marks every rate, so a bucket between two empty ones still shows."""

    def __init__(self, css: str, value_label: str, rate_label: str) -> None:
        super().__init__(css, value_label)
        self.rate_label = rate_label
        #: The failure rate per bucket (NaN: no requests), as shown.
        self.rates = np.zeros(0, dtype="float64")
        self.rate_scale = bq.LinearScale(min=0.0, max=1.0)
        scales = {"x": self.x_scale, "y": self.rate_scale}
        empty = np.array([], dtype="float64")
        # Deaf to the pointer: hovering a bucket is for the bars' tooltip (it has the rate).
        self.rate_line = bq.Lines(x=empty, y=empty, scales=scales, colors=[RATE_COLOR], stroke_width=2.0,
                                  enable_hover=False, interactions={})
        self.rate_dots = bq.Scatter(x=empty, y=empty, scales=scales, colors=[RATE_COLOR], default_size=RATE_DOT_SIZE,
                                    stroke="white", stroke_width=0.5, enable_hover=False, interactions={})
        self.rate_axis = _axis_style(bq.Axis(scale=self.rate_scale, side="right", grid_lines="none",
                                             tick_format=".0~%", label=rate_label, label_offset="44px"))
        self.figure.marks = [*self.figure.marks, self.rate_line, self.rate_dots]
        self.figure.axes = [*self.figure.axes, self.rate_axis]
        self.figure.fig_margin = {**self.figure.fig_margin, "right": 58}

    def update(self, starts: Sequence[datetime], series: Mapping[str, Sequence], rates: Sequence, span: str | Span,
               **options) -> None:
        """`StackedTimeChart.update` with `rates`, the failure rate per bucket of
        `starts` (NaN or None: no requests)."""
        super().update(starts, series, span, **options)
        self.rates = np.array([math.nan if formatting.is_missing(v) else float(v) for v in rates], dtype="float64")
        shown = np.isfinite(self.rates)
        x = np.arange(len(self.rates), dtype="float64")
        ticks = share_ticks(float(self.rates[shown].max()) if shown.any() else 0.0)
        with self.rate_scale.hold_sync(), self.rate_axis.hold_sync():
            self.rate_scale.max = float(ticks[-1])
            self.rate_axis.tick_values = ticks
            self.rate_axis.tick_format = share_format(float(ticks[1] - ticks[0]))
        with self.rate_line.hold_sync():
            self.rate_line.x = x
            self.rate_line.y = self.rates
        with self.rate_dots.hold_sync():
            self.rate_dots.x = x[shown]
            self.rate_dots.y = self.rates[shown]
        self.legend.value += (
            f'<span class="aq-legend-item"><span class="aq-swatch aq-swatch-line" style="border-color:{RATE_COLOR}">'
            f"</span>{html.escape(self.rate_label)} ({RATE_AXIS_NOTE})</span>")

    def clear(self) -> None:
        super().clear()
        self.rates = np.zeros(0, dtype="float64")
        empty = np.array([], dtype="float64")
        for mark in (self.rate_line, self.rate_dots):
            with mark.hold_sync():
                mark.x = empty
                mark.y = empty


#: The latency chart's colours per path kind (p50 solid, p95 dashed).
LATENCY_COLORS = {"completion": "#4f46e5", "embedding": "#0ea5e9"}
LATENCY_HEIGHT = 236
LATENCY_AXIS_LABEL = "Response time (ms, log scale)"
#: A dot on every bucket with a value: a bucket between two empty ones is no line.
LATENCY_DOT_SIZE = 14


def log_ticks(lowest: float, highest: float) -> np.ndarray:
    """Powers of ten from the one at or below `lowest` to the one above `highest` (at
    least two): 67 and 29,591 ms -> 10, 100, 1,000, 10,000, 100,000."""
    low = math.floor(math.log10(max(lowest, 1e-3)))
    high = max(math.floor(math.log10(max(highest, 1e-3))) + 1, low + 1)
    return np.array([10.0 ** power for power in range(low, high + 1)], dtype="float64")


class LatencyChart:
    """p50 and p95 response times per bucket (`Health.latency_over_time`), one line per
    path kind and percentile: p50 solid, p95 dashed, a dot on each value. Buckets
    without a timed request are gaps (bqplot leaves NaN out of a line). The value axis
    is logarithmic (powers of ten): embeddings' tens of milliseconds and completions'
    seconds both read on one chart. Laid out as the
    other time charts: bucket i at position i, its wall-clock start as its label;
    buckets without a record are named in the axis title."""

    SERIES = tuple((kind, q) for q in ("p50", "p95") for kind in ("completion", "embedding"))

    def __init__(self, kind_titles: Mapping[str, str]) -> None:
        self.kind_titles = dict(kind_titles)
        self.labels: list[str] = []
        #: Per series ("completion_p50", ...): its values per bucket (NaN: none).
        self.values: dict[str, np.ndarray] = {}
        self.x_scale = bq.LinearScale()
        self.y_scale = bq.LogScale(min=1.0, max=1000.0)
        scales = {"x": self.x_scale, "y": self.y_scale}
        colors = [LATENCY_COLORS[kind] for kind in ("completion", "embedding")]
        empty = np.array([], dtype="float64")
        self.p50 = bq.Lines(x=empty, y=empty, scales=scales, colors=colors, stroke_width=2.0, line_style="solid")
        self.p95 = bq.Lines(x=empty, y=empty, scales=scales, colors=colors, stroke_width=2.0, line_style="dashed")
        self.dots = {
            f"{kind}_{q}": bq.Scatter(x=empty, y=empty, scales=scales, colors=[LATENCY_COLORS[kind]],
                                      default_size=LATENCY_DOT_SIZE, stroke="white", stroke_width=0.5)
            for kind, q in self.SERIES
        }
        self.x_axis = _axis_style(bq.Axis(scale=self.x_scale, grid_lines="none", tick_format="d", label_offset="34px"))
        self.y_axis = _axis_style(bq.Axis(scale=self.y_scale, side="left", grid_lines="solid", tick_format="~s",
                                          label=LATENCY_AXIS_LABEL, label_offset="48px"))
        self.figure = _figure([self.p50, self.p95, *self.dots.values()], [self.x_axis, self.y_axis],
                              {"top": 12, "bottom": 48, "left": 66, "right": 16}, LATENCY_HEIGHT)
        self.figure.add_class("aq-chart")
        self.figure.add_class("aq-latency-time")
        self.legend = widgets.HTML("", layout=Layout(width="auto"))
        self.legend.add_class("aq-legend")
        self.widget = widgets.VBox([self.figure, self.legend], layout=Layout(width="100%", min_width="0"))
        self.widget.add_class("aq-chart-box")

    def update(self, frame: pd.DataFrame, span: str | Span, window: Window | None = None, tz: str | None = None,
               unrecorded=()) -> None:
        """Show `Health.latency_over_time` (bucket, <kind>_p50, <kind>_p95 in ms)."""
        span = spec(span)
        starts = list(frame["bucket"])
        x = np.arange(len(starts), dtype="float64")
        self.values = {f"{kind}_{q}": frame[f"{kind}_{q}"].to_numpy(dtype="float64") for kind, q in self.SERIES}
        self.labels = wall_clock_labels(starts, span)
        finite = [v[np.isfinite(v) & (v > 0)] for v in self.values.values()]
        tallest = max((float(v.max()) for v in finite if v.size), default=1000.0)
        lowest = min((float(v.min()) for v in finite if v.size), default=1.0)
        ticks = log_ticks(lowest, tallest)
        missing = unrecorded_buckets(window, unrecorded)
        lo, hi = (-0.5, len(starts) - 0.5) if len(starts) else (None, None)
        with self.x_scale.hold_sync(), self.y_scale.hold_sync(), self.x_axis.hold_sync(), self.y_axis.hold_sync():
            self.x_scale.min = lo
            self.x_scale.max = hi
            self.y_scale.min = float(ticks[0])
            self.y_scale.max = float(ticks[-1])
            self.y_axis.tick_values = ticks
            self.x_axis.tick_values = np.array(tick_indexes(starts, span), dtype="float64")
            self.x_axis.tick_labels = {str(index): label for index, label in enumerate(self.labels)}
            self.x_axis.label = time_axis_label(span, tz, set(), missing)
        for q, lines in (("p50", self.p50), ("p95", self.p95)):
            with lines.hold_sync():
                lines.x = x
                lines.y = np.vstack([self.values[f"{kind}_{q}"] for kind in ("completion", "embedding")]) \
                    if len(starts) else np.zeros((2, 0), dtype="float64")
        for key, dots in self.dots.items():
            values = self.values[key]
            shown = np.isfinite(values)
            with dots.hold_sync():
                dots.x = x[shown]
                dots.y = values[shown]
        self.legend.value = "".join(
            f'<span class="aq-legend-item"><span class="aq-swatch aq-swatch-{q}" style="border-color:{color}"></span>'
            f"{html.escape(self.kind_titles.get(kind, kind))} {q}</span>"
            for q in ("p50", "p95") for kind, color in LATENCY_COLORS.items()
        )

    def clear(self) -> None:
        self.labels = []
        self.values = {}
        empty = np.array([], dtype="float64")
        for mark in (self.p50, self.p95, *self.dots.values()):
            with mark.hold_sync():
                mark.x = empty
                mark.y = empty
        self.legend.value = ""
