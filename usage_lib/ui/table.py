"""The top table (orgs, API keys or user_ids) as plain ipywidgets: real DOM, sortable, clickable.

Layout: one CSS grid (`aq-table`) with three children: the header (a box of sort
Buttons), the body (one HTML widget whose rows are ``grid-template-columns: subgrid``
rows at explicit grid lines, so columns line up and size to their content), and the
click targets (one RadioButtons widget over the rows, one option per row, its labels
transparent). A table of 100 rows is thus three widget messages, not hundreds, and
renders in a fraction of a second. Sorting re-renders the body; the rank stays the rank
by requests.

Beside the gateway's columns (issue 14): each row's cost (money, in the prices'
currency) and its change in requests against the previous period ("+12%", "new"), both
sortable; after the ranked rows, the rows that had requests in the previous period and
none now (`Usage.stopped`), greyed and marked "stopped", never opened.
"""

from __future__ import annotations

import html
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import ipywidgets as widgets
import pandas as pd

from usage_lib.render import formatting
from usage_lib.render.labels import (
    CHANGE_TITLE, CLOSED_TOKEN_HINT, COST_TITLE, EMPTY_TEXT, NEW_MARK, NO_ORG_HINT, SERVICE_ACCOUNT_BADGE,
    STOPPED_MARK, STOPPED_TITLE, TOP_COLUMNS, Column, cell_text,
)

ASCENDING, DESCENDING = "\u25b2", "\u25bc"  # the arrows shown in a sorted header

COST_COLUMN = Column("cost", COST_TITLE, numeric=True, css="aq-cost")
CHANGE_COLUMN = Column("change", CHANGE_TITLE, numeric=True, css="aq-change")
#: The header tooltips of the two columns (the others: "Sort by ...").
COLUMN_HINTS = {
    "cost": "Cost at the configured prices (unpriced models left out); sort by cost",
    "change": "Change in requests against the previous period; sort by change",
}
#: The page's columns at each level: the gateway's (`labels.TOP_COLUMNS`) with Cost and
#: Change after the four counts (files and snapshots read the first six as before).
COLUMNS: dict[str, tuple[Column, ...]] = {
    kind: (*columns[:6], COST_COLUMN, CHANGE_COLUMN, *columns[6:]) for kind, columns in TOP_COLUMNS.items()
}
#: The rank cell of a stopped row: it has no rank now.
NO_RANK = "\u2013"


@dataclass
class Row:
    """One table row: raw values (for sorting and callbacks) and the texts shown."""

    values: dict[str, Any]
    texts: dict[str, str]
    can_open: bool
    is_service_account: bool = False
    #: A row of `Usage.stopped` (requests before, none now).
    stopped: bool = False


def _change(record: dict, stopped: bool) -> tuple[float | None, str]:
    """A row's change in requests (for sorting; a new row counts as +infinity) and its text."""
    if stopped:
        return -1.0, STOPPED_MARK
    if "previous_requests" not in record:
        return None, ""
    if bool(record.get("new")):
        return math.inf, NEW_MARK
    change = record.get("change")
    if formatting.is_missing(change):
        return None, ""
    return float(change), formatting.change(change)


def rows_from_frame(top: pd.DataFrame, kind: str, currency: str | None = None, stopped: bool = False) -> list[Row]:
    """`usage.top` (or `usage.stopped`, with `stopped`) -> rows. Tokens show their service
    account's name when they have one; costs are written in `currency` (none: no prices)."""
    rows = []
    for record in top.to_dict("records"):
        is_sa = bool(record.get("is_service_account", False)) if kind == "token" else False
        shown = record.get("display_name") if kind == "token" else record.get("name")
        values = {
            "rank": int(record["rank"]),
            "id": None if formatting.is_missing(record["id"]) else record["id"],
            "name": None if formatting.is_missing(shown) or shown == "" else str(shown),
            "requests": int(record["requests"]),
            "input_tokens": int(record["input_tokens"]),
            "output_tokens": int(record["output_tokens"]),
            "total_tokens": int(record["total_tokens"]),
        }
        if kind == "token":
            values["token_name"] = record.get("name")
            values["owner_email"] = None if formatting.is_missing(record.get("owner_email")) else record["owner_email"]
            values["service_account"] = (
                None if formatting.is_missing(record.get("service_account")) else record["service_account"]
            )
        cost = record.get("cost")
        values["cost"] = None if formatting.is_missing(cost) else cost
        values["change"], change_text = _change(record, stopped)
        texts = {column.key: cell_text(column, values.get(column.key)) for column in TOP_COLUMNS[kind]}
        texts["cost"] = formatting.money(values["cost"], currency)
        texts["change"] = change_text
        if stopped:
            texts["rank"] = NO_RANK
        if kind == "org":
            can_open = values["id"] is not None
        elif kind == "token":
            can_open = bool(record.get("can_open", False))
        else:
            can_open = False
        rows.append(Row(values=values, texts=texts, can_open=can_open and not stopped, is_service_account=is_sa,
                        stopped=stopped))
    return rows


def sort_order(rows: Sequence[Row], key: str, ascending: bool) -> list[int]:
    """Row indexes in display order: by `key`, ties by rank; missing values always last."""
    by_rank = sorted(range(len(rows)), key=lambda i: rows[i].values["rank"])
    present = [i for i in by_rank if not formatting.is_missing(rows[i].values.get(key))]
    missing = [i for i in by_rank if formatting.is_missing(rows[i].values.get(key))]

    def sort_key(i: int):
        value = rows[i].values[key]
        return value.casefold() if isinstance(value, str) else value

    # sorted() is stable, also with reverse=True: ties keep their rank order.
    return sorted(present, key=sort_key, reverse=not ascending) + missing


class TopTable:
    """The sortable, drill-down table. `on_open(row)` is called with the clicked `Row`."""

    _instances = itertools.count(1)

    def __init__(self, on_open: Callable[[Row], None] | None = None) -> None:
        self.on_open = on_open
        self.kind = "org"
        self.rows: list[Row] = []
        #: The stopped rows, shown after the ranked ones in their own order (`Usage.stopped`).
        self.stopped: list[Row] = []
        #: The stopped rows' heading, e.g. "Stopped since the previous 24 hours".
        self.stopped_title = ""
        self.sort_key = "rank"
        self.ascending = True
        self.order: list[int] = []
        self._css_id = f"aq-table-{next(TopTable._instances)}"
        self._header_layout = widgets.Layout()
        self._targets_layout = widgets.Layout()
        self._header_style = widgets.ButtonStyle()
        self._header_buttons: dict[str, widgets.Button] = {}
        self._header = widgets.Box(_dom_classes=("aq-tr", "aq-thead"))
        self.body = widgets.HTML("", _dom_classes=("aq-tbody",))
        self.targets: widgets.RadioButtons | None = None
        self.grid = widgets.Box(_dom_classes=("aq-table", self._css_id))
        self.widget = widgets.Box([self.grid], _dom_classes=("aq-table-scroll",))
        self._build_header()
        self._apply_kind_class()
        self._render()

    # -- public -----------------------------------------------------------------------

    def show(self, top: pd.DataFrame, kind: str, stopped: pd.DataFrame | None = None, currency: str | None = None,
             period: str | None = None) -> None:
        """Replace the rows with `usage.top` of level `kind`, and `usage.stopped` after
        them (under "Stopped since the `period`"); costs in `currency`.

        Another level (orgs, tokens, user_ids) starts in rank order; a refresh of the
        same level keeps the viewer's sort.
        """
        if kind != self.kind:
            self.kind = kind
            self.sort_key, self.ascending = "rank", True
            self._build_header()
            self._apply_kind_class()
        self.rows = rows_from_frame(top, kind, currency)
        self.stopped = rows_from_frame(stopped, kind, currency, stopped=True) if stopped is not None else []
        self.stopped_title = STOPPED_TITLE.format(period=period or "previous period")
        self._render()

    def clear(self) -> None:
        self.rows = []
        self.stopped = []
        self._render()

    def sort_by(self, key: str, ascending: bool | None = None) -> None:
        """Sort by column `key`; without `ascending`, a second call on the same column flips it."""
        if key not in {column.key for column in COLUMNS[self.kind]}:
            raise KeyError(key)
        if ascending is None:
            ascending = not self.ascending if key == self.sort_key else True
        self.sort_key, self.ascending = key, ascending
        self._update_header()
        self._render()

    def displayed(self) -> list[dict[str, str]]:
        """The texts of the rows in display order (what the browser shows)."""
        return [self.rows[i].texts for i in self.order]

    def displayed_rows(self) -> list[Row]:
        return [self.rows[i] for i in self.order]

    def displayed_stopped(self) -> list[dict[str, str]]:
        """The texts of the stopped rows, shown after the ranked ones."""
        return [row.texts for row in self.stopped]

    def click(self, position: int) -> None:
        """Click the row shown at `position`, as the browser does."""
        if self.targets is not None:
            self.targets.value = position

    @property
    def header_buttons(self) -> dict[str, widgets.Button]:
        return self._header_buttons

    @property
    def columns(self) -> tuple[Column, ...]:
        return COLUMNS[self.kind]

    # -- building ---------------------------------------------------------------------

    def _apply_kind_class(self) -> None:
        for kind in COLUMNS:
            self.grid.remove_class(f"aq-kind-{kind}")
        self.grid.add_class(f"aq-kind-{self.kind}")

    def _build_header(self) -> None:
        old = list(self._header_buttons.values())
        self._header_buttons = {}
        for column in COLUMNS[self.kind]:
            classes = ["aq-th"] + (["aq-num"] if column.numeric else []) + (["aq-rank-head"] if column.key == "rank" else [])
            button = widgets.Button(
                description=column.title, tooltip=COLUMN_HINTS.get(column.key, f"Sort by {column.title}"),
                layout=self._header_layout, style=self._header_style, _dom_classes=tuple(classes),
            )
            button.on_click(lambda _button, key=column.key: self.sort_by(key))
            self._header_buttons[column.key] = button
        self._header.children = tuple(self._header_buttons.values())
        for button in old:
            button.close()
        self._update_header()

    def _update_header(self) -> None:
        for column in COLUMNS[self.kind]:
            button = self._header_buttons[column.key]
            arrow = (ASCENDING if self.ascending else DESCENDING) if column.key == self.sort_key else ""
            button.description = f"{column.title} {arrow}".rstrip()
            if arrow:
                button.add_class("aq-sorted")
            else:
                button.remove_class("aq-sorted")

    def hint_for(self, row: Row) -> str | None:
        """Why a row does not open, shown when it is hovered: token rows the viewer may
        not open, and the org row of tokens whose owner has no org (user_id rows are the
        last level: nothing to open, nothing to explain)."""
        if self.kind == "token" and not row.can_open:
            return CLOSED_TOKEN_HINT
        if self.kind == "org" and not row.can_open:
            return NO_ORG_HINT
        return None

    def _cells_html(self, row: Row, hint: str | None = None) -> str:
        """The row's cells; each cell's title is its whole text (cut-off text can be read
        by hovering), followed by the row's `hint` (the innermost title is the one shown)."""
        parts = []
        for position, column in enumerate(COLUMNS[self.kind], start=1):
            text = html.escape(row.texts[column.key])
            classes = ["aq-td", column.css, "aq-num" if column.numeric else ""]
            if column.key == "change" and text:
                classes.append({NEW_MARK: "aq-new", STOPPED_MARK: "aq-stopped-mark"}.get(
                    row.texts["change"], "aq-up" if text.startswith("+") else "aq-down"))
            content = text
            if column.key == "name":
                if row.texts["name"] == formatting.NA:
                    classes.append("aq-na")
                content = f'<span class="aq-name-text">{text}</span>'
                if row.is_service_account:
                    content += f'<span class="aq-badge">{SERVICE_ACCOUNT_BADGE}</span>'
            elif text == formatting.NA:
                classes.append("aq-na")
            title = html.escape(row.texts[column.key] + (f"\n{hint}" if hint else ""), quote=True)
            parts.append(
                f'<div class="{" ".join(c for c in classes if c)}" style="grid-column:{position}" title="{title}">{content}</div>'
            )
        return "".join(parts)

    def _body_html(self) -> str:
        """Every row as a subgrid row at an explicit grid line (line 1 is the header), and
        rules placing the click targets over the rows and turning them off over rows that
        do not open."""
        if not self.rows:
            empty = f'<div class="aq-empty" style="grid-row:2"><div class="aq-empty-text">{EMPTY_TEXT}</div></div>'
            return empty + self._stopped_html(3)
        parts = []
        closed = []
        for line, index in enumerate(self.order, start=2):
            row = self.rows[index]
            opens = row.can_open and self.on_open is not None
            css = "aq-tr aq-row aq-clickable" if opens else "aq-tr aq-row"
            hint = self.hint_for(row)
            title = f' title="{html.escape(hint, quote=True)}"' if hint else ""
            parts.append(f'<div class="{css}" style="grid-row:{line}"{title}>{self._cells_html(row, hint)}</div>')
            if not opens:
                closed.append(f".{self._css_id} .aq-row-targets .widget-radio-box > label:nth-of-type({line - 1})")
        # The targets' box lies over every row: only the targets of rows that open take
        # the pointer, so over the others it reaches the row (and its hover title). While
        # the dashboard loads (`aq-loading`, which turns its panels' pointer events off)
        # they take none either: a click then would reach targets about to be replaced.
        targets = f".{self._css_id} .aq-row-targets"
        rules = [
            f"{targets} {{ grid-row: 2 / span {len(self.order)}; pointer-events: none; }}",
            f"{targets} .widget-radio-box > label {{ pointer-events: auto; }}",
            f".aq-loading {targets} .widget-radio-box > label {{ pointer-events: none; }}",
        ]
        if closed:
            rules.append(f"{', '.join(closed)} {{ pointer-events: none; }}")
        parts.append(f"<style>{' '.join(rules)}</style>")
        parts.append(self._stopped_html(len(self.order) + 2))
        return "".join(parts)

    def _stopped_html(self, line: int) -> str:
        """The stopped rows from grid line `line` on, under their heading: greyed, never
        clickable (no click target reaches them), not `aq-row` (not ranked rows)."""
        if not self.stopped:
            return ""
        parts = [f'<div class="aq-stopped-head" style="grid-row:{line}">{html.escape(self.stopped_title)}</div>']
        for offset, row in enumerate(self.stopped, start=1):
            parts.append(f'<div class="aq-tr aq-stopped" style="grid-row:{line + offset}">{self._cells_html(row)}</div>')
        return "".join(parts)

    def _render(self) -> None:
        """Show the rows in the current order.

        The click targets are one RadioButtons widget laid over the rows (one option per
        row, in display order): two messages for the whole table instead of widgets per
        row. It is a new widget every time: a click the browser sent before the rows
        changed reaches the closed old widget, never the row that took its place.
        """
        self.order = sort_order(self.rows, self.sort_key, self.ascending)
        old = self.targets
        self.body.value = self._body_html()
        targets = None
        if any(self.rows[i].can_open for i in self.order) and self.on_open is not None:
            targets = widgets.RadioButtons(
                options=[(f"Open {self.rows[i].texts['name']}", position) for position, i in enumerate(self.order)],
                value=None,
                layout=self._targets_layout,
                _dom_classes=("aq-row-targets",),
            )
            targets.observe(self._clicked, names="value")
        self.targets = targets
        self.grid.children = (self._header, self.body) + ((targets,) if targets is not None else ())
        if old is not None:
            old.close()

    def _clicked(self, change) -> None:
        position = change["new"]
        # A click on targets that were replaced meanwhile belongs to rows that are gone.
        if position is None or self.on_open is None or change["owner"] is not self.targets:
            return
        row = self.rows[self.order[position]]
        if row.can_open:
            self.on_open(row)
