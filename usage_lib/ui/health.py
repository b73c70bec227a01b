"""The page's Health section (issue 15 item 7): the gateway's health for the view shown,
as ipywidgets. One module per page section: `HealthSection.show` draws a `Health`
(`core.health.compute_health`, called by the page, `ui.dashboard`, never here), and
nothing here builds SQL or decides who may see what.

What it shows, at 1366x768 without sideways scrolling:

- six tiles: p50 / p95 / p99 of completions and of embeddings, the failure rate with the
  failed count (and per kind), requests in flight with the oldest's age, completions
  without reported tokens, and the gateway's own overhead (p50 / p95) or why there is
  none;
- p50 and p95 per bucket (lines; empty buckets are gaps) and failures per bucket by kind
  (stacked bars) with the failure rate per bucket as a line on a percent axis at the
  right (buckets without requests are gaps; the tooltip has the rate too);
- a table per model (requests, p50, p95, p99, failed, failure rate, in flight, tokens
  unknown) and one per status code;
- for org admins and global admins, "Rate-limit headroom": each token's busiest minute
  against its per-minute limits, the tokens within `NEAR_LIMIT` of a limit listed first
  and highlighted. A standard user's section has no trace of it.

Every text from the data (model and token names) is escaped. Labels and wordings come
from `render.health_figures` and `render.formatting`, shared with the files.
"""

from __future__ import annotations

import html
import math
import re
from typing import Any, Sequence

import ipywidgets as widgets
import numpy as np
import pandas as pd
from ipywidgets.widgets.widget_string import HTMLStyle

from usage_lib.core.headroom import MEASURES, NEAR_LIMIT
from usage_lib.core.health import FAILURE_KINDS, NO_PROCESSING_TIME_NOTICE, PATH_KINDS, Health
from usage_lib.core.spans import Window
from usage_lib.render import formatting
from usage_lib.render.health_figures import (
    FAILED_LABEL, FAILURE_RATE_LABEL, FAILURES_OVER_TIME_TITLE, HEADROOM_HEADERS, HEADROOM_NOTE, HEADROOM_TITLE,
    IN_FLIGHT_LABEL, KIND_TITLES, LATENCY_OVER_TIME_TITLE, LATENCY_TILE, MODELS_TABLE_HEADERS, MODELS_TABLE_TITLE,
    NEAR_LIMIT_TITLE, NO_LIMITS_NOTE, NO_TOKEN_LIMITS, NO_OVERHEAD_NOTE, NO_STATUS, NONE_NEAR_LIMIT, OLDEST_WAITING, OVERHEAD_TILE,
    SHOWN_PERCENTILES, STATUS_TABLE_HEADERS, STATUS_TABLE_TITLE, TOKENS_UNKNOWN_LABEL, has_limit, headroom_cell,
    tokens_unknown_text,
)
from usage_lib.render.labels import EMPTY_TEXT
from usage_lib.ui import charts

#: The tiles: key -> label, in display order.
TILES = {
    "completion": LATENCY_TILE.format(kind=KIND_TITLES["completion"]),
    "embedding": LATENCY_TILE.format(kind=KIND_TITLES["embedding"]),
    "failures": FAILURE_RATE_LABEL,
    "in_flight": IN_FLIGHT_LABEL,
    "tokens_unknown": TOKENS_UNKNOWN_LABEL,
    "overhead": OVERHEAD_TILE,
}
#: The failures chart's colours by kind (`FAILURE_KINDS` order: 4xx, 429, 5xx).
FAILURE_COLORS = ("#f59e0b", "#8b5cf6", "#dc2626")
FAILED_AXIS_LABEL = "Failed requests"
#: The overhead tile of a gateway that logs the time but has none in the window.
NO_OVERHEAD_TIMES = "no request of the window has its gateway time"
#: The percentiles the overhead tile shows.
OVERHEAD_PERCENTILES = ("p50", "p95")


def _cell(text: str, css: str = "") -> str:
    return f'<td class="{css}">{html.escape(text)}</td>' if css else f"<td>{html.escape(text)}</td>"


def _table(headers: Sequence[str], rows: Sequence[tuple[Sequence[str], str]], numeric_from: int,
           css: str) -> str:
    """An HTML table: `rows` of (cell texts, row class); columns from `numeric_from` on are
    numbers (right-aligned). Every text is escaped."""
    if not rows:
        return f'<div class="aq-empty">{html.escape(EMPTY_TEXT)}</div>'
    head = "".join(f'<th class="{"aq-num" if i >= numeric_from else ""}">{html.escape(h)}</th>'
                   for i, h in enumerate(headers))
    body = "".join(
        f'<tr class="{row_css}">' + "".join(_cell(text, "aq-num" if i >= numeric_from else "")
                                            for i, text in enumerate(texts)) + "</tr>"
        for texts, row_css in rows
    )
    return f'<table class="aq-htable {css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _read_table(value: str) -> list[dict[str, str]]:
    """The rows of a table written by `_table`, header -> cell text (for tests)."""
    headers = [html.unescape(h) for h in re.findall(r"<th(?: [^>]*)?>(.*?)</th>", value)]
    rows = []
    for row in re.findall(r"<tr class=\"[^\"]*\">(.*?)</tr>", value):
        cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        rows.append(dict(zip(headers, cells)))
    return rows


def _number(value: Any) -> float:
    """A figure as a float (NaN when missing)."""
    return math.nan if formatting.is_missing(value) else float(value)


class HealthSection:
    """The Health section's widgets (`widget`); `show(health)` draws one refresh's
    figures, `clear()` shows none (a failed refresh)."""

    def __init__(self) -> None:
        self._layout = widgets.Layout()
        self._style = HTMLStyle()
        self.health: Health | None = None
        self.tiles = {key: self._html(self._tile_html(label, formatting.PLACEHOLDER), "aq-tile", "aq-health-tile",
                                      f"aq-health-tile-{key.replace('_', '-')}")
                      for key, label in TILES.items()}
        tiles = self._box(widgets.GridBox, list(self.tiles.values()), "aq-tiles", "aq-health-tiles")

        self.latency_chart = charts.LatencyChart(KIND_TITLES)
        self.failures_chart = charts.FailuresChart("aq-failures-time", FAILED_AXIS_LABEL, FAILURE_RATE_LABEL)
        self.latency_title = self._html(self._card_title(LATENCY_OVER_TIME_TITLE), "aq-card-title")
        self.failures_title = self._html(self._card_title(FAILURES_OVER_TIME_TITLE), "aq-card-title")
        latency_card = self._card(self.latency_title, self.latency_chart.widget, "aq-card-latency")
        failures_card = self._card(self.failures_title, self.failures_chart.widget, "aq-card-failures")
        chart_row = self._box(widgets.GridBox, [latency_card, failures_card], "aq-health-row", "aq-health-charts")

        self.models_title = self._html(self._card_title(MODELS_TABLE_TITLE), "aq-card-title")
        self.models_table = self._html("", "aq-health-table", "aq-health-models")
        self.status_title = self._html(self._card_title(STATUS_TABLE_TITLE), "aq-card-title")
        self.status_table = self._html("", "aq-health-table", "aq-health-statuses")
        models_card = self._card(self.models_title, self.models_table, "aq-card-health-models")
        status_card = self._card(self.status_title, self.status_table, "aq-card-statuses")
        self._bottom = self._box(widgets.GridBox, [status_card], "aq-health-row", "aq-health-bottom")

        self.headroom_title = self._html(self._card_title(HEADROOM_TITLE, HEADROOM_NOTE), "aq-card-title")
        self.near_limit = self._html("", "aq-near-limit")
        self.headroom_table = self._html("", "aq-health-table", "aq-headroom")
        self.headroom_card = self._card(self.headroom_title, self.near_limit, "aq-card-headroom")
        self.headroom_card.children = (self.headroom_title, self.near_limit, self.headroom_table)
        self._status_card = status_card
        self.widget = self._box(widgets.VBox, [tiles, chart_row, models_card, self._bottom], "aq-health")

    # -- widgets ----------------------------------------------------------------------

    def _box(self, kind, content, *css: str):
        extra = {"style": self._style} if kind is widgets.HTML else {}
        widget = kind(content, layout=self._layout, **extra)
        for name in css:
            widget.add_class(name)
        return widget

    def _html(self, value: str, *css: str) -> widgets.HTML:
        return self._box(widgets.HTML, value, *css)

    def _card(self, title: widgets.Widget, body: widgets.Widget, css: str) -> widgets.VBox:
        return self._box(widgets.VBox, [title, body], "aq-card", css)

    @staticmethod
    def _card_title(text: str, note: str = "") -> str:
        note_html = f'<span class="aq-card-note">{html.escape(note)}</span>' if note else ""
        return f"<h3>{html.escape(text)}</h3>{note_html}"

    @staticmethod
    def _tile_html(label: str, value: str, note: str = "", lines: Sequence[tuple[str, str]] = (),
                   side: str = "", title: str = "") -> str:
        """A tile: its label, then either its `value` (with `side`, a small text beside it)
        or `lines` of (name, text) (percentiles), and a small `note` (hover: `title`)."""
        if lines:
            body = "".join(f'<div class="aq-pct"><span class="aq-pct-name">{html.escape(name)}</span>'
                           f'<span class="aq-pct-value">{html.escape(text)}</span></div>' for name, text in lines)
            value_html = f'<div class="aq-tile-value aq-pcts">{body}</div>'
        else:
            value_html = f'<div class="aq-tile-value" style="--aq-len: {max(len(value), 1)}">{html.escape(value)}</div>'
            if side:
                value_html = (f'<div class="aq-tile-figure">{value_html}'
                              f'<div class="aq-tile-share">{html.escape(side)}</div></div>')
        note_html = ""
        if note:
            hover = html.escape(title or note, quote=True)
            note_html = f'<div class="aq-tile-note" title="{hover}">{html.escape(note)}</div>'
        return f'<div class="aq-tile-label">{html.escape(label)}</div>{value_html}{note_html}'

    # -- drawing ----------------------------------------------------------------------

    def show(self, health: Health, role: str) -> None:
        """Draw `health`, computed for a viewer of `role` ("admin", "org-admin", "user")."""
        self.health = health
        self._show_tiles(health)
        window = health.window
        span = window.spec
        first, last = window.starts[0], window.starts[-1]
        when = f"{span.per_bucket} \u00b7 {formatting.bucket(first, span)} \u2013 {formatting.bucket(last, span)} ({health.tz})"
        self.latency_chart.update(health.latency_over_time, span, window, health.tz, health.unrecorded)
        self.latency_title.value = self._card_title(LATENCY_OVER_TIME_TITLE, f"p50 and p95 \u00b7 {when}")
        self._show_failures(health, when)
        self.models_table.value = _table(MODELS_TABLE_HEADERS, self._model_rows(health), 2, "aq-models-htable")
        self.status_table.value = _table(STATUS_TABLE_HEADERS, self._status_rows(health), 2, "aq-status-htable")
        self._show_headroom(health, role)

    def _show_tiles(self, health: Health) -> None:
        for kind in PATH_KINDS:
            row = health.latency.loc[kind]
            requests = int(row["requests"])
            self.tiles[kind].value = self._tile_html(
                TILES[kind], "", lines=[(p, formatting.milliseconds(row[p])) for p in SHOWN_PERCENTILES],
                note=f"{formatting.count(requests)} request{'' if requests == 1 else 's'} with a response time")
        requests = int(health.statuses["requests"].sum())
        per_kind = {kind: int(health.statuses.loc[health.statuses["kind"] == kind, "requests"].sum())
                    for kind in FAILURE_KINDS}
        failed = sum(per_kind.values())
        rate = formatting.share(failed / requests) if requests else formatting.share(None)
        self.tiles["failures"].value = self._tile_html(
            TILES["failures"], rate, side=f"{formatting.count(failed)} {FAILED_LABEL.lower()}",
            note=" \u00b7 ".join(f"{kind} {formatting.count(per_kind[kind])}" for kind in FAILURE_KINDS),
            title=f"{formatting.count(failed)} of {formatting.count(requests)} requests failed")
        self._alert("failures", failed > 0)
        age = health.oldest_in_flight_age_s
        waiting = OLDEST_WAITING.format(age=formatting.age(age)) if health.in_flight and age is not None else ""
        self.tiles["in_flight"].value = self._tile_html(TILES["in_flight"], formatting.count(health.in_flight),
                                                        note=waiting)
        unknown = health.tokens_unknown
        self.tiles["tokens_unknown"].value = self._tile_html(
            TILES["tokens_unknown"], formatting.count(unknown),
            note=tokens_unknown_text(unknown).removeprefix(formatting.count(unknown)).strip())
        self._alert("tokens_unknown", unknown > 0)
        if health.processing is None:
            self.tiles["overhead"].value = self._tile_html(TILES["overhead"], formatting.PLACEHOLDER,
                                                           note=NO_OVERHEAD_NOTE, title=NO_PROCESSING_TIME_NOTICE)
        elif not int(health.processing["requests"].sum()):
            self.tiles["overhead"].value = self._tile_html(TILES["overhead"], formatting.PLACEHOLDER,
                                                           note=NO_OVERHEAD_TIMES)
        else:
            lines = [(KIND_TITLES[kind], " / ".join(formatting.milliseconds(health.processing.loc[kind, p])
                                                    for p in OVERHEAD_PERCENTILES)) for kind in PATH_KINDS]
            self.tiles["overhead"].value = self._tile_html(TILES["overhead"], "", lines=lines)

    def _alert(self, key: str, on: bool) -> None:
        (self.tiles[key].add_class if on else self.tiles[key].remove_class)("aq-tile-alert")

    def _show_failures(self, health: Health, when: str) -> None:
        frame = health.failures_over_time
        failed, requests, rates = frame["failed"].tolist(), frame["requests"].tolist(), frame["failure_rate"].tolist()
        self.failures_chart.update(
            list(frame["bucket"]), {kind: frame[kind].tolist() for kind in FAILURE_KINDS}, rates, health.window.spec,
            window=health.window, tz=health.tz, unrecorded=health.unrecorded, colors=FAILURE_COLORS,
            total=lambda i: f"{formatting.count(failed[i])} of {formatting.count(requests[i])} "
                            f"({formatting.share(_number(rates[i]))})")
        total, all_failed = int(sum(requests)), int(sum(failed))
        rate = formatting.share(all_failed / total) if total else formatting.share(None)
        self.failures_title.value = self._card_title(FAILURES_OVER_TIME_TITLE,
                                                     f"{FAILURE_RATE_LABEL.lower()} {rate} \u00b7 {when}")

    @staticmethod
    def _model_rows(health: Health) -> list[tuple[list[str], str]]:
        """Per model (most requests first): its requests, failures and the percentiles of
        its path kind (a model with both kinds gets a second row for the other)."""
        latency = health.latency_by_model
        rows = []
        for record in health.failures_by_model.to_dict("records"):
            model = record["model"]
            mine = latency[latency["model"].isna()] if formatting.is_missing(model) else latency[latency["model"] == model]
            kinds = mine.sort_values("requests", ascending=False, kind="stable").to_dict("records")
            first = kinds[0] if kinds else None
            percentiles = [formatting.milliseconds(first[p]) if first else formatting.PLACEHOLDER
                           for p in SHOWN_PERCENTILES]
            rows.append(([
                formatting.name(model), KIND_TITLES[first["kind"]] if first else formatting.PLACEHOLDER,
                formatting.count(record["requests"]), *percentiles, formatting.count(record["failed"]),
                formatting.share(_number(record["failure_rate"])), formatting.count(record["in_flight"]),
                formatting.count(record["tokens_unknown"]),
            ], "aq-failing" if record["failed"] else ""))
            for other in kinds[1:]:
                rows.append((["", KIND_TITLES[other["kind"]], formatting.count(other["requests"]),
                              *(formatting.milliseconds(other[p]) for p in SHOWN_PERCENTILES), "", "", "", ""],
                             "aq-subrow"))
        return rows

    @staticmethod
    def _status_rows(health: Health) -> list[tuple[list[str], str]]:
        statuses = health.statuses
        total = int(statuses["requests"].sum())
        rows = []
        for record in statuses.to_dict("records"):
            code = record["status_code"]
            kind = record["kind"]
            rows.append(([NO_STATUS if formatting.is_missing(code) else str(int(code)), kind,
                          formatting.count(record["requests"]),
                          formatting.share(record["requests"] / total if total else None)],
                         f"aq-status-{kind.replace(' ', '-')}"))
        return rows

    def _show_headroom(self, health: Health, role: str) -> None:
        if role == "user":
            # Nothing of it for a standard user: not even an empty card.
            self._bottom.children = (self._status_card,)
            self.near_limit.value = ""
            self.headroom_table.value = ""
            return
        self._bottom.children = (self._status_card, self.headroom_card)
        frame = health.headroom
        if frame is None:
            self.headroom_title.value = self._card_title(HEADROOM_TITLE, NO_LIMITS_NOTE)
            self.near_limit.value = ""
            self.headroom_table.value = ""
            return
        self.headroom_title.value = self._card_title(HEADROOM_TITLE, HEADROOM_NOTE)
        ordered = self.headroom_order(frame)
        near = [record for record in ordered if self.is_near(record)]
        limited = any(has_limit(record[limit]) for record in ordered for _, limit, _ in MEASURES)
        names = ", ".join(f"{formatting.name(record['name'])} ({formatting.share(record['peak_share'])})"
                          for record in near)
        self.near_limit.value = (
            f'<div class="aq-near-title">{html.escape(NEAR_LIMIT_TITLE)}:</div> '
            f'<div class="aq-near-names{" aq-near-some" if near else ""}">{html.escape(names or (NONE_NEAR_LIMIT if limited or not ordered else NO_TOKEN_LIMITS))}</div>'
        )
        rows = []
        for record in ordered:
            has_any = any(has_limit(record[limit]) for _, limit, _ in MEASURES)
            rows.append(([
                f"{formatting.name(record['name'])} #{record['token_id']}",
                *(headroom_cell(record, busiest, limit) for busiest, limit, _ in MEASURES),
                formatting.share(record["peak_share"]) if has_any else formatting.PLACEHOLDER,
            ], "aq-near" if self.is_near(record) else ""))
        self.headroom_table.value = _table(HEADROOM_HEADERS, rows, 1, "aq-headroom-htable")

    @staticmethod
    def is_near(record: dict) -> bool:
        share = _number(record["peak_share"])
        return not math.isnan(share) and share >= NEAR_LIMIT

    @classmethod
    def headroom_order(cls, frame: pd.DataFrame) -> list[dict]:
        """The tokens near a limit first, then the rest; each by largest share of a limit
        (none last), then busiest requests, then id."""
        records = frame.to_dict("records")
        return sorted(records, key=lambda r: (not cls.is_near(r), -np.nan_to_num(_number(r["peak_share"]), nan=-1.0),
                                              -_number(r["busiest_requests"]), r["token_id"]))

    def clear(self) -> None:
        """No figures (a failed refresh): placeholders, empty charts and tables."""
        self.health = None
        for key, label in TILES.items():
            self.tiles[key].value = self._tile_html(label, formatting.PLACEHOLDER)
            self.tiles[key].remove_class("aq-tile-alert")
        self.latency_chart.clear()
        self.failures_chart.clear()
        for table in (self.models_table, self.status_table, self.near_limit, self.headroom_table):
            table.value = ""

    # -- for tests and analyses --------------------------------------------------------

    def tile_texts(self) -> dict[str, str]:
        """Tile label -> the figures shown, as text ("p50 1.0 ms · p95 ..." for the
        percentile tiles)."""
        texts = {}
        for key, label in TILES.items():
            value = self.tiles[key].value
            lines = re.findall(r'<span class="aq-pct-name">(.*?)</span><span class="aq-pct-value">(.*?)</span>', value)
            if lines:
                texts[label] = " \u00b7 ".join(f"{html.unescape(n)} {html.unescape(v)}" for n, v in lines)
            else:
                found = re.search(r'class="aq-tile-value"[^>]*>(.*?)</div>', value)
                texts[label] = html.unescape(found.group(1)) if found else ""
        return texts

    def tile_notes(self) -> dict[str, str]:
        """Tile label -> its side text and small note ("" without)."""
        notes = {}
        for key, label in TILES.items():
            value = self.tiles[key].value
            parts = [html.unescape(p) for p in re.findall(r'class="aq-tile-(?:share|note)"[^>]*>(.*?)</div>', value)]
            notes[label] = " | ".join(parts)
        return notes

    def model_rows(self) -> list[dict[str, str]]:
        return _read_table(self.models_table.value)

    def status_rows(self) -> list[dict[str, str]]:
        return _read_table(self.status_table.value)

    def headroom_rows(self) -> list[dict[str, str]]:
        return _read_table(self.headroom_table.value)

    @property
    def shows_headroom(self) -> bool:
        return self.headroom_card in self._bottom.children
