"""The served page, timed in headless Chromium (issue 6, part 4).

`measure_page(url, router_config, now)` serves the dashboard (`usage-dashboard serve`,
i.e. Voila with the repository's configuration) on the given database as the demo's
global admin at a fixed as-of time, and with Playwright and Debian's Chromium measures:

- first paint: from navigation to all charts drawn (the tiles show the figures of a
  refresh computed here for the same view, both charts have their bars, the page is no
  longer loading, and two animation frames have passed): the default view (own org, 1d),
  and the heaviest one (`?org=all&span=1w`). Also recorded: when the dashboard's first
  widgets appear (the kernel has run the notebook's first cells);
- refresh: from the click on another span to the redrawn charts (tiles of the new span,
  the new number of time buckets, loading over, painted).

Both are read on the page's own clock (`performance.now()`: from navigation start, and
from the click event's arrival), which is what a visitor sees. Playwright's own share
(its checks before a click, about 0.1-0.4 s here, and its polling) is left out; the
wall-clock times around the Playwright calls, which include it, are recorded too
(`*_wall_*`).

Each page view is a fresh browser context, so a fresh Voila kernel (kernel start-up is
part of the first paint, as for a real visitor, unless the server keeps preheated
kernels: then it is the pool's). Views are `REST_S` apart, so each meets a server at
rest. Times are medians over `repeat` views.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from served import ServedDashboard

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("AQUEDUCT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWER = "admin@acme.example"
STEP_TIMEOUT_MS = 120_000
#: Each page view starts on a server at rest: the previous view's kernel start-up (or
#: the preheated pool's refill) is over, as for visitors who do not arrive seconds apart.
REST_S = 8.0

#: Drawn: no loading class, the tiles show `expected`, `bars` time buckets, model bars.
DRAWN = """([expected, bars]) => {
  if (document.querySelector('.aq-dashboard.aq-loading')) return false;
  const tiles = Object.fromEntries([...document.querySelectorAll('.aq-tile')].map(t =>
      [t.querySelector('.aq-tile-label').textContent, t.querySelector('.aq-tile-value').textContent]));
  if (!Object.entries(expected).every(([label, value]) => tiles[label] === value)) return false;
  if (document.querySelectorAll('.aq-timeseries rect.bar').length !== bars) return false;
  return document.querySelectorAll('.aq-models rect.bar').length > 0;
}"""
#: Two animation frames later, what was drawn is on screen: the page's clock then (ms).
PAINTED = "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now()))))"
#: Note on the page's clock when the next click arrives (before any handler of the page).
WATCH_CLICK = """() => { window.__aqClickAt = null;
  document.addEventListener('click', () => { window.__aqClickAt = performance.now(); }, {capture: true, once: true}); }"""


def _expected(url: str, router_config: Path, now, org, span: str) -> tuple[dict[str, str], int]:
    """The tiles' texts and the number of time buckets for a view, from `compute_usage`."""
    from usage_lib import Selection, compute_usage, load_router_config, open_database
    from usage_lib.render.labels import TILES

    db = open_database(url)
    try:
        usage = compute_usage(db, VIEWER, Selection(org=org, span=span, now=now), load_router_config(router_config))
    finally:
        db.close()
    values = usage.metrics.as_dict()
    return {label: fmt(values[key]) for key, label, fmt in TILES}, len(usage.timeseries)


def measure_page(url: str, router_config: Path, now, *, repeat: int = 5, log=print) -> dict:
    """Medians (s) of first paint and span-change refresh; or why they were not measured."""
    if not os.access(CHROMIUM, os.X_OK):
        return {"status": "not measured", "reason": f"no Chromium at {CHROMIUM}"}
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"status": "not measured", "reason": "playwright is not installed"}
    dashboard = REPO / "notebooks" / "usage_dashboard.ipynb"
    if not dashboard.exists():
        return {"status": "not measured", "reason": f"no dashboard notebook at {dashboard}"}

    views = {
        "default": (None, "1d", "1w", ""),          # own org: first 1d, then switch to 1w
        "all_orgs_1w": ("all", "1w", "1d", "?org=all&span=1w"),
    }
    expected = {}
    for name, (org, first, second, _query) in views.items():
        expected[name] = (_expected(url, router_config, now, org, first), _expected(url, router_config, now, org, second))

    server = ServedDashboard(["--db", url, "--router-config", str(router_config), "--viewer", VIEWER],
                             {"AQUEDUCT_NOW": now.isoformat()})
    results: dict[str, dict[str, list[float]]] = {
        name: {key: [] for key in ("first_paint_s", "widgets_s", "refresh_s", "first_paint_wall_s", "refresh_wall_s")}
        for name in views
    }
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                for round_ in range(repeat + 1):  # round 0 warms the server and the database
                    for name, (org, first, second, query) in views.items():
                        (tiles_1, bars_1), (tiles_2, bars_2) = expected[name]
                        time.sleep(REST_S)
                        context = browser.new_context(viewport={"width": 1366, "height": 900})
                        page = context.new_page()
                        try:
                            started = time.perf_counter()
                            page.goto(server.url + query, timeout=STEP_TIMEOUT_MS)
                            page.wait_for_selector(".aq-dashboard", timeout=STEP_TIMEOUT_MS)
                            widgets = page.evaluate("() => performance.now()") / 1000
                            page.wait_for_function(DRAWN, arg=[tiles_1, bars_1], timeout=STEP_TIMEOUT_MS)
                            first_paint = page.evaluate(PAINTED) / 1000
                            first_paint_wall = time.perf_counter() - started
                            page.evaluate(WATCH_CLICK)
                            started = time.perf_counter()
                            page.locator(".aq-span button", has_text=second).click()
                            page.wait_for_function(DRAWN, arg=[tiles_2, bars_2], timeout=STEP_TIMEOUT_MS)
                            painted = page.evaluate(PAINTED)
                            refresh_wall = time.perf_counter() - started
                            refresh = (painted - page.evaluate("() => window.__aqClickAt")) / 1000
                        finally:
                            context.close()
                        if round_ > 0:
                            for key, value in (("first_paint_s", first_paint), ("refresh_s", refresh), ("widgets_s", widgets),
                                               ("first_paint_wall_s", first_paint_wall), ("refresh_wall_s", refresh_wall)):
                                results[name][key].append(value)
                            log(f"    {name}: first paint {first_paint:.2f} s (widgets shown after {widgets:.2f} s), "
                                f"{first}->{second} refresh {refresh:.2f} s (wall clock {first_paint_wall:.2f} / {refresh_wall:.2f} s)")
            finally:
                browser.close()
    finally:
        server.close()

    out: dict = {"status": "measured", "viewer": VIEWER, "repeat": repeat, "database": url.split("@")[-1]}
    for name, (org, first, second, query) in views.items():
        out[name] = {
            "url_query": query, "first_view": first, "switch_to": second,
            "first_paint_median_s": statistics.median(results[name]["first_paint_s"]),
            "widgets_shown_median_s": statistics.median(results[name]["widgets_s"]),
            "refresh_median_s": statistics.median(results[name]["refresh_s"]),
            "first_paint_wall_median_s": statistics.median(results[name]["first_paint_wall_s"]),
            "refresh_wall_median_s": statistics.median(results[name]["refresh_wall_s"]),
            "first_paint_s": results[name]["first_paint_s"], "refresh_s": results[name]["refresh_s"],
            "first_paint_wall_s": results[name]["first_paint_wall_s"], "refresh_wall_s": results[name]["refresh_wall_s"],
        }
    out["targets"] = {
        "first paint < 3 s": all(out[n]["first_paint_median_s"] < 3 for n in views),
        "refresh < 0.5 s": all(out[n]["refresh_median_s"] < 0.5 for n in views),
    }
    return out
