"""Snapshots (issue 5): every format for a global admin and a standard user, on a tiny
gateway with known numbers; the figures inside each file equal the JSON report. The PDF
holds both of the page's sections, Usage then Health, a page each; a PNG the section
asked for (issue 15 item 7).

Lean on purpose (the machine is shared): one tiny SQLite gateway per module, the HTML
made once per role, one Voila server per role (both started at once) for PDF and PNG,
and the session's Chromium.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
import struct
import zipfile
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs

import os

import numpy as np
import pytest

from tests.support import unavailable
from tests.support.gateway import NOW, GatewayBuilder, build_tiny_org, sqlite_url
from usage_lib import snapshot
from usage_lib.cli import main
from usage_lib.core.usage import Selection
from usage_lib.errors import UsageError
from usage_lib.render.files import top_csv
from usage_lib.serving import capture, voila_process
from usage_lib.settings import Settings

# role -> (viewer, --org): root is the tiny org's global admin (All orgs), ursula a
# standard user of Acme (her own token, her team's service account, her email).
ROLES = {"admin": ("root", "all"), "user": ("ursula", None)}
# A token name that is a spreadsheet formula and HTML at once.
TRICKY_TOKEN = "=HYPERLINK(\"x\")<i>ok</i>"
ROUTER_YAML = "model_list:\n  - model_name: gpt-4o\n  - model_name: text-embedding-3-small\n  - model_name: unused-model\n"
HTML_BUDGET = 6 * 1024 * 1024
#: The CSV tables of an export, by part: the four of issue 5, then the health figures'
#: (issue 15; both viewers' gateway has limit columns, but only the admin gets headroom).
CSV_PARTS = ("top", "timeseries", "models", "summary", "latency", "latency_timeseries", "failures",
             "failures_by_model", "statuses")
PARTS = {"admin": CSV_PARTS + ("headroom",), "user": CSV_PARTS}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("snapshot")
    g = GatewayBuilder(sqlite_url(folder / "gateway.sqlite3"))
    org = build_tiny_org(g)
    tricky = g.token(org.users["ursula"], TRICKY_TOKEN)
    g.request(tricky, NOW - timedelta(minutes=30), model="text-embedding-3-small", path="/v1/embeddings",
              status=500, ms=40, input_tokens=3_000_000_000, output_tokens=0, count=2)
    g.close()
    router = folder / "router.yaml"
    router.write_text(ROUTER_YAML)
    return SimpleNamespace(url=g.url, router=router, folder=folder)


def argv(tiny, role: str, out: Path) -> list[str]:
    viewer, org = ROLES[role]
    return ["snapshot", "--db", tiny.url, "--router-config", str(tiny.router), "--viewer", viewer,
            "--now", NOW.isoformat(), "--out", str(out)] + (["--org", org] if org else [])


def settings_for(tiny, role: str) -> tuple[Settings, Selection]:
    """What the command line makes of `argv(tiny, role, ...)`."""
    viewer, org = ROLES[role]
    settings = Settings(db_url=tiny.url, router_config=tiny.router, viewer=viewer, view=Selection(now=NOW))
    return settings, settings.select(org=org)


@pytest.fixture(scope="module")
def reports(tiny):
    """role -> (the Usage, its JSON report with the health figures) the files are checked against."""
    out = {}
    for role in ROLES:
        settings, selection = Settings(db_url=tiny.url, router_config=tiny.router), settings_for(tiny, role)[1]
        usage = settings.compute(selection, ROLES[role][0])
        health = settings.compute_health(selection, ROLES[role][0])
        out[role] = (usage, {**usage.to_json(), "health": health.to_json()})
    return out


def without_health(report: dict) -> dict:
    """A report without its health figures (the live page's exports do not compute them)."""
    return {key: value for key, value in report.items() if key != "health"}


def count(value: int) -> str:
    return f"{value:,}"


def expected_figures(report: dict) -> dict:
    """What the page (and the static copy) must show for `report`, written independently
    of the exporter: tile texts (the cost tile's too), and per table row its rank, shown
    name and four counts."""
    metrics = report["metrics"]
    tiles = {key: count(value) for key, value in metrics.items() if not key.startswith("avg_")}
    tiles.update({key: f"{value:,.1f} ms" for key, value in metrics.items() if key.startswith("avg_")})
    cost = report["cost"]  # the tiny org's router config has no prices: no currency
    tiles["cost"] = "\u2014" if cost["currency"] is None else f"{Decimal(cost['total']):,.2f} {cost['currency']}"
    rows = []
    for row in report["top"]["rows"]:
        name = row.get("service_account") or row["name"] or "N/A"
        rows.append([str(row["rank"]), name] + [count(row[key]) for key in ("requests", "input_tokens", "output_tokens", "total_tokens")])
    return {"tiles": tiles, "rows": rows}


# What a drawn dashboard shows: the seven tiles' texts and the table's rows (cell texts).
PAGE_FIGURES_JS = """
() => {
  const root = document.querySelector('.aq-dashboard');
  const text = el => (el ? el.textContent.replace(/\\s+/g, ' ').trim() : null);
  const tiles = {};
  for (const tile of root.querySelectorAll('.aq-tile')) {
    const key = Array.from(tile.classList).find(c => c.startsWith('aq-tile-') && c !== 'aq-tile-alert');
    tiles[key.slice('aq-tile-'.length).replace(/-/g, '_')] = text(tile.querySelector('.aq-tile-value'));
  }
  const rows = Array.from(root.querySelectorAll('.aq-table .aq-row')).map(
    row => Array.from(row.querySelectorAll('.aq-td')).map(cell => text(cell.querySelector('.aq-name-text') || cell)));
  return {tiles: tiles, rows: rows};
}
"""


def shown_figures(page) -> dict:
    shown = page.evaluate(PAGE_FIGURES_JS)
    rows = sorted((row[:6] for row in shown["rows"]), key=lambda row: int(row[0]))
    return {"tiles": shown["tiles"], "rows": rows}


def test_the_two_roles_see_different_known_figures(reports):
    admin, user = reports["admin"][1], reports["user"][1]
    assert admin["top"]["kind"] == "org" and user["top"]["kind"] == "token"
    # ursula: her token 1, ml-bot 4, uwe's token with her email 64, the tricky token 2.
    assert user["metrics"]["total_requests"] == 1 + 4 + 64 + 2
    assert admin["metrics"]["total_requests"] == 1 + 2 + 64 + 512 + 1024 + 4 + 8 + 128 + 16 + 256 + 32 + 2


# -- JSON -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_json_is_the_report(tiny, reports, role, capsys):
    out = tiny.folder / f"{role}.json"
    assert main(argv(tiny, role, out)) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert json.loads(out.read_text()) == reports[role][1]
    # ... byte for byte what `report --format json` prints
    report_argv = [a for a in argv(tiny, role, out) if a not in ("--out", str(out))]
    report_argv[0:1] = ["report"]
    assert main(report_argv + ["--format", "json"]) == 0
    assert capsys.readouterr().out == out.read_text()


def test_json_and_csv_of_a_custom_range(tiny, capsys):
    # The tricky token's two requests (30 minutes before now) are in; the rest (an hour before) not.
    out = tiny.folder / "range.json"
    window = ["--start", (NOW - timedelta(minutes=45)).isoformat(), "--end", NOW.isoformat()]
    assert main(argv(tiny, "user", out) + window) == 0
    data = json.loads(out.read_text())
    assert (data["scope"]["span"], data["scope"]["window_end"]) == ("custom", NOW.isoformat())
    assert data["metrics"]["total_requests"] == 2 and len(data["timeseries"]) == 45
    settings, selection = settings_for(tiny, "user")
    selection = replace(selection, start=NOW - timedelta(minutes=45), end=NOW)
    assert data == {**settings.compute(selection, ROLES["user"][0]).to_json(),
                    "health": settings.compute_health(selection, ROLES["user"][0]).to_json()}
    csv_out = tiny.folder / "range.csv"
    assert main(argv(tiny, "user", csv_out) + window) == 0
    summary = {line["key"]: line["value"] for line in read_csv(Path(f"{tiny.folder}/range.summary.csv").read_bytes())}
    assert (summary["span"], summary["window_start"], summary["window_end"]) == (
        "custom", data["scope"]["window_start"], NOW.isoformat())
    capsys.readouterr()


def test_a_captured_custom_range_names_its_start_and_end_not_a_span():
    start = NOW - timedelta(hours=3)
    query = parse_qs(capture.page_query(Selection(org="all", span="1w", start=start, end="2026-11-24T11:00")))
    assert query == {"org": ["all"], "top": ["100"], "start": [start.isoformat()], "end": ["2026-11-24T11:00"]}
    assert parse_qs(capture.page_query(Selection(span="1m"))) == {"span": ["1m"], "top": ["100"]}


# -- CSV ------------------------------------------------------------------------------


def read_csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def unformula(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:2] in ("=", "+", "-", "@") else text


def check_csv_files(files: dict[str, bytes], report: dict) -> None:
    top, series, models, summary, latency, _over_time, failures, by_model, statuses = (
        read_csv(data) for data in list(files.values())[:9])
    rows = report["top"]["rows"] + report["top"]["stopped"]
    assert len(top) == len(rows)
    for line, row in zip(top, rows):
        assert line["kind"] == report["top"]["kind"]
        assert int(line["rank"]) == row["rank"]
        assert line["id"] == ("" if row["id"] is None else str(row["id"]))
        assert unformula(line["name"]) == (row["name"] or "")
        for key in ("requests", "input_tokens", "output_tokens", "total_tokens"):
            assert int(line[key]) == row[key], key
        assert line["cost"] == row["cost"]  # the exact decimal string
        if report["top"]["kind"] == "token":
            assert line["owner_email"] == (row["owner_email"] or "")
            assert line["service_account"] == (row["service_account"] or "")
    assert [(p["bucket"], int(p["requests"])) for p in series] == [
        (p["bucket"], p["requests"]) for p in report["timeseries"]
    ]
    assert [(m["model"], int(m["requests"])) for m in models] == [(m["model"], m["requests"]) for m in report["models"]]
    assert [(m["cost"], int(m["unpriced_requests"])) for m in models] == [
        (m["cost"], m["unpriced_requests"]) for m in report["models"]]
    values = {line["key"]: line["value"] for line in summary}
    for key, value in report["metrics"].items():
        assert float(values[key]) == pytest.approx(value, rel=1e-15), key
        if isinstance(value, int):
            assert values[key] == str(value)
    assert values["viewer"] == report["scope"]["viewer"] and values["now"] == report["scope"]["now"]
    assert values["cost"] == report["cost"]["total"] and values["currency"] == (report["cost"]["currency"] or "")
    health = report["health"]
    assert values["in_flight"] == str(health["in_flight"])
    assert [(line["kind"], int(line["requests"])) for line in latency
            if line["measure"] == "response" and line["model"] == ""] == [
        (row["kind"], row["requests"]) for row in health["latency"]]
    assert [int(line["failed"]) for line in failures] == [p["failed"] for p in health["failures_over_time"]]
    assert [unformula(line["model"]) for line in by_model] == [m["model"] for m in health["failures_by_model"]]
    assert [(line["status_code"], int(line["requests"])) for line in statuses] == [
        ("" if s["status_code"] is None else str(s["status_code"]), s["requests"]) for s in health["statuses"]]


@pytest.mark.parametrize("role", ROLES)
def test_csv_files_hold_the_report(tiny, reports, role):
    out = tiny.folder / f"{role}.csv"
    written = snapshot.export_snapshot(*settings_for(tiny, role), out)
    assert [p.name for p in written] == [f"{role}.csv" if part == "top" else f"{role}.{part}.csv" for part in PARTS[role]]
    check_csv_files({p.name: p.read_bytes() for p in written}, reports[role][1])


@pytest.mark.parametrize("role", ROLES)
def test_zip_holds_the_same_csv_files(tiny, reports, role):
    out = tiny.folder / f"{role}.zip"
    assert snapshot.export_snapshot(*settings_for(tiny, role), out) == [out]
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == [f"{part}.csv" for part in PARTS[role]]
        files = {name: archive.read(name) for name in archive.namelist()}
    check_csv_files(files, reports[role][1])
    assert files["top.csv"] == top_csv(reports[role][1])


def test_csv_defuses_spreadsheet_formulas(reports):
    data = top_csv(reports["user"][1]).decode()
    assert "'=HYPERLINK" in data and "\n=" not in data.replace("\r", "")


def test_unknown_suffix_is_a_one_line_error(tiny, capsys):
    assert main(argv(tiny, "user", tiny.folder / "x.docx")) == 2
    assert "use one of .html, .json, .csv, .zip, .txt, .pdf, .png" in capsys.readouterr().err


# -- HTML -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def html_files(tiny):
    """role -> the offline HTML made by the command line."""
    try:
        from usage_lib.render.assets import load_bundles

        load_bundles()
    except UsageError as exc:
        unavailable(str(exc))
    files = {}
    for role in ROLES:
        out = tiny.folder / f"{role}.html"
        assert main(argv(tiny, role, out)) == 0
        files[role] = out
    return files


def static_figures(page: str) -> dict:
    tiles = {
        key: html.unescape(value)
        for key, value in re.findall(
            r'data-metric="(\w+)"><div class="aq-static-label">.*?</div><div class="aq-static-value">(.*?)</div>', page
        )
    }
    table = re.search(r'<table class="aq-static-table".*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    rows = [[html.unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)] for row in re.findall(r"<tr>(.*?)</tr>", table)]
    return {"tiles": tiles, "rows": [row[:6] for row in rows]}


def widget_state(page: str) -> dict:
    found = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', page, re.S)
    return json.loads(found.group(1))["state"]


def bars_values(state: dict, figure_class: str) -> tuple[list, list]:
    """x and y of the figure's requests bars (its last mark, drawn on top), decoded."""
    figure = next(m for m in state.values() if figure_class in m["state"].get("_dom_classes", []))
    bars = state[figure["state"]["marks"][-1].removeprefix("IPY_MODEL_")]
    values = {}
    for name in ("x", "y"):
        spec = bars["state"][name]
        buffer = next((b for b in bars.get("buffers", []) if b["path"] == [name, "value"]), None)
        if buffer is None:
            values[name] = spec["value"] if isinstance(spec, dict) else spec
        else:
            values[name] = np.frombuffer(base64.b64decode(buffer["data"]), dtype=spec["dtype"]).tolist()
    return values["x"], values["y"]


@pytest.mark.parametrize("role", ROLES)
def test_html_file_holds_the_report(html_files, reports, role):
    usage, report = reports[role]
    page = html_files[role].read_text(encoding="utf-8")
    assert html_files[role].stat().st_size < HTML_BUDGET
    embedded = re.search(r'<script type="application/json" id="aqueduct-usage-report">(.*?)</script>', page, re.S)
    assert json.loads(embedded.group(1)) == report
    # The static copy (readable without JavaScript) shows the page's texts.
    assert static_figures(page) == expected_figures(report)
    header = re.search(r'<header class="aq-snapshot-header".*?</header>', page, re.S).group(0)
    assert html.escape(report["scope"]["viewer"]) in header and "2026-11-24 12:00:00 (UTC)" in header
    # The charts' widget state holds the report's series.
    state = widget_state(page)
    _, counts = bars_values(state, "aq-timeseries")
    assert counts == [p["requests"] for p in report["timeseries"]]
    names, counts = bars_values(state, "aq-models")
    assert counts == [m["requests"] for m in report["models"]]
    assert names == [m["model"] or "N/A" for m in report["models"]]
    # No script or style is fetched: everything is inline.
    markup = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S)
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", markup)
    assert TRICKY_TOKEN not in page  # only escaped


@pytest.mark.parametrize("role", ROLES)
def test_html_draws_offline_in_chromium(browser, html_files, reports, role, test_output_dir):
    usage, report = reports[role]
    path = html_files[role].resolve()
    context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    requests, errors = [], []
    context.route("**/*", lambda route: route.continue_() if route.request.url == path.as_uri() else route.abort())
    try:
        page = context.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(path.as_uri())
        page.wait_for_function("() => document.body.classList.contains('aq-widgets-ready')", timeout=30_000)
        shown, expected = shown_figures(page), expected_figures(report)
        if "cost" not in shown["tiles"]:  # the live page's cost tile is the dashboard's (issue 14)
            del expected["tiles"]["cost"]
        assert shown == expected
        counts = page.evaluate("""() => ['.aq-timeseries', '.aq-models'].map(
            css => document.querySelectorAll(css + ' g.bargroup rect.bar').length)""")
        assert counts == [len(report["timeseries"]), len(report["models"])]
        assert page.evaluate("() => getComputedStyle(document.getElementById('aq-static')).display") == "none"
        assert page.is_visible("#aq-snapshot-header")
        page.screenshot(path=str(test_output_dir / f"snapshot-offline-{role}.png"), full_page=True)
    finally:
        context.close()
    assert requests == [path.as_uri()], "the snapshot asked for something besides itself"
    assert errors == []


# -- PDF and PNG ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def page_servers(tiny):
    """role -> a Voila server of the dashboard for that viewer; both start at once."""
    servers = {}
    try:
        for role in ROLES:
            settings, selection = settings_for(tiny, role)
            page = capture.page_settings(settings, settings.viewer)
            servers[role] = voila_process.start(page.to_env(os.environ), quiet=True)
        for server in servers.values():
            server.wait_ready(90)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def pixels_of(browser, png: bytes, color: str) -> int:
    """How many pixels of `png` are `color` ("#rrggbb", each channel within 2), counted
    by Chromium's own PNG decoder on a canvas."""
    context = browser.new_context()
    try:
        page = context.new_page()
        return page.evaluate("""async ([src, rgb]) => {
            const image = new Image();
            image.src = src;
            await image.decode();
            const canvas = document.createElement('canvas');
            canvas.width = image.width;
            canvas.height = image.height;
            const drawing = canvas.getContext('2d');
            drawing.drawImage(image, 0, 0);
            const data = drawing.getImageData(0, 0, canvas.width, canvas.height).data;
            let n = 0;
            for (let i = 0; i < data.length; i += 4) {
              if (Math.abs(data[i] - rgb[0]) <= 2 && Math.abs(data[i + 1] - rgb[1]) <= 2
                  && Math.abs(data[i + 2] - rgb[2]) <= 2) n += 1;
            }
            return n;
        }""", [f"data:image/png;base64,{base64.b64encode(png).decode()}",
               [int(color[i:i + 2], 16) for i in (1, 3, 5)]])
    finally:
        context.close()


#: The colour of the 5xx bars of the Health section's failures chart (and of nothing in
#: the Usage section): the tiny gateway's two 500s, half an hour before NOW, make one.
FIVE_XX_RED = "#dc2626"
#: The Health section's card titles, as the page writes them.
HEALTH_TITLES = ("Response Time Over Time", "Failures Over Time", "Health by Model", "Status Codes")


def expected_health_texts(report: dict) -> list[str]:
    """What the Health section must show for `report`'s "health" object, written
    independently of the page: its card titles, p50 and p95 of completions and
    embeddings (one decimal, ms), the failure rate (failed / all requests, one
    decimal), each model's name and the legend of the failure-rate line."""
    health = report["health"]
    texts = list(HEALTH_TITLES)
    for row in health["latency"]:
        texts += [f"{row[p]:,.1f} ms" for p in ("p50", "p95") if row[p] is not None]
    requests = sum(row["requests"] for row in health["statuses"])
    failed = sum(row["requests"] for row in health["statuses"] if row["kind"] in ("4xx", "429", "5xx"))
    texts.append(f"{100 * failed / requests:.1f}%")
    texts += [row["model"] or "N/A" for row in health["failures_by_model"]]
    return texts + ["Failure rate (right axis)"]


@pytest.mark.parametrize("role", ROLES)
def test_the_pdf_has_both_sections_a_page_each_and_the_png_the_usage_one(browser, page_servers, tiny, reports,
                                                                            role, test_output_dir):
    try:
        from pypdf import PdfReader
    except ImportError:
        unavailable("pypdf is needed to read the PDF snapshot (a test dependency)")
    usage, report = reports[role]
    pdf, png = test_output_dir / f"snapshot-{role}.pdf", test_output_dir / f"snapshot-{role}.png"
    settings, selection = settings_for(tiny, role)
    shown, files = capture.capture(settings, settings.viewer, selection, [".pdf", ".png"], browser=browser,
                                   server=page_servers[role])
    assert shown.data == {**report, "health": None}  # the real page's figures; its health is the page's
    pdf.write_bytes(files[".pdf"])
    png.write_bytes(files[".png"])

    reader = PdfReader(str(pdf))
    assert len(reader.pages) == 2
    usage_text, health_text = (re.sub(r"\s+", "", page.extract_text()) for page in reader.pages)  # wrapped lines joined
    figures = expected_figures(report)
    if "Cost" not in usage_text:  # the live page's cost tile is the dashboard's (issue 14)
        del figures["tiles"]["cost"]
    for value in figures["tiles"].values():
        assert value.replace(" ", "") in usage_text, value
    for row in figures["rows"]:
        assert all(cell.replace(" ", "") in usage_text for cell in row), row
    for text in (usage_text, health_text):
        assert report["scope"]["viewer"] in text
        # The snapshot's banner on each page, not the live Export control.
        assert "snapshot" in text.lower() and "Exported" in text and not re.search(r"Export(?!ed)", text)
    # The second page is the Health section, and only it.
    for value in expected_health_texts(report):
        assert value.replace(" ", "") in health_text, value
    assert not any(title.replace(" ", "") in usage_text for title in HEALTH_TITLES)
    assert "RequestsOverTime" in usage_text and "RequestsOverTime" not in health_text
    # Rate-limit headroom for admins only, as on the page.
    assert ("Rate-limitheadroom" in health_text) is (role == "admin")
    # Each page as tall as its section: neither spills onto another page.
    heights = [float(page.mediabox.height) for page in reader.pages]
    assert all(height > 700 for height in heights) and heights[0] != heights[1]

    width, height = png_size(png.read_bytes())
    assert width == 1280 and height >= 700
    assert png.stat().st_size > 30_000  # drawn, not a blank page
    assert pixels_of(browser, files[".png"], FIVE_XX_RED) == 0  # the Usage section has no 5xx bar


def test_a_png_of_the_health_view_shows_the_health_section(browser, page_servers, tiny, test_output_dir):
    settings, selection = settings_for(tiny, "admin")
    _shown, files = capture.capture(settings, settings.viewer, selection, [".png"], section="health",
                                    browser=browser, server=page_servers["admin"])
    (test_output_dir / "snapshot-admin-health.png").write_bytes(files[".png"])
    width, height = png_size(files[".png"])
    assert width == 1280 and height >= 700
    assert pixels_of(browser, files[".png"], FIVE_XX_RED) > 100  # the failures chart's 5xx bar


def test_a_captured_page_says_it_is_a_snapshot(browser, page_servers, tiny, reports):
    from usage_lib.render.files import Report

    usage, report = reports["user"]
    _settings, selection = settings_for(tiny, "user")
    url = f"{page_servers['user'].url}?{capture.page_query(selection)}"
    context, page = capture.open_dashboard(browser, url, Report.of(usage))
    try:
        assert page.title() == "Aqueduct usage: Acme, last 24 hours, as of 2026-11-24 12:00:00 (UTC)"
        assert page.is_visible("#aq-snapshot-header") and "ursula" in page.inner_text("#aq-snapshot-header")
        assert not page.is_visible(".aq-export-button")
        shown, expected = shown_figures(page), expected_figures(report)
        if "cost" not in shown["tiles"]:  # the live page's cost tile is the dashboard's (issue 14)
            del expected["tiles"]["cost"]
        assert shown == expected
    finally:
        context.close()


# -- the Export control -----------------------------------------------------------------


def test_export_control_offers_the_view_on_screen(tiny, reports, browser, tmp_path):
    from usage_lib.ui.dashboard import Dashboard

    usage, report = reports["user"]
    settings, _selection = settings_for(tiny, "user")
    dashboard = Dashboard(settings)
    try:
        dashboard.refresh()
        export = dashboard.export
        export.prepare()
        links = dict(re.findall(r'download="([^"]+)"[^>]*href="data:[^;]+(?:;charset=utf-8)?;base64,([^"]+)"', export.links.value))
        assert len(links) == 3, export.links.value
        files = {Path(name).suffix: base64.b64decode(data) for name, data in links.items()}
        assert files[".csv"] == top_csv(report)
        with zipfile.ZipFile(io.BytesIO(files[".zip"])) as archive:
            assert archive.read("top.csv") == files[".csv"]
        page = files[".html"].decode()
        embedded = re.search(r'id="aqueduct-usage-report">(.*?)</script>', page, re.S).group(1)
        assert without_health(json.loads(embedded)) == without_health(report)
        assert 'class="aq-export-link"' not in page  # no earlier links inside the snapshot

        # The browser downloads the HTML link as the file itself.
        context = browser.new_context(accept_downloads=True)
        try:
            tab = context.new_page()
            tab.set_content(f"<body>{export.links.value}</body>")
            with tab.expect_download() as download:
                tab.click("a.aq-export-link >> nth=0")
            assert Path(download.value.path()).read_bytes() == files[".html"]
        finally:
            context.close()
        export.reset()
        assert export.links.value == ""
    finally:
        dashboard.close()


@pytest.fixture
def registry(monkeypatch):
    """A stand-in npm registry on 127.0.0.1 that serves nothing and records every request."""
    import http.server
    import threading

    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AQUEDUCT_NPM_REGISTRY", f"http://127.0.0.1:{server.server_port}")
    yield asked
    server.shutdown()
    server.server_close()


def test_without_the_offline_javascript_exports_fail_at_once_and_fetch_nothing(tiny, monkeypatch, tmp_path, capsys,
                                                                               registry):
    from usage_lib.ui.dashboard import Dashboard

    monkeypatch.setenv("AQUEDUCT_JS_CACHE", str(tmp_path / "empty-cache"))
    dashboard = Dashboard(settings_for(tiny, "user")[0])
    try:
        dashboard.refresh()
        dashboard.export.prepare()
        assert "Export failed" in dashboard.export.links.value
        assert "python -m usage_lib.render.assets" in dashboard.export.links.value
    finally:
        dashboard.close()
    out = tmp_path / "x.html"
    assert main(argv(tiny, "user", out)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not installed" in error
    assert not out.exists() and registry == []


def test_the_setup_step_downloads_the_pinned_bundles_and_checks_them(monkeypatch, tmp_path, registry):
    from usage_lib.render import assets

    with pytest.raises(UsageError, match="could not download .*requirejs-2.3.8.tgz"):
        assets.fetch(tmp_path / "cache", quiet=True)
    assert registry == ["/requirejs/-/requirejs-2.3.8.tgz"]
    assert assets.HTML_MANAGER.tarball == "@jupyter-widgets/html-manager/-/html-manager-1.0.15.tgz"
    with pytest.raises(UsageError, match="does not match the pinned"):
        assets._check_integrity("requirejs@2.3.8", b"not the tarball", assets.REQUIREJS.integrity)
