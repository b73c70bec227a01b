"""PDF and PNG snapshots: the real dashboard page (Voila), drawn in headless Chromium.

A capture starts its own Voila server for one fixed viewer with the as-of instant
pinned (`Settings.to_env`), opens the page with the view's query string, waits until
the section shown is drawn, marks the page as a snapshot (a banner naming the view, no
Export control, the title) and saves it.

What a file holds (issue 15 item 7): a PDF is the whole report, the Usage section on
its first page and the Health section on its second (the page switches sections as a
user does, with the Usage | Health tabs), each page as large as its section; a PNG is
what a user looking at the page sees, the one section asked for (`view=health` in the
page's address, `--view` on the command line), Usage by default.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator, Sequence
from urllib.parse import urlencode

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from usage_lib.core.urlstate import SECTIONS, USAGE_SECTION, VIEW_KEY
from usage_lib.core.usage import Selection
from usage_lib.errors import UsageError
from usage_lib.render.files import Report
from usage_lib.render.offline_page import (
    DRAWN_JS, EXPORT_CLASS, HEADER_CSS, WHOLE_TEXT_CSS, drawn_expectation, header_html, page_title,
)
from usage_lib.serving import voila_process
from usage_lib.settings import Settings
from usage_lib.ui.dashboard import SECTION_VIEWS

CAPTURED = (".pdf", ".png")

#: Headless Chromium as root, without a screen, on a closed network (see STACK-NOTES).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]




def page_query(selection: Selection, section: str = USAGE_SECTION) -> str:
    """The page's URL query for the selection's org, span (or start and end), token and
    top (no org when none was asked for, so that everyone gets their default org), and
    the `section` shown (the usage one is the page's default)."""
    params = {"org": selection.org, "span": selection.span, "token": selection.token, "top": selection.top,
              VIEW_KEY: None if section == USAGE_SECTION else section}
    if selection.custom:
        when = {key: value.isoformat() if isinstance(value, datetime) else value
                for key, value in (("start", selection.start), ("end", selection.end))}
        params = {**params, "span": None, **when}
    return urlencode({key: value for key, value in params.items() if value is not None})


def page_settings(settings: Settings, viewer: str) -> Settings:
    """The settings of a capture's Voila server: one fixed viewer, whatever identity
    source the operator's environment configures, and the view's instant."""
    return dataclasses.replace(settings, identity="fixed", viewer=viewer, problems=())


def find_chromium() -> str:
    for candidate in (os.environ.get("AQUEDUCT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise UsageError("PDF and PNG snapshots need Chromium: install it (Debian: apt-get install -y chromium) "
                     "or set AQUEDUCT_CHROMIUM to its path")


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (the system's, never a downloaded one) driven by Playwright."""
    executable = find_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


# True once the Health section is drawn: shown, not loading, its tiles filled (the
# percentile lines are written by a refresh, never by the empty section), both charts
# with their axes' ticks, the failures chart with one bar group per bucket.
HEALTH_DRAWN_JS = """
(buckets) => {
  const root = document.querySelector('.aq-dashboard');
  if (!root || root.classList.contains('aq-loading') || !root.classList.contains('aq-section-health')) return false;
  if (!root.querySelector('.aq-health-tile-completion .aq-pct')) return false;
  for (const css of ['.aq-latency-time', '.aq-failures-time']) {
    const chart = root.querySelector(css);
    if (!chart || !chart.querySelector('svg g.axis .tick')) return false;
  }
  return root.querySelectorAll('.aq-failures-time g.bargroup').length >= buckets;
}
"""


def wait_drawn(page, section: str, report: Report, timeout_ms: int = 60_000) -> None:
    """Until `section` of the page is completely drawn for `report`: the usage one with
    both charts' bars per bucket and per model; the health one as `HEALTH_DRAWN_JS`
    (its buckets are the usage figures' own). Raises `UsageError` when it does not
    finish drawing."""
    drawn, expected = ((DRAWN_JS, drawn_expectation(report.usage)) if section == USAGE_SECTION
                       else (HEALTH_DRAWN_JS, len(report.usage.timeseries)))
    try:
        page.wait_for_function(drawn, arg=expected, timeout=timeout_ms, polling=100)
    except PlaywrightTimeout:
        error = page.evaluate("() => (document.querySelector('.aq-error') || {}).textContent || ''").strip()
        raise UsageError(f"the dashboard page did not finish drawing{': ' + error if error else ''}") from None
    page.evaluate("() => document.fonts ? document.fonts.ready.then(() => true) : true")
    page.wait_for_timeout(200)  # the last layout (figure heights) settles


def open_dashboard(browser, url: str, report: Report, *, section: str = USAGE_SECTION, viewport=(1280, 900),
                   timeout_ms: int = 60_000, headers=None):
    """A page on the live dashboard at `url` (which shows `section`), once it is
    completely drawn (`wait_drawn`), marked as a snapshot of it.

    Raises `UsageError` when the page does not finish drawing."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                  extra_http_headers=dict(headers or {}))
    try:
        page = context.new_page()
        page.goto(url, wait_until="load", timeout=timeout_ms)
        wait_drawn(page, section, report, timeout_ms)
        mark_as_snapshot(page, report)
        return context, page
    except BaseException:
        context.close()
        raise


def show_section(page, section: str, report: Report) -> None:
    """Switch the page to `section` as a user does (its Usage | Health tab) and wait
    until it is drawn."""
    label = dict((key, label) for label, key in SECTION_VIEWS)[section]
    # The live page's tab, not the one in the copies kept for a PDF.
    page.locator(".aq-sections-switch button:not(#aq-print *)", has_text=label).click()
    wait_drawn(page, section, report)


MARK_JS = """
([header, title]) => {
  const root = document.querySelector('.aq-dashboard');
  root.insertAdjacentHTML('beforebegin', header);
  document.title = title;
}
"""


def mark_as_snapshot(page, report: Report) -> None:
    """What a file of the page needs and the live page does not: whole texts, a banner
    naming the view and the instant, no Export control, and a title."""
    exported_at = datetime.now(timezone.utc)
    page.add_style_tag(content=WHOLE_TEXT_CSS + HEADER_CSS + f".{EXPORT_CLASS} {{ display: none !important; }}")
    page.evaluate(MARK_JS, [header_html(report, exported_at), page_title(report)])


# Voila's lab template is a JupyterLab shell: panels sized by script to the window, the
# cells scrolling inside #rendered_cells, so a "full page" screenshot stops at the
# window's height. The window is made as tall as the dashboard instead.
CONTENT_HEIGHT_JS = """
() => {
  const root = document.querySelector('.aq-dashboard');
  const scroller = document.getElementById('rendered_cells');
  const top = scroller ? scroller.scrollTop : window.scrollY;
  // The children's extent, not the root's: the root may stretch to the window.
  let bottom = 0;
  for (const child of root.children) bottom = Math.max(bottom, child.getBoundingClientRect().bottom);
  const padding = parseFloat(getComputedStyle(root).paddingBottom) || 0;
  return Math.ceil(bottom + padding + top + 16);
}
"""
def fit_to_content(page, width: int = 1280) -> int:
    """Make the window as tall as the dashboard (the shell follows the window); returns
    that height in CSS pixels."""
    height = page.viewport_size["height"] if page.viewport_size else -1
    for _ in range(4):
        wanted = max(400, int(page.evaluate(CONTENT_HEIGHT_JS)))
        if wanted == height:
            break
        height = wanted
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(200)
    return height


def screenshot(page) -> bytes:
    """The whole section shown, as on screen: a PNG as tall as the dashboard."""
    fit_to_content(page, page.viewport_size["width"] if page.viewport_size else 1280)
    return page.screenshot(full_page=True)


# A PDF's pages: when a section is drawn, a copy of the banner and the dashboard is kept
# (form fields hold their values as properties, not in the markup: copied over), under
# a CSS named page of its own ("aq-usage", "aq-health"). Printing shows only the copies,
# in the document's flow: the shell's panels scroll and would not break into pages.
KEEP_JS = """
(name) => {
  let holder = document.getElementById('aq-print');
  if (!holder) {
    holder = document.createElement('div');
    holder.id = 'aq-print';
    holder.style.display = 'none';
    document.body.appendChild(holder);
  }
  const root = document.querySelector('.aq-dashboard');
  const sheet = document.createElement('div');
  sheet.className = 'aq-print-page';
  sheet.style.page = 'aq-' + name;
  sheet.style.padding = Math.max(0, Math.round(root.getBoundingClientRect().left)) + 'px';
  for (const node of [document.getElementById('aq-snapshot-header'), root]) {
    const copy = node.cloneNode(true);
    copy.removeAttribute('id');
    const fields = node.querySelectorAll('select, input, textarea');
    const copies = copy.querySelectorAll('select, input, textarea');
    fields.forEach((field, i) => {
      if (field.tagName === 'SELECT') copies[i].selectedIndex = field.selectedIndex;
      else { copies[i].value = field.value; copies[i].checked = field.checked; }
    });
    sheet.appendChild(copy);
  }
  holder.appendChild(sheet);
}
"""
# Only the kept copies show, in the document's flow; returns each one's page name and
# height (CSS pixels).
PRINT_JS = """
() => {
  const holder = document.getElementById('aq-print');
  for (const child of Array.from(document.body.children)) if (child !== holder) child.style.display = 'none';
  holder.style.display = 'block';
  return Array.from(holder.children).map(sheet => [sheet.style.page, Math.ceil(sheet.getBoundingClientRect().height)]);
}
"""
# The document no longer clipped to the window, and the kept dashboards as tall as their
# content: the dashboard's `min-height: 100vh` would make a section as tall as the
# window (measured) or its page (printed: a vh is a hundredth of the page), and with the
# banner above it spill onto a second page.
PRINT_LAYOUT_CSS = """
html, body { height: auto !important; overflow: visible !important; margin: 0 !important; }
#aq-print .aq-dashboard { min-height: 0 !important; }
"""


def page_css(width: int, sheets: Sequence[tuple[str, int]]) -> str:
    """Each kept section on a page of its own size, `width` wide and as tall as the
    section, without margins (the template's `@page { margin: 0.5in }` is for plain
    printing)."""
    return "".join(f"@page {name} {{ size: {width}px {height}px; margin: 0; }}\n" for name, height in sheets)


def print_kept(page) -> bytes:
    """The sections kept (`KEEP_JS`) as a PDF, one page each (vector text and charts)."""
    width = page.viewport_size["width"] if page.viewport_size else 1280
    page.add_style_tag(content=PRINT_LAYOUT_CSS)
    sheets = page.evaluate(PRINT_JS)
    page.add_style_tag(content=page_css(width, sheets))
    page.emulate_media(media="screen")
    # Chromium lays the document out (media queries too) on the paper asked for here, the
    # named pages' sizes aside: as wide as the window, or the page's narrow layout (charts
    # one under the other) is printed.
    return page.pdf(width=f"{width}px", height=f"{max(height for _name, height in sheets)}px",
                    prefer_css_page_size=True, print_background=True)


def take_files(page, report: Report, suffixes: Sequence[str], section: str) -> dict[str, bytes]:
    """The page, open and drawn on the first section it is to show, as each of
    `suffixes`: a PNG of `section`, a PDF of every section (`urlstate.SECTIONS`, Usage
    then Health: the page goes through them in order, a PDF page each)."""
    sections = SECTIONS if ".pdf" in suffixes else (section,)
    files = {}
    for index, shown in enumerate(sections):
        if index:
            show_section(page, shown, report)
        if shown == section and ".png" in suffixes:
            files[".png"] = screenshot(page)
        if ".pdf" in suffixes:
            page.evaluate(KEEP_JS, shown)
    if ".pdf" in suffixes:
        files[".pdf"] = print_kept(page)
    return {suffix: files[suffix] for suffix in suffixes}


def capture(settings: Settings, viewer: str, selection: Selection, suffixes: Sequence[str], *,
            section: str = USAGE_SECTION, browser=None,
            server: voila_process.VoilaProcess | None = None) -> tuple[Report, dict[str, bytes]]:
    """The real dashboard page of `viewer` and `selection` (its `now` pinned), as each of
    `suffixes` (.pdf: both sections; .png: `section`): (the report of the usage figures
    it shows, {suffix: file content}). The health figures are the page's own.

    Starts a Voila server and a headless Chromium unless given (tests share them).
    """
    if unknown := [suffix for suffix in suffixes if suffix not in CAPTURED]:
        raise UsageError(f"cannot take a page as {', '.join(unknown)}")
    if section not in SECTIONS:
        raise UsageError(f"no section {section!r}: use one of {', '.join(SECTIONS)}")
    settings = page_settings(settings, viewer)
    report = Report.of(settings.compute(selection, viewer))
    first = SECTIONS[0] if ".pdf" in suffixes else section
    with ExitStack() as stack:
        if server is None:
            pinned = dataclasses.replace(settings, view=selection)  # its zone and instant
            server = voila_process.start(pinned.to_env(os.environ), quiet=True)
            stack.callback(server.stop)
            server.wait_ready()
        if browser is None:
            browser = stack.enter_context(chromium())
        context, page = open_dashboard(browser, f"{server.url}?{page_query(selection, first)}", report, section=first)
        try:
            return report, take_files(page, report, suffixes, section)
        finally:
            context.close()
