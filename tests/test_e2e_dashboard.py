"""End to end: `usage-dashboard serve` runs a real Voila server, headless Chromium drives it.

Needs Chromium (the `browser` fixture: skipped without it, failed under CI). The server
(`voila_server`, tests/support/serving.py, shared with the other end-to-end modules)
serves the demo gateway at a fixed as-of time with identity from a proxy header, so one
server shows every role. Screenshots go to test-output/dashboard/.
"""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.browser import new_context
from tests.support.dashboard import DEMO_NOW
from tests.support.serving import HEADER, Server
from usage_lib.cli import main as cli_main
from usage_lib.render import formatting
from usage_lib.render.labels import ROLE_NAMES, TILES
from usage_lib.demo import DEMO_ADMIN_EMAIL, DEMO_ORG_ADMIN_EMAIL, DEMO_USER_EMAIL

pytestmark = pytest.mark.browser

STEP_TIMEOUT_MS = 30_000

# `voila_server` (tests/support/serving.py): one header-mode server for this module and
# the other end-to-end modules.


@pytest.fixture(scope="module")
def shots(test_output_dir) -> Path:
    folder = test_output_dir / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def report(capsys, gateway, viewer: str, **view) -> dict:
    """`usage-dashboard report --format json` for the same viewer and view."""
    argv = ["report", "--db", gateway.url, "--router-config", str(gateway.router_config), "--viewer", viewer,
            "--now", DEMO_NOW.isoformat(), "--format", "json"]
    for key, value in view.items():
        argv += [f"--{key}", str(value)]
    capsys.readouterr()
    assert cli_main(argv) == 0
    return json.loads(capsys.readouterr().out)


def expected_tiles(data: dict) -> dict[str, str]:
    """The eight tiles of a report: the gateway's seven and the cost."""
    tiles = {label: fmt(data["metrics"][key]) for key, label, fmt in TILES}
    tiles["Cost"] = formatting.money(Decimal(data["cost"]["total"]), data["cost"]["currency"])
    return tiles


FIRST_RENDER = (
    "() => { const v = document.querySelector('.aq-tile-value');"
    " return v && v.textContent !== '\u2014' && document.querySelectorAll('.aq-timeseries rect.bar').length > 0; }"
)


def start_page(browser, server: Server, viewer: str, width: int = 1366, height: int = 768, query: str = ""):
    """A page on its way: asked for, its answer begun (Voila streams the page while the
    page's kernel runs the notebook); `finish_page` waits for it."""
    context = new_context(browser, viewport={"width": width, "height": height}, extra_http_headers={HEADER: viewer})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Could not create" in m.text else None)
    page.widget_errors = errors
    page.started = time.perf_counter()
    page.goto(server.url + (f"?{query}" if query else ""), timeout=STEP_TIMEOUT_MS, wait_until="commit")
    return page


def finish_page(page):
    """Until the started page is loaded and its dashboard drawn (tiles, time bars)."""
    page.wait_for_load_state("load", timeout=60_000)
    page.wait_for_function(FIRST_RENDER, timeout=60_000)
    page.first_render_s = time.perf_counter() - page.started
    return page


def open_page(browser, server: Server, viewer: str, width: int = 1366, height: int = 768, query: str = ""):
    page = new_context(browser, viewport={"width": width, "height": height}, extra_http_headers={HEADER: viewer}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Could not create" in m.text else None)
    started = time.perf_counter()
    page.goto(server.url + (f"?{query}" if query else ""), timeout=STEP_TIMEOUT_MS)
    page.wait_for_function(FIRST_RENDER, timeout=60_000)
    page.first_render_s = time.perf_counter() - started
    page.widget_errors = errors
    return page


def open_pages(browser, server: Server, requests: list[tuple[str, str]]) -> list:
    """Pages for (viewer, query) pairs, asked for together (their kernels start side by
    side) and each waited for as `open_page` does; a failure closes them all."""
    pages = []
    try:
        for viewer, query in requests:
            pages.append(start_page(browser, server, viewer, query=query))
        return [finish_page(page) for page in pages]
    except BaseException:
        for page in pages:
            page.context.close()
        raise


def kernel_id(page) -> str:
    """The id of the page's kernel (from the page's Jupyter config)."""
    return page.evaluate("() => JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId")


def leave(page) -> None:
    """Close the page as a person closes its tab: its `beforeunload` handlers run (Voila's
    sends the kernel shutdown then); `context.close()` alone skips them."""
    with page.expect_event("close"):
        page.close(run_before_unload=True)
    page.context.close()


def tiles(page) -> dict[str, str]:
    return page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('.aq-tile')].map(t =>"
        " [t.querySelector('.aq-tile-label').textContent, t.querySelector('.aq-tile-value').textContent]))"
    )


def wait_for_tiles(page, expected: dict[str, str]) -> float:
    started = time.perf_counter()
    page.wait_for_function(
        "(expected) => !document.querySelector('.aq-dashboard.aq-loading') && Object.entries(expected).every(([label, value]) =>"
        " [...document.querySelectorAll('.aq-tile')].some(t => t.querySelector('.aq-tile-label').textContent === label"
        " && t.querySelector('.aq-tile-value').textContent === value))",
        arg=expected,
        timeout=STEP_TIMEOUT_MS,
    )
    return time.perf_counter() - started


def table(page) -> dict:
    return page.evaluate(
        "() => ({"
        " headers: [...document.querySelectorAll('.aq-thead .aq-th')].map(b => b.textContent.trim()),"
        " rows: [...document.querySelectorAll('.aq-table .aq-row')].map(r => ({"
        "   cells: [...r.querySelectorAll('.aq-td')].map(c => c.querySelector('.aq-name-text')"
        "       ? c.querySelector('.aq-name-text').textContent : c.textContent),"
        "   badge: !!r.querySelector('.aq-badge'), opens: r.classList.contains('aq-clickable')})),"
        " empty: !!document.querySelector('.aq-table .aq-empty')})"
    )


def wait_for_heading(page, heading: str, rows: int | None = None) -> float:
    started = time.perf_counter()
    page.wait_for_function(
        "([heading, rows]) => !document.querySelector('.aq-dashboard.aq-loading')"
        " && [...document.querySelectorAll('.aq-thead .aq-th')].some(b => b.textContent.trim().startsWith(heading))"
        " && (rows === null || document.querySelectorAll('.aq-table .aq-row').length === rows)",
        arg=[heading, rows],
        timeout=STEP_TIMEOUT_MS,
    )
    return time.perf_counter() - started


def row_cells(data: dict, kind: str) -> list[list[str]]:
    out = []
    for row in data["top"]["rows"]:
        name = (row.get("service_account") or row["name"]) if kind == "token" else row["name"]
        cells = [str(row["rank"]), name or "N/A"] + [f"{row[k]:,}" for k in ("requests", "input_tokens", "output_tokens", "total_tokens")]
        cells += [formatting.money(Decimal(row["cost"]), data["cost"]["currency"]),
                  "new" if row.get("new") else formatting.change(row.get("change"))]
        if kind == "token":
            cells += [row["owner_email"] or "N/A", row["service_account"] or "N/A"]
        out.append(cells)
    return out


def click_row(page, name: str) -> None:
    """Click a row as a person does: on the transparent target laid over it."""
    target = page.locator(".aq-row-targets .widget-radio-box > label", has_text=re.compile(f"^Open {re.escape(name)}$")).first
    target.wait_for(state="visible", timeout=STEP_TIMEOUT_MS)  # the targets are a new widget per render
    box = target.bounding_box()
    row = page.locator(".aq-table .aq-row", has=page.locator(".aq-name-text", has_text=re.compile(f"^{re.escape(name)}$"))).first
    row_box = row.bounding_box()
    assert abs(box["y"] - row_box["y"]) < 1 and abs(box["height"] - row_box["height"]) < 1, (box, row_box)
    target.click()


def bar_heights(page, chart: str) -> list[str]:
    return page.eval_on_selector_all(f".aq-{chart} rect.bar", "bars => bars.map(b => b.getAttribute('height') + '/' + b.getAttribute('width'))")


def model_axis(page) -> list[str]:
    """The models chart's labels, top to bottom."""
    return page.evaluate(
        "() => [...document.querySelectorAll('.aq-models g.tick')]"
        ".map(g => [g.getBoundingClientRect().top, g.textContent])"
        ".filter(([, text]) => !/^[0-9.,]+[kMGT]?$/.test(text))"  # the count axis: 500, 1,000, 1.5k
        ".sort((a, b) => a[0] - b[0]).map(([, text]) => text)"
    )


def full_screenshot(page, path: Path) -> None:
    """The whole dashboard: Voila scrolls inside #rendered_cells, so grow the viewport."""
    size = page.viewport_size
    height = page.evaluate("() => Math.ceil(document.querySelector('.aq-dashboard').getBoundingClientRect().height)")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
    page.wait_for_timeout(300)
    page.screenshot(path=path)
    page.set_viewport_size(size)


def test_dashboard_in_a_browser(browser, voila_server, demo_gateway, capsys, shots):
    timings: dict[str, float] = {}
    page = open_page(browser, voila_server, DEMO_ADMIN_EMAIL)
    timings["first_render_s"] = page.first_render_s
    try:
        # -- the tiles and the table are the report's figures -----------------------------
        data = report(capsys, demo_gateway, DEMO_ADMIN_EMAIL)
        assert data["scope"]["org"]["name"] == "Acme Research"
        assert tiles(page) == expected_tiles(data)
        shown = table(page)
        assert shown["headers"][:2] == ["# \u25b2", "API Key"]
        assert [row["cells"] for row in shown["rows"]] == row_cells(data, "token")
        assert all(row["badge"] == bool(r["service_account"]) for row, r in zip(shown["rows"], data["top"]["rows"]))
        assert page.locator(".aq-title h1").text_content() == "Usage Dashboard"
        assert model_axis(page) == [row["model"] for row in data["models"]]
        assert "as of 2026-11-24 12:00:00 (UTC)" in page.locator(".aq-asof").inner_text()
        page.screenshot(path=shots / "01-admin-acme-1d.png")

        # -- the time frame: tiles and both charts change -------------------------------------
        before = {"timeseries": bar_heights(page, "timeseries"), "models": bar_heights(page, "models")}
        data = report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, span="1w")
        started = time.perf_counter()
        page.locator(".aq-span button", has_text="1w").click()
        wait_for_tiles(page, expected_tiles(data))
        timings["refresh_s"] = time.perf_counter() - started
        page.wait_for_function("() => document.querySelectorAll('.aq-timeseries rect.bar').length === 8")
        assert bar_heights(page, "models") != before["models"]
        assert bar_heights(page, "timeseries") != before["timeseries"]
        assert [row["cells"] for row in table(page)["rows"]] == row_cells(data, "token")
        assert model_axis(page) == [row["model"] for row in data["models"]]

        # -- the org: All ------------------------------------------------------------------------
        before = {"timeseries": bar_heights(page, "timeseries"), "models": bar_heights(page, "models")}
        page.select_option(".aq-org-select select", label="All")
        data = report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, org="all", span="1w")
        wait_for_tiles(page, expected_tiles(data))
        wait_for_heading(page, "Organization")
        assert bar_heights(page, "models") != before["models"]
        assert bar_heights(page, "timeseries") != before["timeseries"]
        assert [row["cells"] for row in table(page)["rows"]] == row_cells(data, "org")
        page.screenshot(path=shots / "02-admin-all-1w.png")

        # -- a tooltip: bucket time and count ----------------------------------------------------
        page.locator(".aq-timeseries rect.bar").nth(7).hover()
        page.wait_for_function("() => [...document.querySelectorAll('.aq-chart-tip')].some(t => t.textContent.includes('requests'))")
        tip = page.evaluate("() => [...document.querySelectorAll('.aq-chart-tip')].map(t => t.innerText).find(t => t.includes('requests'))")
        count = data["timeseries"][7]["requests"]
        assert "2026-11-24" in tip and f"{count:,} requests" in tip
        page.mouse.move(1, 1)

        # -- sort by two columns; the rank stays the rank by requests ----------------------------
        ranks = {tuple(row["cells"][1:]): row["cells"][0] for row in table(page)["rows"]}
        page.locator(".aq-thead .aq-th", has_text="Requests").click()
        page.wait_for_function("() => document.querySelector('.aq-thead').textContent.includes('Requests \u25b2')")
        rows = table(page)["rows"]
        requests = [int(row["cells"][2].replace(",", "")) for row in rows]
        assert requests == sorted(requests) and requests != [int(r["requests"]) for r in data["top"]["rows"]]
        assert all(ranks[tuple(row["cells"][1:])] == row["cells"][0] for row in rows)
        page.locator(".aq-thead .aq-th", has_text="Organization").click()
        page.locator(".aq-thead .aq-th", has_text="Organization").click()
        page.wait_for_function("() => document.querySelector('.aq-thead').textContent.includes('Organization \u25bc')")
        rows = table(page)["rows"]
        names = [row["cells"][1] for row in rows]
        assert names == ["Initech", "Globex Labs", "Acme Research", "N/A"]  # missing names last
        assert all(ranks[tuple(row["cells"][1:])] == row["cells"][0] for row in rows)
        page.screenshot(path=shots / "03-admin-all-sorted.png")

        # -- drill down: org -> token -> user_id, and back ---------------------------------------
        click_row(page, "Globex Labs")
        data = report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, org=2, span="1w")
        wait_for_heading(page, "API Key")
        wait_for_tiles(page, expected_tiles(data))
        assert page.locator(".aq-org-select select").input_value() == "Globex Labs"
        assert page.locator(".aq-back-orgs").is_visible()
        page.screenshot(path=shots / "04-admin-globex-tokens.png")

        data = report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, org=2, token=20, span="1w")
        assert len(data["top"]["rows"]) == 100
        started = time.perf_counter()
        click_row(page, "ml-pipeline")
        wait_for_heading(page, "User ID", rows=100)
        timings["hundred_rows_s"] = time.perf_counter() - started  # click to 100 rows drawn
        wait_for_tiles(page, expected_tiles(data))
        assert "ml-pipeline" in page.locator(".aq-title").inner_text()
        assert [row["cells"] for row in table(page)["rows"]] == row_cells(data, "user_id")
        full_screenshot(page, shots / "05-admin-pipeline-user-ids-full.png")

        page.locator(".aq-back-tokens").click()
        wait_for_heading(page, "API Key")
        page.locator(".aq-back-orgs").click()
        wait_for_heading(page, "Organization")

        # -- a double click cannot race: one drill-down, not two ----------------------------------
        page.locator(".aq-row-targets .widget-radio-box > label").first.dblclick()  # Acme Research, rank 1
        wait_for_heading(page, "API Key")
        page.wait_for_timeout(1000)
        assert table(page)["headers"][1] == "API Key"
        assert not page.locator(".aq-back-tokens").is_visible()
        assert page.widget_errors == []
    finally:
        page.context.close()
        (shots / "timings.json").write_text(json.dumps(timings, indent=2))
    assert timings["hundred_rows_s"] < 3  # about 0.4 s here; generous for slow CI machines


@pytest.mark.parametrize(
    "viewer, role",
    [(DEMO_ADMIN_EMAIL, "admin"), (DEMO_ORG_ADMIN_EMAIL, "org-admin"), (DEMO_USER_EMAIL, "user")],
)
def test_every_role_at_two_screen_sizes(browser, voila_server, demo_gateway, capsys, shots, viewer, role):
    """Each role sees exactly its report (tiles and table), laid out at two screen sizes."""
    page = open_page(browser, voila_server, viewer, 1366, 768)
    try:
        data = report(capsys, demo_gateway, viewer)
        wait_for_tiles(page, expected_tiles(data))
        assert tiles(page) == expected_tiles(data)
        assert [row["cells"] for row in table(page)["rows"]] == row_cells(data, data["top"]["kind"])
        assert ROLE_NAMES[role] in page.locator(".aq-subtitle").inner_text()
        has_dropdown = page.locator(".aq-org-select select").count() > 0
        assert has_dropdown == (role == "admin")
        if role != "admin":
            assert page.locator(".aq-org-name").inner_text() == "Acme Research"
        # Nothing overflows the page sideways; the tiles sit on one row.
        assert page.evaluate("() => document.querySelector('.aq-dashboard').scrollWidth <= window.innerWidth")
        tops = page.eval_on_selector_all(".aq-tile", "tiles => tiles.map(t => Math.round(t.getBoundingClientRect().top))")
        assert len(set(tops)) == 1
        page.screenshot(path=shots / f"{role}-1366x768.png")
        full_screenshot(page, shots / f"{role}-1366-full.png")
        page.set_viewport_size({"width": 1920, "height": 1080})
        page.wait_for_timeout(500)
        assert page.evaluate("() => document.querySelector('.aq-dashboard').scrollWidth <= window.innerWidth")
        page.screenshot(path=shots / f"{role}-1920x1080.png")
        assert page.widget_errors == []
    finally:
        page.context.close()


def address(page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def wait_for_address(page, **wanted: str) -> None:
    """Until the page's address has these query values (the dashboard rewrites it in place)."""
    page.wait_for_function(
        "(wanted) => { const q = new URLSearchParams(location.search);"
        " return Object.entries(wanted).every(([k, v]) => v === null ? !q.has(k) : q.get(k) === v); }",
        arg=wanted,
        timeout=STEP_TIMEOUT_MS,
    )


def test_the_address_follows_the_view_and_reopens_it(browser, voila_server, demo_gateway, capsys):
    page = open_page(browser, voila_server, DEMO_ADMIN_EMAIL, query="span=1h&lang=de")
    try:
        # The page's own view goes into the address at once; keys not ours stay.
        acme = report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, span="1h")["scope"]["org"]["id"]
        wait_for_address(page, org=str(acme), span="1h", top="100")
        history = page.evaluate("() => history.length")
        assert address(page) == {"lang": ["de"], "org": [str(acme)], "span": ["1h"], "top": ["100"]}

        page.select_option(".aq-org-select select", label="All")
        wait_for_heading(page, "Organization")
        wait_for_address(page, org="all")
        click_row(page, "Globex Labs")
        wait_for_heading(page, "API Key")
        wait_for_address(page, org="2")
        page.locator(".aq-span button", has_text="1w").click()
        wait_for_address(page, span="1w")
        click_row(page, "ml-pipeline")
        wait_for_heading(page, "User ID")
        wait_for_address(page, token="20")
        page.locator(".aq-top button", has_text="10").first.click()
        wait_for_address(page, top="10")
        assert address(page) == {"lang": ["de"], "org": ["2"], "span": ["1w"], "token": ["20"], "top": ["10"]}
        # The two drill-downs (row clicks) are history steps; the filters replaced the address.
        assert page.evaluate("() => history.length") == history + 2
        shared = urlsplit(page.url).query
    finally:
        page.context.close()

    # The address reopens that view: the figures of the report for it. (Both pages below
    # are asked for together: their kernels start side by side.)
    again, user = open_pages(browser, voila_server, [(DEMO_ADMIN_EMAIL, shared), (DEMO_USER_EMAIL, shared)])
    try:
        data = report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, org=2, token=20, span="1w", top=10)
        wait_for_heading(again, "User ID", rows=10)
        assert tiles(again) == expected_tiles(data)
        assert [row["cells"] for row in table(again)["rows"]] == row_cells(data, "user_id")
        assert "ml-pipeline" in again.locator(".aq-title").inner_text()
        assert again.widget_errors == []

        # Shared with a standard user of another org, it shows what they may see, and the
        # address then says so: their own org, no token.
        data = report(capsys, demo_gateway, DEMO_USER_EMAIL, org=2, token=20, span="1w", top=10)
        assert data["scope"]["org"]["id"] == acme and data["scope"]["token"] is None
        wait_for_tiles(user, expected_tiles(data))
        wait_for_address(user, org=str(acme), token=None, span="1w", top="10")
    finally:
        again.context.close()
        user.context.close()


def test_an_unknown_viewer_gets_a_message_not_a_traceback(browser, voila_server, shots):
    context = new_context(browser, viewport={"width": 1366, "height": 768}, extra_http_headers={HEADER: "nobody@example.org"})
    page = context.new_page()
    try:
        page.goto(voila_server.url)
        page.wait_for_selector(".aq-error-text", timeout=60_000)
        text = page.locator(".aq-error-text").inner_text()
        assert "unknown viewer 'nobody@example.org'" in text
        assert "Traceback" not in page.content()
        assert not page.locator(".aq-tiles").is_visible()
        page.screenshot(path=shots / "unknown-viewer.png")
    finally:
        context.close()


def test_no_identity_header_is_refused(voila_server):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(voila_server.url, timeout=30)
    assert refused.value.code == 403


def test_a_left_page_releases_its_kernel_at_once(browser, voila_server):
    """Closing the page, or leaving it, shuts its kernel down (Voila's `beforeunload` POST
    is accepted: it carries the `_xsrf` cookie), instead of the kernel idling until culled."""
    for how in ("close", "leave"):
        page = open_page(browser, voila_server, DEMO_USER_EMAIL)
        kernel = kernel_id(page)
        try:
            assert kernel in voila_server.kernel_ids()
            started = time.monotonic()
            if how == "close":
                leave(page)
            else:
                page.goto("about:blank")
        finally:
            page.context.close()
        voila_server.wait_for_kernels(lambda ids: kernel not in ids, timeout=10)
        assert time.monotonic() - started < 10
    assert "403 POST /voila/api/shutdown" not in "".join(voila_server.output)


def relative_luminance(css_color: str) -> float:
    """WCAG 2 relative luminance of a computed CSS color (`rgb(...)`/`rgba(...)`, composed
    over white when translucent)."""
    r, g, b, *alpha = (float(x) for x in re.findall(r"[\d.]+", css_color))
    a = alpha[0] if alpha else 1.0
    channels = [(a * c + (1 - a) * 255) / 255 for c in (r, g, b)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(color: str, background: str) -> float:
    lighter, darker = sorted((relative_luminance(color), relative_luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_a_selected_segment_stays_readable_under_the_pointer(browser, voila_server):
    """The span and top-k buttons: the selected one, hovered, keeps a readable contrast
    (WCAG AA, 4.5:1) between its text and its background; so does a hovered unselected one."""
    page = open_page(browser, voila_server, DEMO_ADMIN_EMAIL)
    try:
        for group, label, other in ((".aq-span", "1w", "1d"), (".aq-top", "10", "25")):
            button = page.locator(f"{group} button", has_text=re.compile(f"^{label}$"))
            button.click()  # the pointer stays on it
            page.wait_for_function(
                "([group, label]) => !document.querySelector('.aq-dashboard.aq-loading')"
                " && [...document.querySelectorAll(group + ' button')].some(b => b.textContent === label"
                " && b.classList.contains('mod-active') && !b.disabled && b.matches(':hover'))",
                arg=[group, label],
                timeout=STEP_TIMEOUT_MS,
            )
            page.wait_for_timeout(300)  # any transition has ended
            for state, target in (("selected", button), ("unselected", page.locator(f"{group} button", has_text=re.compile(f"^{other}$")))):
                target.hover()
                color, background, hovered = target.evaluate(
                    "b => { const s = getComputedStyle(b); return [s.color, s.backgroundColor, b.matches(':hover')]; }")
                assert hovered
                ratio = contrast_ratio(color, background)
                assert ratio >= 4.5, f"{group} {state} button {target.inner_text()!r} hovered: {color} on {background}, contrast {ratio:.2f}"
        assert page.widget_errors == []
    finally:
        page.context.close()


def test_the_page_loads_nothing_from_outside(browser, voila_server):
    """Every request of the page stays on the server (no CDN: the stock lab template links
    Font Awesome from one); the icons come from Voila's own bundle."""
    page = open_page(browser, voila_server, DEMO_ADMIN_EMAIL)
    try:
        page.wait_for_load_state("load")
        page.wait_for_function(
            "() => [...document.fonts].some(f => f.family.includes('Font Awesome 5 Free') && f.status === 'loaded')",
            timeout=STEP_TIMEOUT_MS,
        )
        icon = page.locator(".aq-export-button i.fa-download")
        assert icon.evaluate("i => getComputedStyle(i, '::before').fontFamily").strip('"').startswith("Font Awesome 5 Free")
        assert icon.bounding_box()["width"] > 8  # drawn, not an empty box
        html = page.content()
        assert "cdn.jsdelivr.net" not in html and "cdnjs.cloudflare.com" not in html
        assert page.context.outside_requests == []
    finally:
        page.context.close()


# -- issue 12 items 11-13 ----------------------------------------------------------------------


def active_segment(page, group: str) -> str:
    return page.locator(f".aq-{group} button.mod-active").inner_text()


def test_back_and_forward_walk_the_drill_downs(browser, voila_server, demo_gateway, capsys, shots):
    """A row click is a history step (Back returns to the level above); the filters replace
    the address. Back restores the level, the figures and the filters of that step."""
    page = open_page(browser, voila_server, DEMO_ADMIN_EMAIL, query="org=all&span=1d")
    try:
        wait_for_heading(page, "Organization")
        wait_for_address(page, org="all", span="1d", top="100", token=None)
        start = page.evaluate("() => history.length")
        all_orgs = report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, org="all", span="1d")
        globex = report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, org=2, span="1w")
        pipeline = report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, org=2, token=20, span="1w")

        click_row(page, "Globex Labs")  # org -> its tokens: a step
        wait_for_heading(page, "API Key")
        wait_for_address(page, org="2", span="1d", token=None)
        page.locator(".aq-span button", has_text="1w").click()  # a filter: in place
        wait_for_address(page, span="1w")
        wait_for_tiles(page, expected_tiles(globex))
        click_row(page, "ml-pipeline")  # token -> its user_ids: a step
        wait_for_heading(page, "User ID")
        wait_for_address(page, org="2", span="1w", token="20")
        wait_for_tiles(page, expected_tiles(pipeline))
        assert "ml-pipeline" in page.locator(".aq-title").inner_text()
        assert page.evaluate("() => history.length") == start + 2

        page.go_back()  # -> Globex's tokens, as last seen (1w)
        wait_for_address(page, org="2", span="1w", token=None)
        wait_for_heading(page, "API Key")
        wait_for_tiles(page, expected_tiles(globex))
        assert [row["cells"] for row in table(page)["rows"]] == row_cells(globex, "token")
        assert "ml-pipeline" not in page.locator(".aq-title").inner_text()
        assert not page.locator(".aq-back-tokens").is_visible()
        assert page.locator(".aq-org-select select").input_value() == "Globex Labs"

        page.go_back()  # -> every org, 1d, as it started
        wait_for_address(page, org="all", span="1d", token=None)
        wait_for_heading(page, "Organization")
        wait_for_tiles(page, expected_tiles(all_orgs))
        assert [row["cells"] for row in table(page)["rows"]] == row_cells(all_orgs, "org")
        assert active_segment(page, "span") == "1d"
        assert page.locator(".aq-org-select select").input_value() == "All"
        page.screenshot(path=shots / "back-to-all-orgs.png")

        page.go_forward()  # and Forward goes down again
        wait_for_address(page, org="2", span="1w", token=None)
        wait_for_heading(page, "API Key")
        wait_for_tiles(page, expected_tiles(globex))
        assert page.evaluate("() => history.length") == start + 2  # walking adds no entries
        assert urlsplit(page.url).path == urlsplit(voila_server.url).path
        assert page.widget_errors == []
    finally:
        page.context.close()


def test_token_rows_that_do_not_open_say_why_on_hover(browser, voila_server):
    from usage_lib.render.labels import CLOSED_TOKEN_HINT

    page = open_page(browser, voila_server, DEMO_USER_EMAIL)
    try:
        wait_for_heading(page, "API Key")
        rows = page.evaluate(
            "() => [...document.querySelectorAll('.aq-table .aq-row')].map(r =>"
            " ({opens: r.classList.contains('aq-clickable'), title: r.getAttribute('title')}))"
        )
        closed = [index for index, row in enumerate(rows) if not row["opens"]]
        opened = [index for index, row in enumerate(rows) if row["opens"]]
        assert closed and opened, rows
        assert all(rows[index]["title"] == CLOSED_TOKEN_HINT for index in closed)
        assert all(rows[index]["title"] is None for index in opened)
        # What the pointer rests on over a row: over a closed row the row itself (no click
        # target in the way), and the title the browser shows there is the hint.
        for index in (closed[0], opened[0]):
            # (Under the Usage | Health switch the last rows lie below a 768 px high first
            # screen: a person scrolls to them, and elementFromPoint sees only the viewport.)
            row = page.locator(".aq-table .aq-row").nth(index)
            row.scroll_into_view_if_needed()
            box = row.bounding_box()
            x, y = box["x"] + box["width"] * 0.4, box["y"] + box["height"] / 2
            page.mouse.move(x, y)
            shown = page.evaluate(
                "([x, y]) => { const e = document.elementFromPoint(x, y); const t = e && e.closest('[title]');"
                " return t ? t.getAttribute('title') : ''; }",
                [x, y],
            )
            assert (CLOSED_TOKEN_HINT in shown) == (index in closed), (index, shown)
        assert page.widget_errors == []
    finally:
        page.context.close()


def test_charts_axes_partial_days_and_the_failed_share(browser, voila_server, demo_gateway, capsys, shots):
    from usage_lib.ui.charts import PARTIAL, PRIMARY

    page = open_page(browser, voila_server, DEMO_ADMIN_EMAIL, query="span=1w")
    try:
        data = report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, span="1w")
        wait_for_tiles(page, expected_tiles(data))
        page.wait_for_function("() => document.querySelectorAll('.aq-timeseries rect.bar').length === 8")
        labels = page.eval_on_selector_all(".aq-timeseries text.axislabel", "ts => ts.map(t => t.textContent)")
        assert sorted(labels) == ["Day (UTC) \u00b7 pale bars: partial days", "Requests"]
        assert page.eval_on_selector_all(".aq-models text.axislabel", "ts => ts.map(t => t.textContent).filter(Boolean)") == ["Requests"]

        def rgb(hex_color: str) -> str:
            return "rgb({}, {}, {})".format(*(int(hex_color[i:i + 2], 16) for i in (1, 3, 5)))

        fills = page.eval_on_selector_all(".aq-timeseries rect.bar", "bars => bars.map(b => getComputedStyle(b).fill)")
        assert fills == [rgb(PARTIAL)] + [rgb(PRIMARY)] * 6 + [rgb(PARTIAL)]
        ticks = page.eval_on_selector_all(".aq-timeseries g.tick text", "ts => ts.map(t => t.textContent)")
        assert "17 Nov" in ticks and "24 Nov" in ticks  # the partial first day is labelled

        # The models axis ends just above the longest bar, whose label stays whole in the margin.
        longest = max(row["requests"] for row in data["models"])
        geometry = page.evaluate(
            "() => { const fig = document.querySelector('.aq-models svg').getBoundingClientRect();"
            " const bars = [...document.querySelectorAll('.aq-models rect.bar')].map(b => b.getBoundingClientRect());"
            " const labels = [...document.querySelectorAll('.aq-models text.bar_label')].map(t => t.getBoundingClientRect());"
            " return {figRight: fig.right, barRight: Math.max(...bars.map(b => b.right)), labelRight: Math.max(...labels.map(l => l.right)),"
            "  labelWidths: labels.map(l => l.width),"
            "  clipped: !!document.querySelector('.aq-models rect.bar').closest('[clip-path]')}; }"
        )
        assert not geometry["clipped"] and geometry["barRight"] < geometry["labelRight"] <= geometry["figRight"]
        assert min(geometry["labelWidths"]) > 0
        count_ticks = page.evaluate(
            "() => [...document.querySelectorAll('.aq-models g.tick text')].map(t => t.textContent).filter(t => /^[0-9.,]+[kMGT]?$/.test(t))"
        )
        end = float(count_ticks[-1].replace("k", "e3").replace(",", ""))
        assert longest < end and (end - longest) / end < 0.25, (longest, count_ticks)

        # The failed share sits beside the count, outside `.aq-tile-value`; the tiles stay one height.
        metrics = data["metrics"]
        share = page.locator(".aq-tile-failed-requests .aq-tile-share")
        assert share.inner_text() == f"{100 * metrics['failed_requests'] / metrics['total_requests']:.1f}% of total"
        assert tiles(page)["Failed Requests"] == f"{metrics['failed_requests']:,}"
        heights = page.eval_on_selector_all(".aq-tile", "ts => ts.map(t => Math.round(t.getBoundingClientRect().height))")
        assert len(set(heights)) == 1, heights
        page.screenshot(path=shots / "charts-1w-1366x768.png")
        assert page.widget_errors == []
    finally:
        page.context.close()


def test_a_custom_range_from_the_address_or_the_picker_and_a_frame_button_replacing_it(browser, voila_server,
                                                                                       demo_gateway, capsys, shots):
    """A range from the address (times without an offset in the server's zone) fills the
    range inputs; another one typed there and applied replaces it, in the address too. No
    frame button is active meanwhile; one replaces the range."""
    page = open_page(browser, voila_server, DEMO_ADMIN_EMAIL,
                     query="org=all&start=2026-11-20T00:00&end=2026-11-23T06:00&top=25")
    try:
        ranged = report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, org="all", top=25,
                        start="2026-11-20T00:00", end="2026-11-23T06:00")
        assert ranged["scope"]["span"] == "custom" and ranged["metrics"]["total_requests"] > 0
        wait_for_tiles(page, expected_tiles(ranged))
        wait_for_address(page, org="all", start="2026-11-20T00:00:00+00:00", end="2026-11-23T06:00:00+00:00",
                         span=None, top="25")
        assert page.locator(".aq-span button.mod-active").count() == 0
        assert page.locator(".aq-timeseries rect.bar").count() == 4   # days 20..23
        assert "2026-11-20 00:00:00 to 2026-11-23 06:00:00 (UTC)" in page.locator(".aq-asof").inner_text()
        start, end = page.locator(".aq-range-start input"), page.locator(".aq-range-end input")
        assert (start.input_value(), end.input_value()) == ("2026-11-20T00:00", "2026-11-23T06:00")
        assert page.locator(".aq-range-zone").inner_text() == "UTC"

        # The picker: two times in the server's zone, Apply.
        start.fill("2026-11-23T09:00")
        end.fill("2026-11-23T11:30")
        page.locator(".aq-range-apply").click()
        picked = report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, org="all", top=25,
                        start="2026-11-23T09:00", end="2026-11-23T11:30")
        assert picked["metrics"]["total_requests"] != ranged["metrics"]["total_requests"]
        wait_for_address(page, org="all", start="2026-11-23T09:00:00+00:00", end="2026-11-23T11:30:00+00:00",
                         span=None, top="25")
        wait_for_tiles(page, expected_tiles(picked))
        assert page.locator(".aq-timeseries rect.bar").count() == 3   # hours 09..11
        assert page.locator(".aq-span button.mod-active").count() == 0
        page.screenshot(path=shots / "custom-range.png")

        page.locator(".aq-span button", has_text="1m").click()
        wait_for_address(page, org="all", span="1m", start=None, end=None)
        wait_for_tiles(page, expected_tiles(report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, org="all", span="1m")))
        assert active_segment(page, "span") == "1m"
        assert (start.input_value(), end.input_value()) == ("", "")
        assert page.widget_errors == []
    finally:
        page.context.close()


def test_the_browsers_zone_is_offered_second_and_choosing_it_fills_the_address(browser, voila_server, demo_gateway,
                                                                             capsys, shots):
    """The page learns the browser's own zone (New York's here: Playwright's `timezone_id`)
    and offers it second in the zone picker, after the operator's (the server's UTC).
    Choosing it redraws the figures on New York's clock and puts `tz` into the address,
    which reopens the view in that zone."""
    context = new_context(browser, viewport={"width": 1366, "height": 768}, extra_http_headers={HEADER: DEMO_ADMIN_EMAIL},
                          timezone_id="America/New_York")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Could not create" in m.text else None)
    picker = ".aq-zone-select select"
    try:
        page.goto(voila_server.url + "?org=all&span=1w", timeout=STEP_TIMEOUT_MS)
        page.wait_for_function(FIRST_RENDER, timeout=60_000)
        assert page.evaluate("() => Intl.DateTimeFormat().resolvedOptions().timeZone") == "America/New_York"
        page.wait_for_function(
            "(picker) => { const s = document.querySelector(picker);"
            " return s && s.options.length > 2 && s.options[1].textContent.startsWith('America/New_York'); }",
            arg=picker, timeout=STEP_TIMEOUT_MS,
        )
        # (The widget writes spaces in option texts as no-break spaces.)
        first = page.eval_on_selector(picker, "s => [...s.options].slice(0, 3).map(o => o.textContent.replace(/\\u00a0/g, ' '))")
        assert first[:2] == ["UTC (default)", "America/New_York (browser)"]
        assert page.eval_on_selector(picker, "s => s.options.length") > 400  # then every IANA zone
        assert page.eval_on_selector(picker, "s => s.options[s.selectedIndex].textContent.startsWith('UTC')")
        wait_for_address(page, org="all", span="1w", top="100", tz=None)  # the operator's zone: not in the address

        page.select_option(picker, index=1)
        wait_for_address(page, org="all", span="1w", top="100", tz="America/New_York")
        assert "tz=America%2FNew_York" in page.url
        data = report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, org="all", span="1w", tz="America/New_York")
        assert data["scope"]["tz"] == "America/New_York"
        wait_for_tiles(page, expected_tiles(data))
        page.wait_for_function(
            "() => document.querySelector('.aq-asof').textContent.includes('(America/New_York)')"
            " && [...document.querySelectorAll('.aq-timeseries text.axislabel')].some(t => t.textContent.startsWith('Day (America/New_York)'))",
            timeout=STEP_TIMEOUT_MS,
        )
        assert page.locator(".aq-timeseries rect.bar").count() == len(data["timeseries"])
        page.wait_for_timeout(400)  # the panels' fade-in after a refresh
        page.screenshot(path=shots / "zone-picker-1366x768.png")

        # The address reopens the view in that zone.
        page.goto(page.url, timeout=STEP_TIMEOUT_MS)
        page.wait_for_function(FIRST_RENDER, timeout=60_000)
        wait_for_tiles(page, expected_tiles(data))
        assert "(America/New_York)" in page.locator(".aq-asof").inner_text()
        page.wait_for_function(
            "(picker) => { const s = document.querySelector(picker);"
            " return s && s.selectedIndex === 1 && s.options[1].textContent.startsWith('America/New_York'); }",
            arg=picker, timeout=STEP_TIMEOUT_MS,
        )
        wait_for_address(page, tz="America/New_York")
        assert errors == []
    finally:
        context.close()


def test_the_cost_tile_the_change_lines_and_the_new_views(browser, voila_server, demo_gateway, capsys, shots):
    """Issue 14 on the served page: the cost tile with its unpriced note, a change line on
    every tile, the time chart's views, cost by model and the stopped rows."""
    page = open_page(browser, voila_server, DEMO_ADMIN_EMAIL, query="org=all&span=1w")
    try:
        data = report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, org="all", span="1w")
        wait_for_tiles(page, expected_tiles(data))
        cost = page.locator(".aq-tile-cost")
        assert cost.locator(".aq-tile-label").inner_text() == "Cost"
        assert cost.locator(".aq-tile-value").inner_text() == expected_tiles(data)["Cost"]
        assert expected_tiles(data)["Cost"].endswith(" USD")
        assert cost.locator(".aq-tile-note").inner_text().startswith(f"leaves out {data['cost']['unpriced_requests']:,} requests")
        changes = page.eval_on_selector_all(
            ".aq-tile", "ts => ts.map(t => { const c = t.querySelector('.aq-tile-change'); return c ? c.innerText : ''; })")
        assert len(changes) == 8
        for line, (key, value) in zip(changes, data["changes"].items()):
            text = formatting.change(value)
            assert text in line and "vs previous 7 days" in line, (key, line)
        page.screenshot(path=shots / "issue14-admin-all-1w.png")

        # The time chart's views: tokens stacked (input, output), then cost per bucket.
        page.locator(".aq-time-switch button", has_text="Tokens").click()
        page.wait_for_function("() => document.querySelectorAll('.aq-tokens-time rect.bar').length === 16")
        assert "Tokens Over Time" in page.locator(".aq-card-timeseries h3").inner_text()
        assert page.locator(".aq-tokens-time").is_visible() and page.locator(".aq-legend").inner_text().split() == ["Input", "Output"]
        page.locator(".aq-time-switch button", has_text="Cost").click()
        page.wait_for_function("() => document.querySelectorAll('.aq-cost-time rect.bar').length === 8")
        page.locator(".aq-cost-time rect.bar").nth(3).hover()
        page.wait_for_function("() => [...document.querySelectorAll('.aq-chart-tip')].some(t => t.textContent.includes('USD'))")
        tip = page.evaluate("() => [...document.querySelectorAll('.aq-chart-tip')].map(t => t.innerText).find(t => t.includes('USD'))")
        bucket = data["timeseries"][3]
        assert bucket["bucket"][:10] in tip and formatting.money(Decimal(bucket["cost"]), "USD") in tip
        page.mouse.move(1, 1)
        page.locator(".aq-model-switch button", has_text="Cost").click()
        page.wait_for_function("() => document.querySelector('.aq-card-models h3').textContent === 'Cost by Model'")
        assert "Cost (USD)" in page.locator(".aq-models").inner_text()

        # The stopped rows after the ranked ones, greyed, without a click target.
        page.locator(".aq-span button", has_text="1h").click()
        hour = report(capsys, demo_gateway, DEMO_ADMIN_EMAIL, org="all", span="1h")
        wait_for_tiles(page, expected_tiles(hour))
        page.wait_for_selector(".aq-table .aq-stopped", timeout=STEP_TIMEOUT_MS)
        stopped = page.eval_on_selector_all(".aq-table .aq-stopped", "rs => rs.map(r => r.innerText.replace(/\\s+/g, ' '))")
        assert [row["name"] for row in hour["top"]["stopped"]] == ["Initech"] and len(stopped) == 1
        assert "Initech" in stopped[0] and "stopped" in stopped[0]
        assert page.locator(".aq-stopped-head").text_content() == "Stopped since the previous hour"
        assert page.locator(".aq-row-targets .widget-radio-box > label", has_text="Open Initech").count() == 0
        assert [row["cells"] for row in table(page)["rows"]] == row_cells(hour, "org")
        full_screenshot(page, shots / "issue14-admin-all-1h-cost-views.png")
        assert page.widget_errors == []
    finally:
        page.context.close()


# Counts the refreshes the page has finished: every time the dashboard loses `aq-loading`.
COUNT_REFRESHES = (
    "() => { window.aqRefreshes = 0; const dashboard = document.querySelector('.aq-dashboard');"
    " new MutationObserver(records => { for (const r of records) if ((r.oldValue || '').includes('aq-loading')"
    " && !r.target.classList.contains('aq-loading')) window.aqRefreshes += 1; })"
    ".observe(dashboard, { attributes: true, attributeFilter: ['class'], attributeOldValue: true }); }"
)
SET_VISIBILITY = (
    "(state) => { Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => state });"
    " document.dispatchEvent(new Event('visibilitychange')); }"
)


def test_auto_refresh_from_the_address_ticks_only_while_the_page_is_visible(browser, voila_server, shots):
    """`?refresh=30s` opens with auto-refresh on (the control says so, the address keeps
    it); on the page's clock (Playwright's, fast-forwarded) a tick due while the page is
    hidden waits until it is shown again, then every 30 s refreshes the view."""
    context = new_context(browser, viewport={"width": 1366, "height": 768}, extra_http_headers={HEADER: DEMO_ADMIN_EMAIL})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.clock.install()
        page.goto(voila_server.url + "?org=all&span=1w&refresh=30s", timeout=STEP_TIMEOUT_MS)
        page.wait_for_function(FIRST_RENDER, timeout=60_000)
        wait_for_address(page, org="all", span="1w", refresh="30s")
        control = ".aq-refresh-select select"
        # (The widget writes spaces in option texts as no-break spaces.)
        shown = page.eval_on_selector(control, "s => [s.selectedIndex, [...s.options].map(o => o.textContent.replace(/\\u00a0/g, ' '))]")
        assert shown == [1, ["Off", "30 s", "1 min", "5 min"]]
        assert page.locator(".aq-control-refresh .aq-control-label").inner_text().lower() == "auto-refresh"
        page.screenshot(path=shots / "auto-refresh-1366x768.png")

        page.evaluate(COUNT_REFRESHES)
        page.evaluate(SET_VISIBILITY, "hidden")
        page.clock.fast_forward(30_000)
        page.wait_for_timeout(500)
        assert page.evaluate("() => window.aqRefreshes") == 0
        page.evaluate(SET_VISIBILITY, "visible")  # the tick missed while hidden, at once
        page.wait_for_function("() => window.aqRefreshes === 1", timeout=STEP_TIMEOUT_MS)
        page.clock.fast_forward(30_000)
        page.wait_for_function("() => window.aqRefreshes === 2", timeout=STEP_TIMEOUT_MS)

        page.select_option(control, label="Off")
        wait_for_address(page, org="all", span="1w", refresh=None)
        assert errors == []
    finally:
        context.close()


HEALTH_DRAWN = (
    "() => !document.querySelector('.aq-dashboard.aq-loading')"
    " && [...document.querySelectorAll('.aq-health-tile .aq-pct-value')].some(v => v.textContent !== '\u2014')"
    " && document.querySelectorAll('.aq-latency-time path.line').length > 0"
    " && document.querySelectorAll('.aq-failures-time rect.bar').length > 0"
)


def test_the_health_section_from_the_address(browser, voila_server, dashboard_config, shots):
    """`?view=health` opens the Health section (issue 15 item 7): its tiles show the core's
    figures, the org admin sees the headroom table, and the Usage tab switches back."""
    from usage_lib.core.urlstate import section_from_query
    from usage_lib.core.usage import Selection
    from usage_lib.ui.health import TILES

    page = start_page(browser, voila_server, DEMO_ORG_ADMIN_EMAIL, query="span=1w&view=health")
    try:
        page.wait_for_load_state("load", timeout=60_000)
        page.wait_for_function(HEALTH_DRAWN, timeout=60_000)
        shown = page.evaluate(
            "() => Object.fromEntries([...document.querySelectorAll('.aq-health-tile')].map(t =>"
            " [t.querySelector('.aq-tile-label').textContent, t.querySelector('.aq-tile-value').innerText"
            "  .replace(/\\s+/g, ' ').trim()]))")
        assert list(shown) == list(TILES.values())
        health = dashboard_config(DEMO_ORG_ADMIN_EMAIL).compute_health(Selection(span="1w", tz="UTC", now=DEMO_NOW))
        assert shown[TILES["in_flight"]] == formatting.count(health.in_flight)
        assert shown[TILES["completion"]].startswith(f"p50 {formatting.milliseconds(health.latency.loc['completion', 'p50'])}")
        assert page.locator(".aq-headroom table").count() == 1
        assert page.locator(".aq-sections-switch .mod-active").inner_text() == "Health"
        assert section_from_query(page.evaluate("location.search")[1:]) == "health"
        page.screenshot(path=str(shots / "health-org-admin.png"))
        page.locator(".aq-sections-switch button", has_text="Usage").click()
        page.wait_for_function(FIRST_RENDER, timeout=STEP_TIMEOUT_MS)
        page.wait_for_function("() => !location.search.includes('view=')", timeout=STEP_TIMEOUT_MS)
        assert page.locator(".aq-health-tile").count() == 0
        assert page.widget_errors == []
    finally:
        page.context.close()
