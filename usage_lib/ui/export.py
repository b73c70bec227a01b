"""The live dashboard's Export control: a button that builds the files of the view on
screen and offers them as download links (the offline HTML snapshot, the top table as
CSV, all four CSV files as a zip).

The files are made from the figures on screen (`dashboard.usage`) and its root widget:
nothing is recomputed, so they never hold more than the viewer sees, and nothing is
fetched: the offline page's JavaScript is installed at setup time.
"""

from __future__ import annotations

import base64
import html
from typing import Protocol

import ipywidgets as widgets

from usage_lib.core.usage import Usage, describe_error
from usage_lib.render.files import Report, file_stem, render_csv, render_zip
from usage_lib.render.offline_page import EXPORT_CLASS, render_html

#: (renderer, file suffix, MIME type, link label), in the order the links show.
LINKS = (
    (render_html, ".html", "text/html;charset=utf-8", "HTML"),
    (render_csv, ".csv", "text/csv;charset=utf-8", "CSV"),
    (render_zip, ".zip", "application/zip", "CSV (all, zip)"),
)


class Exportable(Protocol):
    usage: Usage | None
    widget: widgets.Widget


class ExportControl(widgets.HBox):
    """Export button and its links. Call `reset()` whenever the view changes, so that no
    link offers an older view."""

    def __init__(self, dashboard: Exportable) -> None:
        self.dashboard = dashboard
        self.button = widgets.Button(description="Export", icon="download",
                                     tooltip="Download this view: HTML snapshot or CSV", layout=widgets.Layout(width="auto"))
        self.button.add_class("aq-export-button")
        self.links = widgets.HTML(value="")
        self.links.add_class("aq-export-links")
        super().__init__([self.button, self.links], layout=widgets.Layout(align_items="center"))
        self.add_class(EXPORT_CLASS)
        self.button.on_click(self.prepare)

    def prepare(self, _button: widgets.Button | None = None) -> None:
        usage = self.dashboard.usage
        if usage is None:
            self.links.value = '<span class="aq-export-error">Nothing to export.</span>'
            return
        self.button.disabled = True
        # Set before the state is taken, so the snapshot holds no earlier links.
        self.links.value = '<span class="aq-export-busy">Preparing\u2026</span>'
        try:
            report = Report.of(usage, self.dashboard.widget)
            stem = file_stem(usage)
            self.links.value = " \u00b7 ".join(
                _link(f"{stem}{suffix}", mime, render(report, stem)[f"{stem}{suffix}"], label)
                for render, suffix, mime, label in LINKS
            )
        except Exception as exc:  # noqa: BLE001 - shown, never raised: the page keeps working
            self.links.value = f'<span class="aq-export-error">Export failed: {html.escape(describe_error(exc))}</span>'
        finally:
            self.button.disabled = False

    def reset(self) -> None:
        self.links.value = ""


def _link(name: str, mime: str, data: bytes, label: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<a class="aq-export-link" download="{html.escape(name)}" title="{html.escape(name)}" '
            f'href="data:{mime};base64,{encoded}">{html.escape(label)}</a>')
