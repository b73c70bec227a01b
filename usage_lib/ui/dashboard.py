"""The dashboard page: filters, metric tiles, the charts and the top table, as ipywidgets.

Issue 14 adds, around the gateway's seven tiles, two charts and table (unchanged): a
Cost tile and on every tile its change against the previous period; a switch over the
time chart (Requests | Tokens | Models | Cost: tokens, requests by model and cost per
bucket) and over the models chart (Requests | Cost); a Cost and a Change column in the
top table, and the rows that stopped after it.

Data flows one way: `Settings` (where, as whom) and the requested `Selection` -> one
`compute_usage` call per refresh -> `Usage` frames -> widgets. Widgets never build SQL
and never decide who may see what: every change (org, span, top-k, time zone, a row
click, a back button) only updates the *requested* selection and refreshes; the core checks it
against the viewer's role, and the widgets then show the *effective* scope it returns
(`usage.scope`), so a forged org or token shows the fallback, not more data.

Issue 15 adds a second section, Health (`ui.health`), chosen with the "Usage | Health"
switch at the top and kept in the address (`view=health`). Only the section shown is
computed: `compute_usage` while Usage is shown, `compute_health` while Health is, on the
same selection and viewer, on every refresh (controls, Back and Forward, auto-refresh).
Switching to a section whose figures are of another selection (or of none) refreshes
it; otherwise its figures are shown as they were. Never two computations at once.

In a notebook::

    from usage_lib.settings import Settings
    from usage_lib.ui.dashboard import show_dashboard
    dashboard = show_dashboard(Settings(db_url="sqlite:///demo/demo.sqlite3", viewer="admin@acme.example"))
    dashboard.usage.top                   # the frames behind what is shown
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import logging
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import ipywidgets as widgets
from IPython.display import display
from ipywidgets.widgets.widget_string import HTMLStyle

from usage_lib.core.spans import SPANS, parse_time, range_window, zone
from usage_lib.core.health import NO_PROCESSING_TIME_NOTICE, Health, compute_health
from usage_lib.core.urlstate import (
    HEALTH_SECTION, REFRESH_OFF, SECTIONS, USAGE_SECTION, query_for, refresh_or_off, selection_from_query,
    zone_or_default,
)
from usage_lib.core.prices import PriceBook
from usage_lib.core.access import Scope
from usage_lib.core.spans import Window
from usage_lib.core.usage import OTHER_MODELS, TOP_CHOICES, Selection, Usage, compute_usage, describe_error
from usage_lib.errors import UsageError
from usage_lib.gateway.db import Database
from usage_lib.render import formatting
from usage_lib.render.labels import COST_TILE, FAILED_SHARE, ROLE_NAMES, TILES, TOP_TITLES, VS_PREVIOUS, previous_period
from usage_lib.settings import Settings
from usage_lib.ui import charts
from usage_lib.ui.addressbar import AddressBar
from usage_lib.ui.autorefresh import Ticker, refresh_options
from usage_lib.ui.export import ExportControl
from usage_lib.ui.health import HealthSection
from usage_lib.ui.table import Row, TopTable
from usage_lib.ui.zonepicker import BrowserZone, zone_options

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------

STYLESHEET_PATH = Path(__file__).with_name("dashboard.css")


def _stylesheet() -> str:
    return f"<style>{STYLESHEET_PATH.read_text(encoding='utf-8')}</style>"


Compute = Callable[..., Usage]
ComputeHealth = Callable[..., Health]

#: Every tile: the gateway's seven, then the cost tile (its figure is money).
ALL_TILES = (*((key, label) for key, label, _ in TILES), COST_TILE)
#: The cost tile's note when no model has a price.
NO_PRICES_NOTE = "no prices configured"
#: A custom range's tiles compare with the same length of time before it.
CUSTOM_PREVIOUS = "previous period"
#: The time chart's views (switch label, key) and each one's card title.
TIME_VIEWS = (("Requests", "requests"), ("Tokens", "tokens"), ("Models", "models"), ("Cost", "cost"))
TIME_TITLES = {
    "requests": "Requests Over Time", "tokens": "Tokens Over Time",
    "models": "Requests by Model Over Time", "cost": "Cost Over Time",
}
#: The models chart's views and titles.
MODEL_VIEWS = (("Requests", "requests"), ("Cost", "cost"))
MODEL_TITLES = {"requests": "Requests by Model", "cost": "Cost by Model"}
#: The sections' switch (label, key) and what a failed refresh of each says.
SECTION_VIEWS = (("Usage", USAGE_SECTION), ("Health", HEALTH_SECTION))
COULD_NOT_LOAD = {USAGE_SECTION: "Could not load usage.", HEALTH_SECTION: "Could not load health."}
#: How many models "requests by model over time" shows one by one (the rest: "other").
TOP_MODELS_OVER_TIME = 5


class Dashboard:
    """The dashboard of one viewer. `refresh()` recomputes everything from the core.

    `selection` is what is *requested* (org, span, token, top); after each refresh it
    becomes the scope the core actually showed. `tz` is the viewer's time zone (from the
    address or the zone picker; default: the operator's, `settings.view.tz`): an unknown
    one falls back to the operator's with a notice.

    `refresh` is the auto-refresh asked for (`urlstate.REFRESH_INTERVALS`, or off, the
    default; an unknown one is off, with a notice): the page's `ticker` then refreshes the
    view shown, on a new as-of time. A failed auto-refresh keeps the figures on screen
    and says why above them, once.

    `section` is the section shown (`urlstate.SECTIONS`; default the usage one): its
    figures are `usage` or `health`, each computed only while its section is shown
    (`compute`, `compute_health`).
    """

    def __init__(
        self,
        settings: Settings,
        selection: Selection | None = None,
        *,
        viewer: str | None = None,
        problem: str | None = None,
        database: Database | None = None,
        models: Sequence[str] | None = None,
        compute: Compute = compute_usage,
        tz: str | None = None,
        prices: PriceBook | None = None,
        refresh: str = REFRESH_OFF,
        compute_health: ComputeHealth = compute_health,
        section: str = USAGE_SECTION,
    ) -> None:
        self.settings = settings
        #: Who is looking (default: the settings' fixed viewer).
        self.viewer = viewer or settings.viewer
        #: A configuration problem shown instead of figures.
        self.problem = problem or ("; ".join(settings.problems) or None)
        base = selection or settings.view
        #: Why the zone asked for is not shown (an unknown one), or None.
        self.zone_message: str | None = None
        self.selection = dataclasses.replace(base, tz=self._checked_zone(tz or settings.view.tz),
                                             now=settings.view.now)
        #: Why the auto-refresh asked for is off (an unknown interval), or None.
        self.refresh_message: str | None = None
        #: The auto-refresh chosen: off or a key of `urlstate.REFRESH_INTERVALS`.
        self.auto_refresh = self._checked_refresh(refresh)
        self.usage: Usage | None = None
        #: The section shown, and the Health section's figures (None: none yet, or failed).
        self.section = section if section in SECTIONS else USAGE_SECTION
        self.health: Health | None = None
        #: Per section: the selection its figures on hand were computed for (adopted).
        self._shown: dict[str, Selection] = {}
        self.error: str | None = None
        self.timings: dict[str, float] = {}
        self._db = database
        self._archive = None
        self._models = models
        self._models_loaded = database is not None or models is not None
        self._prices: PriceBook | None = prices
        #: The charts' views shown (`TIME_VIEWS`, `MODEL_VIEWS`).
        self.time_view = "requests"
        self.model_view = "requests"
        self._compute = compute
        self._compute_health = compute_health
        self._multipliers: dict[str, float] | None = None
        self._busy = False
        self._syncing = False
        #: The refresh under way is a history step (a drill-down): see `select(push=...)`.
        self._push = False
        self._build()

    # -- widgets ----------------------------------------------------------------------

    def _html(self, value: str = "", *css: str) -> widgets.HTML:
        return self._box(widgets.HTML, value, *css)

    def _box(self, kind: type[widgets.DOMWidget], content: Any, *css: str) -> widgets.DOMWidget:
        """`kind(content)` sharing the dashboard's one Layout (and HTML style).

        Every widget model costs the browser time at first paint; these never change
        their layout, so one model serves them all (173 -> 115 models). Widgets whose
        layout changes (the back buttons, the models chart) keep their own.
        """
        extra = {"style": self._text_style} if kind is widgets.HTML else {}
        widget = kind(content, layout=self._plain_layout, **extra)
        for name in css:
            widget.add_class(name)
        return widget

    def _card(self, title: widgets.Widget, body: widgets.Widget, css: str) -> widgets.VBox:
        return self._box(widgets.VBox, [title, body], "aq-card", css)

    def _build(self) -> None:
        self._plain_layout = widgets.Layout()
        self._text_style = HTMLStyle()
        self.title = self._html(self._title_html(None), "aq-title")
        self.subtitle = self._html("", "aq-subtitle")
        self.spinner = self._html('<div class="aq-spinner-ring"></div><span>Loading\u2026</span>', "aq-spinner")
        heading = self._box(widgets.VBox, [self.title, self.subtitle], "aq-heading")
        self.export = ExportControl(self)
        self.header = self._box(widgets.HBox, [heading, self.spinner, self.export], "aq-header")

        self.org_dropdown = widgets.Dropdown(options=[], layout=widgets.Layout(width="auto"))
        self.org_dropdown.add_class("aq-org-select")
        self.org_dropdown.observe(self._on_org, names="value")
        self.org_label = self._html("", "aq-org-name")
        self.org_control = self._box(widgets.Box, [self.org_label], "aq-control-body")
        self.span_toggle = widgets.ToggleButtons(
            # No preset selected for a custom range (from the picker or the URL).
            options=list(SPANS),
            value=None if self.selection.custom else self.selection.span if self.selection.span in SPANS else "1d",
            tooltips=[SPANS[s].label for s in SPANS],
        )
        self.span_toggle.add_class("aq-segmented")
        self.span_toggle.add_class("aq-span")
        self.span_toggle.observe(self._on_span, names="value")
        self.top_toggle = widgets.ToggleButtons(
            options=[(str(k), k) for k in TOP_CHOICES],
            value=self.selection.top if self.selection.top in TOP_CHOICES else TOP_CHOICES[-1],
            tooltips=[f"Show the top {k} rows" for k in TOP_CHOICES],
        )
        self.top_toggle.add_class("aq-segmented")
        self.top_toggle.add_class("aq-top")
        self.top_toggle.observe(self._on_top, names="value")
        self.range_start = widgets.NaiveDatetimePicker(value=None, tooltip="Start (included)")
        self.range_end = widgets.NaiveDatetimePicker(value=None, tooltip="End (excluded)")
        for picker, css in ((self.range_start, "aq-range-start"), (self.range_end, "aq-range-end")):
            picker.add_class("aq-range-input")
            picker.add_class(css)
        self._show_range(self.selection.start, self.selection.end)
        self.range_apply = widgets.Button(description="Apply", tooltip="Show this range")
        self.range_apply.add_class("aq-range-apply")
        self.range_apply.on_click(lambda _b: self._apply_range())
        #: Why the last range asked for was not applied (shown as a notice), or None.
        self.range_message: str | None = None
        self.range_zone = self._html(self._range_zone_html(self.selection.tz))
        # The zone picker: the operator's zone, the browser's (once it said), every IANA zone.
        self.browser_zone = BrowserZone()
        self.browser_zone.observe(self._on_browser_zone, names="zone")
        self.zone_dropdown = widgets.Dropdown(
            options=zone_options(self.settings.view.tz), value=self.selection.tz, layout=self._plain_layout,
        )
        self.zone_dropdown.add_class("aq-zone-select")
        self.zone_dropdown.observe(self._on_zone, names="value")
        self.refresh_dropdown = widgets.Dropdown(options=refresh_options(), value=self.auto_refresh,
                                                 layout=self._plain_layout)
        self.refresh_dropdown.add_class("aq-refresh-select")
        self.refresh_dropdown.observe(self._on_refresh_choice, names="value")
        # Shown beside `widget`, like the address bar.
        self.ticker = Ticker()
        self.ticker.follow(self.auto_refresh)
        self.ticker.on_tick(self._on_tick)
        self.range_control = self._box(
            widgets.HBox,
            [
                self.range_start,
                self._html('<span class="aq-range-sep">to</span>'),
                self.range_end,
                self.range_zone,
                self.range_apply,
            ],
            "aq-control-body", "aq-range",
        )
        self.as_of = self._html("", "aq-asof")
        spacer = self._box(widgets.Box, [], "aq-spacer")
        self.filters = self._box(
            widgets.HBox,
            [
                self._control("Organization", self.org_control, "aq-control-org"),
                self._control("Time Frame", self.span_toggle, "aq-control-span"),
                self._control("Custom Range", self.range_control, "aq-control-range"),
                self._control("Top", self.top_toggle, "aq-control-top"),
                self._control("Time Zone", self.zone_dropdown, "aq-control-zone"),
                self._control("Auto-refresh", self.refresh_dropdown, "aq-control-refresh"),
                spacer,
                self.as_of,
            ],
            "aq-filters",
        )

        self.error_box = self._html("", "aq-error")
        self.retry_button = widgets.Button(description="Try again", tooltip="Load the figures again")
        self.retry_button.add_class("aq-retry")
        self.retry_button.on_click(lambda _b: self.refresh())
        error_row = self._box(widgets.HBox, [self.error_box, self.retry_button], "aq-error-row")
        self.notice_box = self._html("", "aq-notices")
        self.messages = self._box(widgets.VBox, [error_row, self.notice_box], "aq-messages")

        self.tiles = {
            key: self._html(self._tile_html(label, formatting.PLACEHOLDER), "aq-tile", f"aq-tile-{key.replace('_', '-')}")
            for key, label in ALL_TILES
        }
        self.metrics_bar = self._box(widgets.GridBox, list(self.tiles.values()), "aq-tiles")

        self.timeseries_chart = charts.TimeseriesChart()
        self.tokens_chart = charts.StackedTimeChart("aq-tokens-time", "Tokens", tick_format="~s")
        self.model_time_chart = charts.StackedTimeChart("aq-models-time", "Requests")
        self.cost_chart = charts.StackedTimeChart("aq-cost-time", charts.cost_label(None), money=True)
        self.models_chart = charts.ModelsChart()
        self.timeseries_title = self._html(self._card_title("Requests Over Time"), "aq-card-title")
        self.models_title = self._html(self._card_title("Requests by Model"), "aq-card-title")
        self.time_switch = self._switch(TIME_VIEWS, "aq-time-switch", self._on_time_view)
        self.model_switch = self._switch(MODEL_VIEWS, "aq-model-switch", self._on_model_view)
        self.time_body = self._box(widgets.Box, [self.timeseries_chart.figure], "aq-chart-body")
        time_head = self._box(widgets.HBox, [self.timeseries_title, self.time_switch], "aq-card-head")
        models_head = self._box(widgets.HBox, [self.models_title, self.model_switch], "aq-card-head")
        timeseries_card = self._card(time_head, self.time_body, "aq-card-timeseries")
        models_card = self._card(models_head, self.models_chart.figure, "aq-card-models")
        chart_column = self._box(widgets.VBox, [timeseries_card, models_card], "aq-chart-column")

        self.table = TopTable(on_open=self._on_row)
        self.table_title = self._html(self._card_title(TOP_TITLES["org"]), "aq-card-title")
        self.all_orgs_button = widgets.Button(description="Show all orgs", icon="", tooltip="Back to every organization")
        self.all_orgs_button.add_class("aq-back")
        self.all_orgs_button.add_class("aq-back-orgs")
        self.all_orgs_button.on_click(lambda _b: self._back_to_orgs())
        self.all_tokens_button = widgets.Button(description="Show all tokens", tooltip="Back to every API key of the org")
        self.all_tokens_button.add_class("aq-back")
        self.all_tokens_button.add_class("aq-back-tokens")
        self.all_tokens_button.on_click(lambda _b: self._back_to_tokens())
        self.back_buttons = self._box(widgets.HBox, [self.all_tokens_button, self.all_orgs_button], "aq-back-bar")
        table_head = self._box(widgets.HBox, [self.table_title, self.back_buttons], "aq-card-head")
        table_card = self._card(table_head, self.table.widget, "aq-card-table")

        self.main = self._box(widgets.GridBox, [chart_column, table_card], "aq-main")
        self.panels = self._box(widgets.VBox, [self.metrics_bar, self.main], "aq-panels")
        self.health_section = HealthSection()

        self.section_switch = widgets.ToggleButtons(
            options=list(SECTION_VIEWS), value=self.section, layout=self._plain_layout,
            tooltips=["Requests, tokens and cost", "Response times, failures and rate-limit headroom"])
        self.section_switch.add_class("aq-sections-switch")
        self.section_switch.observe(self._on_section, names="value")
        sections = self._box(widgets.HBox, [self.section_switch], "aq-sections")

        self._page_top = [self._html(_stylesheet(), "aq-style"), self.header, sections, self.filters, self.messages]
        self.widget = self._box(widgets.VBox, [], "aq-dashboard")
        self._show_section_widgets()
        self._set_back_buttons()
        # Shown beside `widget`, not in it: snapshots embed `widget` alone.
        self.address = AddressBar()
        self.address.on_restore(self._on_restore)

    def _switch(self, views, css: str, handler) -> widgets.ToggleButtons:
        """A small segmented switch in a card's head, choosing the card's view."""
        switch = widgets.ToggleButtons(options=list(views), value=views[0][1], layout=self._plain_layout, tooltips=[
            f"Show {label.lower()}" for label, _ in views])
        switch.add_class("aq-segmented")
        switch.add_class("aq-switch")
        switch.add_class(css)
        switch.observe(handler, names="value")
        return switch

    @staticmethod
    def _range_zone_html(tz: str) -> str:
        return f'<span class="aq-range-zone" title="times are read in this zone">{html.escape(tz)}</span>'

    def _control(self, label: str, body: widgets.Widget, css: str) -> widgets.VBox:
        label_html = self._html(f'<span class="aq-control-label">{label}</span>')
        return self._box(widgets.VBox, [label_html, body], "aq-control", css)

    @staticmethod
    def _card_title(text: str, note: str = "") -> str:
        note_html = f'<span class="aq-card-note">{html.escape(note)}</span>' if note else ""
        return f'<h3>{html.escape(text)}</h3>{note_html}'

    @staticmethod
    def _tile_html(label: str, value: str, share: str | None = None, note: str | None = None,
                   change: str = "", change_title: str = "", direction: str = "") -> str:
        """A tile: its label, its value and, for failed requests, their share of the total
        (an element of its own, beside the value: readers of `.aq-tile-value` get the count);
        a small `note` under it (the cost tile's unpriced share) and its `change` against
        the previous period ("+12% vs previous 24 hours"; `direction` "up", "down" or "")."""
        # The length lets the stylesheet shrink long values (billions) onto one line.
        value_html = f'<div class="aq-tile-value" style="--aq-len: {max(len(value), 1)}">{html.escape(value)}</div>'
        if share is not None:
            value_html = (
                f'<div class="aq-tile-figure">{value_html}'
                f'<div class="aq-tile-share">{html.escape(share)}</div></div>'
            )
        extra = ""
        if note:
            extra += f'<div class="aq-tile-note" title="{html.escape(note, quote=True)}">{html.escape(note)}</div>'
        if change:
            arrow = {"up": "\u25b2", "down": "\u25bc"}.get(direction)
            arrow_html = f'<span class="aq-change-arrow">{arrow}</span> ' if arrow else ""
            amount, _, period = change.partition(" ")
            extra += (
                f'<div class="aq-tile-change aq-change-{direction or "flat"}" title="{html.escape(change_title, quote=True)}">'
                f'<span class="aq-change-amount">{arrow_html}{html.escape(amount)}</span> '
                f'<span class="aq-change-period">{html.escape(period)}</span></div>'
            )
        return f'<div class="aq-tile-label">{html.escape(label)}</div>{value_html}{extra}'

    @staticmethod
    def _period(usage: Usage) -> str:
        """What the changes compare with, in words: "previous 24 hours"; "previous period"
        for a custom range."""
        window = usage.window
        return CUSTOM_PREVIOUS if window.custom else previous_period(window.spec)

    def _tile_change(self, usage: Usage, key: str) -> tuple[str, str, str]:
        """(text, hover title, direction) of a tile's change; empty when there is none."""
        fraction = usage.change(key)
        text = formatting.change(fraction)
        if not text or usage.previous is None:
            return "", "", ""
        previous = usage.previous
        formats = {name: fmt for name, _, fmt in TILES}
        before = (formatting.money(previous.cost.total, previous.cost.currency) if key == "cost"
                  else formats[key](previous.metrics.as_dict()[key]))
        title = (f"{before} from {formatting.as_of(previous.window.start, usage.tz)} "
                 f"to {formatting.as_of(previous.window.until, usage.tz)}")
        direction = "up" if text.startswith("+") and text != "+0%" else "down" if text.startswith("-") else ""
        return VS_PREVIOUS.format(change=text, period=self._period(usage)), title, direction

    @staticmethod
    def _failed_share(failed: int, total: int) -> str | None:
        """``0.4% of total``; ``<0.1%`` for a few in very many; nothing without requests."""
        if not total:
            return None
        percent = 100.0 * failed / total
        text = "<0.1%" if 0 < percent < 0.05 else f"{percent:.1f}%"
        return FAILED_SHARE.format(share=text)

    @staticmethod
    def _title_html(scope: Scope | None) -> str:
        token = scope.token if scope is not None else None
        suffix = ""
        if token is not None:
            badge = ' <span class="aq-badge">Service Account</span>' if token.service_account_id is not None else ""
            suffix = f'<span class="aq-title-token">\u00b7 {html.escape(token.display_name)}{badge}</span>'
        return f'<div class="aq-brand">Aqueduct AI Gateway</div><h1>Usage Dashboard{suffix}</h1>'

    @property
    def controls(self) -> tuple[widgets.Widget, ...]:
        return (
            self.org_dropdown, self.span_toggle, self.range_start, self.range_end, self.range_apply, self.top_toggle,
            self.zone_dropdown, self.all_orgs_button, self.all_tokens_button, self.retry_button,
            self.time_switch, self.model_switch, self.section_switch,
        )

    # -- the sections ------------------------------------------------------------------

    def _show_section_widgets(self) -> None:
        """Put the section shown under the page's top (the other one leaves the page: its
        charts are drawn afresh, at their size, when it comes back)."""
        body = self.health_section.widget if self.section == HEALTH_SECTION else self.panels
        children = (*self._page_top, body)
        if self.widget.children != children:
            self.widget.children = children
        for section in SECTIONS:
            css = f"aq-section-{section}"
            (self.widget.add_class if section == self.section else self.widget.remove_class)(css)
        # The files of Export are the usage figures'.
        self.export.layout.display = "none" if self.section == HEALTH_SECTION else None

    def _figures(self) -> Usage | Health | None:
        """The figures of the section shown (None: none yet, or its last refresh failed)."""
        return self.health if self.section == HEALTH_SECTION else self.usage

    def _on_section(self, change) -> None:
        if not self._syncing and change["new"] is not None:
            self.show_section(change["new"])

    def show_section(self, section: str) -> Usage | Health | None:
        """Show `section` (`urlstate.SECTIONS`; the address keeps it). Its figures are
        computed now when they are of another selection than the one shown (or there are
        none); otherwise they are shown as they were. Ignored while a refresh runs."""
        if section not in SECTIONS:
            return self._figures()
        if self._busy:
            self._sync_section_switch()
            return self._figures()
        self.section = section
        self._sync_section_switch()
        self._show_section_widgets()
        figures = self._figures()
        if figures is None or self._shown.get(section) != self.selection:
            self.refresh()
        else:
            self.error = None
            self._render_heading(figures.scope, figures.window, figures.tz)
            self.error_box.value = ""
            self.widget.remove_class("aq-failed")
            self._show_address(figures.tz)
            self._show_notices()
            self._set_back_buttons()
        return self._figures()

    def _sync_section_switch(self) -> None:
        syncing, self._syncing = self._syncing, True
        try:
            self.section_switch.value = self.section
        finally:
            self._syncing = syncing

    # -- requests from the page -------------------------------------------------------

    def select(self, *, org: object = ..., span: str | None = None, token: object = ..., top: int | None = None,
               start: datetime | str | None = ..., end: datetime | str | None = ...,
               tz: str | None = None, push: bool = False) -> Usage | None:
        """Request another view and refresh. Unknown or forbidden values fall back (the core decides).

        With `push` (a drill-down or a way back up) the new view is a step in the browser's
        history, so Back returns to the one before; otherwise (filters) the address is
        replaced. Ignored while a refresh runs (its result replaces the request anyway).

        A span replaces a custom range; `start` and `end` (datetimes or ISO 8601 text, read
        in the dashboard's zone without an offset) ask for one instead of the span. A range
        that cannot be shown (one of the two missing, `start >= end`, shorter than a minute,
        ending after now) is not requested: `range_message` and a notice say why, and the
        figures shown stay.

        `tz` asks for another time zone (buckets, labels and the range's wall clock
        follow it); an unknown one shows the operator's, with a notice (`zone_message`).
        """
        if self._busy:
            return self.usage
        changes: dict[str, Any] = {}
        self.zone_message = None
        if tz is not None:
            # Checked first: a range without an offset is read in the zone asked for.
            changes["tz"] = self._checked_zone(tz)
        if start is not ... or end is not ...:
            start = None if start is ... else start
            end = None if end is ... else end
            problem = self._range_problem(start, end, changes.get("tz", self.selection.tz))
            if problem is not None:
                self._refuse_range(problem)
                return self.usage
            changes.update(start=start, end=end)
        elif span is not None:
            changes.update(start=None, end=None)
        self._push = push
        if org is not ...:
            changes["org"] = org
        if token is not ...:
            changes["token"] = token
        if span is not None:
            changes["span"] = span
        if top is not None:
            changes["top"] = top
        self.selection = dataclasses.replace(self.selection, **changes)
        return self.refresh()

    def _on_org(self, change) -> None:
        if self._syncing or change["new"] is None:
            return
        self.select(org=change["new"], token=None)

    def _on_span(self, change) -> None:
        if not self._syncing and change["new"] is not None:
            self.select(span=change["new"])

    def _apply_range(self) -> None:
        """The Apply button: request the range in the two inputs (wall-clock times in the
        dashboard's zone)."""
        if not self._busy:
            self.select(start=self.range_start.value, end=self.range_end.value)

    def _range_problem(self, start: object, end: object, tz_name: str | None = None) -> str | None:
        """Why the core would refuse the range `start`-`end` (read in `tz_name`, default the
        dashboard's zone) now (its own one-line message), or None."""
        if start in (None, "") or end in (None, ""):
            return "a custom range needs both start and end"
        try:
            tz = zone(tz_name or self.selection.tz)
            now = self.selection.now or datetime.now(timezone.utc)
            range_window(start, end, now if now.tzinfo is not None else now.replace(tzinfo=tz), tz)
        except UsageError as exc:
            return str(exc)
        return None

    def _refuse_range(self, message: str) -> None:
        log.info("range not applied: %s", message)
        self.range_message = message
        self._show_notices()

    def _show_range(self, start: object, end: object) -> None:
        """Fill the two inputs with a range (wall clock in the dashboard's zone); what does
        not parse leaves its input empty."""
        for picker, value in ((self.range_start, start), (self.range_end, end)):
            try:
                tz = zone(self.selection.tz)
                moment = parse_time(value, tz, "time").astimezone(tz).replace(tzinfo=None) if value else None
            except (UsageError, ValueError, OverflowError):
                moment = None
            picker.value = moment

    def _on_top(self, change) -> None:
        if not self._syncing:
            self.select(top=change["new"])

    def _on_zone(self, change) -> None:
        if not self._syncing and change["new"] is not None:
            self.select(tz=change["new"])

    def _checked_zone(self, requested: object) -> str:
        """`requested` if it is a zone to show, else the operator's (and `zone_message`
        says why, on record like the core's fallbacks)."""
        tz, note = zone_or_default(requested, self.settings.view.tz)
        if note is not None:
            log.warning("viewer %s: %s", self.viewer, note)
            self.zone_message = note
        return tz

    def _on_browser_zone(self, _change=None) -> None:
        """The browser said its zone: offer it second in the picker (the choice stays)."""
        options = zone_options(self.settings.view.tz, self.browser_zone.known_zone)
        if list(self.zone_dropdown.options) == options:
            return
        syncing, self._syncing = self._syncing, True
        try:
            with self.zone_dropdown.hold_sync():
                self.zone_dropdown.options = options
                self.zone_dropdown.value = self.selection.tz
        finally:
            self._syncing = syncing

    def _checked_refresh(self, requested: object) -> str:
        """`requested` if it is an auto-refresh to run, else off (and `refresh_message` says why)."""
        choice, note = refresh_or_off(requested)
        if note is not None:
            log.warning("viewer %s: %s", self.viewer, note)
            self.refresh_message = note
        return choice

    def _on_refresh_choice(self, change) -> None:
        """The auto-refresh control: tick at its interval and keep it in the address (the
        view shown stays: no refresh now)."""
        self.refresh_message = None
        self.auto_refresh = self._checked_refresh(change["new"])
        self.ticker.follow(self.auto_refresh)
        figures = self._figures()
        if figures is not None:
            self._show_address(figures.tz)
        self._show_notices()

    def _on_tick(self) -> None:
        """The ticker asks for a refresh: the view shown, on a new as-of time (none while
        a refresh runs, nor with auto-refresh off)."""
        if not self._busy and self.auto_refresh != REFRESH_OFF:
            self.refresh(auto=True)

    def _on_row(self, row: Row) -> None:
        if self._busy or self.usage is None or not row.can_open:
            return
        if self.table.kind == "org":
            self.select(org=row.values["id"], token=None, push=True)
        elif self.table.kind == "token":
            self.select(token=row.values["id"], push=True)

    def _back_to_orgs(self) -> None:
        if not self._busy:
            self.select(org="all", token=None, push=True)

    def _back_to_tokens(self) -> None:
        if not self._busy:
            self.select(token=None, push=True)

    def _on_restore(self, query: str) -> None:
        """Back or Forward in the browser: show the view of that history entry (a query
        from the page, checked by the core like any other request)."""
        if self._busy:
            return
        # An entry without `tz` is in the operator's zone (`query_for` leaves it out).
        wanted = selection_from_query(query, dataclasses.replace(self.selection, token=None, tz=self.settings.view.tz))
        if wanted.custom:
            self.select(org=wanted.org, token=wanted.token, top=wanted.top, start=wanted.start, end=wanted.end,
                        tz=wanted.tz)
        else:
            self.select(org=wanted.org, span=wanted.span, token=wanted.token, top=wanted.top, tz=wanted.tz)

    # -- refresh ----------------------------------------------------------------------

    def _database(self) -> tuple[Database, Sequence[str] | None, PriceBook]:
        """The database, the router config's models and the prices, each loaded once (a
        bad router config or prices file raises its one-line `UsageError`, and is read
        again on the next refresh)."""
        if self._db is None:
            self._db = self.settings.open_database()
        if self._archive is None and self.settings.archive_url:
            self._archive = self.settings.archive()
        if not self._models_loaded:
            self._models = self.settings.models()
            self._models_loaded = True
        if self._prices is None:
            self._prices = self.settings.prices()
        if self._multipliers is None and self.section == HEALTH_SECTION:
            self._multipliers = self.settings.multipliers()
        return self._db, self._models, self._prices

    def refresh(self, *, auto: bool = False) -> Usage | None:
        """Recompute the section shown: every usage panel with one `compute_usage` call,
        or the Health section with one `compute_health` call; errors become a message.
        A failed `auto` refresh (the ticker's) keeps the figures shown (`_show_stale`).
        Returns the usage figures (`health` holds the others)."""
        if self._busy:
            return self.usage
        self.export.reset()
        self._busy = True
        started = time.perf_counter()
        # The zone of the figures adopted (None: none yet): the address shows them after the panels.
        shown_tz: str | None = None
        self._set_loading(True)
        counted = self._db.statements.count if self._db is not None else 0
        try:
            if self.problem:
                raise UsageError(self.problem)
            if not self.viewer:
                raise UsageError("no viewer configured")
            db, models, prices = self._database()
            if self.section == HEALTH_SECTION:
                health = self._compute_health(db, self.viewer, self.selection, models=models,
                                              multipliers=self._multipliers, archive=self._archive)
                computed = time.perf_counter()
                self.health = health
                # Health has no top table: the top asked for stays (checked as the core checks it).
                self._adopt(health.scope, health.window, health.tz, self.selection.normalised()[0].top)
                shown_tz = health.tz
                self._render_health(health)
            else:
                usage = self._compute(db, self.viewer, self.selection, models=models, archive=self._archive,
                                      prices=prices)
                computed = time.perf_counter()
                self.usage = usage
                self._adopt(usage.scope, usage.window, usage.tz, usage.top_k)
                shown_tz = usage.tz
                self._render(usage)
            self._shown[self.section] = self.selection
            # The address follows the view once every panel of it is sent (rows, click
            # targets and all), before the page leaves its loading state: a page that waits
            # for the address never meets the view before it.
            self._show_address(shown_tz)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a readable message
            if shown_tz is not None:  # adopted, then drawing failed: the address still follows
                with contextlib.suppress(Exception):
                    self._show_address(shown_tz)
            message = describe_error(exc)
            if auto and message == self.error:
                log.debug("auto-refresh failed again: %s", message)
            elif isinstance(exc, UsageError):
                log.warning("refresh failed: %s", exc)
            else:
                log.exception("refresh failed")
            if auto and self._figures() is not None:
                self._show_stale(message)
            else:
                self._show_error(message)
            computed = time.perf_counter()
        finally:
            self._set_loading(False)
            self._busy = False
            self._push = False
        finished = time.perf_counter()
        self.timings = {"compute_s": computed - started, "render_s": finished - computed, "total_s": finished - started}
        statements = (self._db.statements.count if self._db is not None else 0) - counted
        log.debug("refresh of %s %s: compute %.3f s, widgets %.3f s, %d gateway statements", self.viewer,
                  self.selection, self.timings["compute_s"], self.timings["render_s"], statements)
        return self.usage

    def _set_loading(self, loading: bool) -> None:
        # First on both edges: the ticker stops at once, and is free again when the page
        # shows the refresh done.
        self.ticker.busy = loading
        if loading:
            self.widget.add_class("aq-loading")
        else:
            self.widget.remove_class("aq-loading")
        for control in self.controls:
            control.disabled = loading

    def _adopt(self, scope: Scope, window: Window, tz: str, top: int) -> None:
        """Take the effective scope (of the figures just computed: `scope`, `window`, in
        zone `tz`, `top` rows) as the new request, and make the controls show it."""
        self.error = None
        self.selection = dataclasses.replace(
            self.selection,
            org="all" if scope.org is None else scope.org.id,
            token=None if scope.token is None else scope.token.id,
            # A custom range keeps the last preset asked for (not a span) and the range shown.
            span=self.selection.span if window.custom else window.span,
            start=window.start if window.custom else None,
            end=window.until,
            top=top,
        )
        self._syncing = True
        try:
            if scope.viewer.role == "admin":
                options = [("All", "all")] + [(org.name, org.id) for org in scope.org_choices if org is not None]
                if list(self.org_dropdown.options) != options:
                    self.org_dropdown.options = options
                self.org_dropdown.value = self.selection.org
                if self.org_control.children != (self.org_dropdown,):
                    self.org_control.children = (self.org_dropdown,)
            else:
                own = scope.org.name if scope.org is not None else ""
                self.org_label.value = html.escape(own)
                if self.org_control.children != (self.org_label,):
                    self.org_control.children = (self.org_label,)
            self.span_toggle.value = None if window.custom else window.span
            self._show_range(window.start, window.until) if window.custom else self._show_range(None, None)
            self.range_zone.value = self._range_zone_html(tz)
            self.top_toggle.value = top
            self.zone_dropdown.value = tz  # checked: the operator's or an IANA zone, both offered
        finally:
            self._syncing = False

    def _show_address(self, tz: str) -> None:
        """Put the view shown (`selection`, adopted) and the auto-refresh into the address."""
        selection = self.selection
        self.address.show(query_for(selection.org, selection.span, selection.token, selection.top,
                                    selection.start, selection.end, tz=tz, default_tz=self.settings.view.tz,
                                    refresh=self.auto_refresh, section=self.section), push=self._push)

    def _render_heading(self, scope: Scope, window: Window, tz: str) -> None:
        """The title (with the token shown), who is looking, and the window's line."""
        self.title.value = self._title_html(scope)
        role = ROLE_NAMES.get(scope.viewer.role, scope.viewer.role)
        self.subtitle.value = (
            f'<span class="aq-viewer">{html.escape(scope.viewer.label)}</span>'
            f'<span class="aq-role aq-role-{scope.viewer.role}">{html.escape(role)}</span>'
        )
        span = window.spec
        if window.custom:
            self.as_of.value = (
                f'<span title="window: from {html.escape(formatting.as_of(window.start, tz))}, '
                f'to {html.escape(formatting.as_of(window.until, tz))} (excluded)">'
                f"{span.label} \u00b7 {html.escape(formatting.time_range(window.start, window.until, tz))}</span>"
            )
        else:
            self.as_of.value = (
                f'<span title="window: from {html.escape(formatting.as_of(window.start, tz))}">'
                f"{span.label} \u00b7 as of {html.escape(formatting.as_of(window.now, tz))}</span>"
            )

    def _render_health(self, health: Health) -> None:
        self._render_heading(health.scope, health.window, health.tz)
        self.health_section.show(health, health.scope.viewer.role)
        self.error_box.value = ""
        self.widget.remove_class("aq-failed")
        self.range_message = None
        self._show_notices()
        self._set_back_buttons()

    def _render(self, usage: Usage) -> None:
        metrics = usage.metrics.as_dict()
        self._render_heading(usage.scope, usage.window, usage.tz)
        window = usage.window
        span = window.spec
        for key, label, fmt in TILES:
            share = self._failed_share(metrics[key], metrics["total_requests"]) if key == "failed_requests" else None
            change, title, direction = self._tile_change(usage, key)
            self.tiles[key].value = self._tile_html(label, fmt(metrics[key]), share, change=change,
                                                    change_title=title, direction=direction)
        cost = usage.cost
        note = NO_PRICES_NOTE if cost.currency is None else formatting.unpriced_note(cost)
        change, title, direction = self._tile_change(usage, "cost")
        self.tiles["cost"].value = self._tile_html(COST_TILE[1], formatting.money(cost.total, cost.currency), note=note,
                                                   change=change, change_title=title, direction=direction)
        if metrics["failed_requests"]:
            self.tiles["failed_requests"].add_class("aq-tile-alert")
        else:
            self.tiles["failed_requests"].remove_class("aq-tile-alert")
        self.timeseries_chart.update(usage.timeseries, span, window, usage.tz, usage.unrecorded)
        self._show_time_view(usage)
        self._show_model_view(usage)
        self.table.show(usage.top, usage.top_kind, usage.stopped, usage.cost.currency, self._period(usage))
        self.table_title.value = self._card_title(TOP_TITLES[usage.top_kind], f"top {usage.top_k}")
        self.error_box.value = ""
        self.widget.remove_class("aq-failed")
        self.range_message = None
        self._show_notices()
        self._set_back_buttons()

    # -- the charts' views -----------------------------------------------------------

    def _on_time_view(self, change) -> None:
        if change["new"] is None:
            return
        self.time_view = change["new"]
        if self.usage is not None:
            self._show_time_view(self.usage)

    def _on_model_view(self, change) -> None:
        if change["new"] is None:
            return
        self.model_view = change["new"]
        if self.usage is not None:
            self._show_model_view(self.usage)

    def _show_time_view(self, usage: Usage) -> None:
        """Fill the time chart of the view chosen (the requests chart is always filled:
        snapshots and the browser tests read it) and show it under its title."""
        view = self.time_view
        window = usage.window
        span = window.spec
        frame = usage.timeseries
        starts = list(frame["bucket"])
        currency = usage.cost.currency
        chart: Any = self.timeseries_chart
        if view == "tokens":
            chart = self.tokens_chart
            inputs, outputs = frame["input_tokens"].tolist(), frame["output_tokens"].tolist()
            chart.update(starts, {"Input": inputs, "Output": outputs}, span, window, usage.tz, usage.unrecorded,
                         colors=charts.TOKEN_COLORS, total=lambda i: formatting.count(inputs[i] + outputs[i]))
        elif view == "models":
            chart = self.model_time_chart
            per_model = usage.model_timeseries(TOP_MODELS_OVER_TIME)
            series: dict[str, list] = {}
            for name in per_model.columns:
                shown = formatting.name(name)
                while shown in series:  # NULL and "" are both N/A: keep both series
                    shown += "\u2032"
                series[shown] = per_model[name].tolist()
            colors = [charts.OTHER_COLOR if name == OTHER_MODELS else charts.SERIES_COLORS[i % len(charts.SERIES_COLORS)]
                      for i, name in enumerate(per_model.columns)]
            requests = frame["requests"].tolist()
            chart.update(starts, series, span, window, usage.tz, usage.unrecorded, colors=colors,
                         total=lambda i: formatting.count(requests[i]))
        elif view == "cost":
            chart = self.cost_chart
            chart.update(starts, {"Cost": frame["cost"].tolist()}, span, window, usage.tz, usage.unrecorded,
                         text=lambda amount: formatting.money(amount, currency), value_label=charts.cost_label(currency))
        widget = chart.figure if chart is self.timeseries_chart else chart.widget
        if self.time_body.children != (widget,):
            self.time_body.children = (widget,)
        first, last = starts[0], starts[-1]
        span_text = f"{formatting.bucket(first, span)} \u2013 {formatting.bucket(last, span)} ({usage.tz})"
        note = f"{span.per_bucket} \u00b7 {span_text}"
        if view == "cost":
            unpriced = NO_PRICES_NOTE if currency is None else formatting.unpriced_note(usage.cost)
            note += f" \u00b7 {unpriced}" if unpriced else ""
        self.timeseries_title.value = self._card_title(TIME_TITLES[view], note)

    def _show_model_view(self, usage: Usage) -> None:
        self.models_chart.update(usage.models, self.model_view, usage.cost.currency)
        note = ""
        if self.model_view == "cost":
            note = NO_PRICES_NOTE if usage.cost.currency is None else (formatting.unpriced_note(usage.cost) or "")
        self.models_title.value = self._card_title(MODEL_TITLES[self.model_view], note)

    def _show_notices(self) -> None:
        """The figures' notices and fallbacks, and why a range was not applied."""
        figures = self._figures()
        parts = []
        if self.range_message is not None:
            parts.append(f'<div class="aq-notice aq-range-refused"><strong>Range not applied:</strong> '
                         f"{html.escape(self.range_message)}</div>")
        if self.zone_message is not None:
            parts.append(f'<div class="aq-notice aq-fallback aq-zone-fallback">{html.escape(self.zone_message)}</div>')
        if self.refresh_message is not None:
            parts.append(f'<div class="aq-notice aq-fallback aq-refresh-fallback">{html.escape(self.refresh_message)}</div>')
        if figures is not None:
            # Why there is no gateway overhead is said on its tile.
            parts += [f'<div class="aq-notice">{html.escape(n)}</div>' for n in figures.notices
                      if n != NO_PROCESSING_TIME_NOTICE]
            parts += [f'<div class="aq-notice aq-fallback">{html.escape(n)}</div>' for n in figures.fallbacks]
        self.notice_box.value = "".join(parts)

    def _show_error(self, message: str) -> None:
        """No figures at all rather than stale ones next to an error."""
        self.error = message
        self._shown.pop(self.section, None)
        self.widget.add_class("aq-failed")
        self.error_box.value = (
            f'<div class="aq-error-text"><strong>{COULD_NOT_LOAD[self.section]}</strong> {html.escape(message)}</div>'
        )
        self.range_message = None
        self.notice_box.value = ""
        self.as_of.value = ""
        if self.section == HEALTH_SECTION:
            self.health = None
            self.health_section.clear()
            self._set_back_buttons()
            return
        self.usage = None
        for key, label in ALL_TILES:
            self.tiles[key].value = self._tile_html(label, formatting.PLACEHOLDER)
        for chart in (self.timeseries_chart, self.tokens_chart, self.model_time_chart, self.cost_chart,
                      self.models_chart):
            chart.clear()
        self.table.clear()
        self.as_of.value = ""
        self._set_back_buttons()

    def _show_stale(self, message: str) -> None:
        """A failed auto-refresh: the figures shown stay, under the reason (the same
        failure again changes nothing on the page; a refresh that succeeds clears it)."""
        self.error = message
        self.error_box.value = (
            f'<div class="aq-error-text aq-stale"><strong>Could not refresh.</strong> {html.escape(message)} '
            "The figures below are the last ones loaded.</div>"
        )

    def _set_back_buttons(self) -> None:
        figures = self._figures()
        scope = figures.scope if figures is not None else None
        show_tokens = scope is not None and scope.token is not None
        show_orgs = scope is not None and scope.viewer.role == "admin" and scope.org is not None
        self.all_tokens_button.layout.display = None if show_tokens else "none"
        self.all_orgs_button.layout.display = None if show_orgs else "none"

    # -- for tests and analyses --------------------------------------------------------

    def tile_texts(self) -> dict[str, str]:
        """Tile label -> the value text shown."""
        return {label: self._tile_part(key, "aq-tile-value") for key, label in ALL_TILES}

    def tile_changes(self) -> dict[str, str]:
        """Tile label -> its change line ("+12% vs previous 24 hours"; "" without)."""
        return {label: self._tile_part(key, "aq-tile-change") for key, label in ALL_TILES}

    def tile_notes(self) -> dict[str, str]:
        """Tile label -> its small note (the cost tile's unpriced share; "" without)."""
        return {label: self._tile_part(key, "aq-tile-note") for key, label in ALL_TILES}

    def _tile_part(self, key: str, css: str) -> str:
        found = re.search(rf'class="{css}[^"]*"[^>]*>(.*?)</div>', self.tiles[key].value)
        return "" if found is None else html.unescape(re.sub(r"<[^>]+>", "", found.group(1)))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        if self._archive is not None:
            self._archive.close()


def show_dashboard(settings: Settings, selection: Selection | None = None, *, follow_address: bool = False,
                   **kwargs) -> Dashboard:
    """Build the dashboard, refresh and display it. With `follow_address` (a page served
    by Voila) the browser's address follows the view."""
    dashboard = Dashboard(settings, selection, **kwargs)
    dashboard.refresh()
    display(dashboard.widget)
    # Beside the dashboard, like the address bar: snapshots embed `widget` alone.
    display(dashboard.browser_zone)
    display(dashboard.ticker)
    if follow_address:
        display(dashboard.address)
    return dashboard
