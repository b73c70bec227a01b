"""PDF and PNG snapshots: the real dashboard page (Voila), drawn in headless Chromium.

A capture starts its own Voila server for one fixed viewer with the as-of instant
pinned (`Settings.to_env`), opens the page with the view's query string, waits until
both charts are drawn, marks the page as a snapshot (a banner naming the view, no
Export control, the title) and saves it.
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

from usage_lib.core.usage import Selection
from usage_lib.errors import UsageError
from usage_lib.render.files import Report
from usage_lib.render.offline_page import (
    DRAWN_JS, EXPORT_CLASS, HEADER_CSS, WHOLE_TEXT_CSS, drawn_expectation, header_html, page_title,
)
from usage_lib.serving import voila_process
from usage_lib.settings import Settings

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




def page_query(selection: Selection) -> str:
    """The page's URL query for the selection's org, span (or start and end), token and
    top (no org when none was asked for, so that everyone gets their default org)."""
    params = {"org": selection.org, "span": selection.span, "token": selection.token, "top": selection.top}
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


def open_dashboard(browser, url: str, report: Report, *, viewport=(1280, 900), timeout_ms: int = 60_000, headers=None):
    """A page on the live dashboard at `url`, once it is completely drawn (both charts
    with one bar per bucket and per model of `report`), marked as a snapshot of it.

    Raises `UsageError` when the page does not finish drawing."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                  extra_http_headers=dict(headers or {}))
    try:
        page = context.new_page()
        page.goto(url, wait_until="load", timeout=timeout_ms)
        try:
            page.wait_for_function(DRAWN_JS, arg=drawn_expectation(report.usage), timeout=timeout_ms, polling=100)
        except PlaywrightTimeout:
            error = page.evaluate("() => (document.querySelector('.aq-error') || {}).textContent || ''").strip()
            raise UsageError(f"the dashboard page did not finish drawing{': ' + error if error else ''}") from None
        mark_as_snapshot(page, report)
        page.evaluate("() => document.fonts ? document.fonts.ready.then(() => true) : true")
        page.wait_for_timeout(200)  # the last layout (figure heights) settles
        return context, page
    except BaseException:
        context.close()
        raise


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
# The template's stylesheet has `@page { margin: 0.5in }`, which Chromium prefers to the
# margins asked for; the PDF page is the window, without margins.
PRINT_CSS = "@page { margin: 0 !important; }"


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


def take(page, suffix: str) -> bytes:
    """The whole dashboard as it shows on screen: a PNG, or a one-page PDF of the same
    size (vector text and charts)."""
    width = page.viewport_size["width"] if page.viewport_size else 1280
    height = fit_to_content(page, width)
    if suffix == ".pdf":
        page.add_style_tag(content=PRINT_CSS)
        page.emulate_media(media="screen")
        return page.pdf(width=f"{width}px", height=f"{height}px", print_background=True,
                        margin={"top": "0px", "bottom": "0px", "left": "0px", "right": "0px"})
    if suffix == ".png":
        return page.screenshot(full_page=True)
    raise UsageError(f"cannot take a page as {suffix}")


def capture(settings: Settings, viewer: str, selection: Selection, suffixes: Sequence[str], *,
            browser=None, server: voila_process.VoilaProcess | None = None) -> tuple[Report, dict[str, bytes]]:
    """The real dashboard page of `viewer` and `selection` (its `now` pinned), as each of
    `suffixes` (.pdf, .png): (the report it shows, {suffix: file content}).

    Starts a Voila server and a headless Chromium unless given (tests share them).
    """
    settings = page_settings(settings, viewer)
    report = Report.of(settings.compute(selection, viewer))
    with ExitStack() as stack:
        if server is None:
            pinned = dataclasses.replace(settings, view=selection)  # its zone and instant
            server = voila_process.start(pinned.to_env(os.environ), quiet=True)
            stack.callback(server.stop)
            server.wait_ready()
        if browser is None:
            browser = stack.enter_context(chromium())
        context, page = open_dashboard(browser, f"{server.url}?{page_query(selection)}", report)
        try:
            return report, {suffix: take(page, suffix) for suffix in suffixes}
        finally:
            context.close()
