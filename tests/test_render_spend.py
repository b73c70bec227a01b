"""Spend and changes in the file renderers (issue 14 item 6): money and change
formatting, the text report, CSV/zip exports and the offline snapshot's static page."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from decimal import Decimal

import pytest

from usage_lib.core.costs import CostSummary
from usage_lib.render import formatting


# -- formatting -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount, text",
    [
        ("12.345", "12.35 USD"),  # half up, not half even
        ("12.355", "12.36 USD"),
        ("1234.555", "1,234.56 USD"),
        ("1234567.891", "1,234,567.89 USD"),
        ("100", "100.00 USD"),
        ("0.01", "0.01 USD"),
        ("0", "0.00 USD"),
        ("0.000000", "0.00 USD"),
        ("0.0031", "0.0031 USD"),
        ("0.003149", "0.0031 USD"),  # two significant digits under a cent
        ("0.003150", "0.0032 USD"),
        ("0.004", "0.004 USD"),
        ("0.00996", "0.01 USD"),  # rounds up to a cent: a cent
        ("0.000000001", "0.000000001 USD"),
        ("-0.004", "-0.004 USD"),
        ("-2.5", "-2.50 USD"),
    ],
)
def test_money(amount, text):
    assert formatting.money(Decimal(amount), "USD") == text


def test_money_without_currency_or_amount_is_the_placeholder():
    assert formatting.money(Decimal("1.50"), None) == "\u2014"
    assert formatting.money(None, "EUR") == "\u2014"
    assert formatting.money(Decimal("1.5"), "EUR") == "1.50 EUR"


@pytest.mark.parametrize(
    "fraction, text",
    [
        (0.12, "+12%"),
        (-0.03, "-3%"),
        (0.0, "+0%"),
        (12.5, "+1,250%"),
        (0.004, "+0.4%"),
        (-0.004, "-0.4%"),
        (0.0004, "+0%"),  # rounds to nothing
        (0.0099, "+1%"),  # 0.99% is 1.0% at one decimal: a whole percent
        (0.125, "+13%"),  # half away from zero
        (-0.125, "-13%"),
        (-1.0, "-100%"),
        (1.0, "+100%"),
        (1 / 3, "+33%"),
    ],
)
def test_change(fraction, text):
    assert formatting.change(fraction) == text


@pytest.mark.parametrize("fraction", [None, float("nan"), float("inf")])
def test_no_change_is_empty(fraction):
    assert formatting.change(fraction) == ""


def _summary(requests, input_tokens, output_tokens, currency="USD"):
    return CostSummary(currency=currency, total=Decimal("1.5"), unpriced_requests=requests,
                       unpriced_input_tokens=input_tokens, unpriced_output_tokens=output_tokens)


def test_unpriced_note():
    assert formatting.unpriced_note(_summary(0, 0, 0)) is None
    assert formatting.unpriced_note(_summary(1234, 50000, 6789)) == (
        "leaves out 1,234 requests of unpriced models (56,789 tokens)")
    assert formatting.unpriced_note(_summary(1, 1, 0, currency=None)) == (
        "leaves out 1 request of unpriced models (1 token)")


# -- a small organisation with prices ---------------------------------------------------
#
# Acme, one global admin (root) with three tokens. Prices per million tokens (USD):
# gpt-4o 2.5 in / 10 out, cheap 0.15 / 0.6; "local" has none. The 24 hours up to NOW:
#
#   alpha  10 gpt-4o at NOW-1h, 1,000 in / 200 out each: 10 x 0.0045 = 0.045 USD
#   beta    3 local  at NOW-2h,   100 in /  50 out each: unpriced (3 requests, 450 tokens)
#
# and the 24 hours before (the previous period):
#
#   alpha   8 gpt-4o at NOW-25h, 1,000 / 200:             8 x 0.0045  = 0.036 USD
#   gamma   2 cheap  at NOW-26h, 1,000 / 1,000: 2 x (0.00015 + 0.0006) = 0.0015 USD
#
# Now: 13 requests, 10,300 in, 2,150 out, 12,450 tokens, 0.045 USD.
# Then: 10 requests, 10,000 in, 3,600 out, 13,600 tokens, 0.0375 USD.
# Changes: requests +30%, input +3%, output -40% (-40.28%), total -8% (-8.46%), cost +20%;
# failed 0 then (none), completion time 100 ms both (+0%), embedding none.
# Top table (tokens of Acme): alpha 10 (+25%), beta 3 (new); stopped: gamma (2 before).

from datetime import timedelta  # noqa: E402

from tests.support.gateway import NOW, GatewayBuilder, sqlite_url  # noqa: E402
from usage_lib import Selection, compute_usage, open_database  # noqa: E402
from usage_lib.core.prices import Price, PriceBook  # noqa: E402
from usage_lib.core.spans import SPANS, custom_span  # noqa: E402
from usage_lib.render.files import Report, render_csv, render_zip  # noqa: E402
from usage_lib.render.labels import previous_period  # noqa: E402
from usage_lib.render.offline_page import _static_html  # noqa: E402
from usage_lib.render.text import text  # noqa: E402

MODELS = ("gpt-4o", "cheap", "local")
PRICES = PriceBook(prices=(
    Price("cheap", Decimal("0.15"), Decimal("0.6"), "USD", None, "test"),
    Price("gpt-4o", Decimal("2.5"), Decimal("10"), "USD", None, "test"),
))


@pytest.fixture
def acme(tmp_path):
    """Rendering reads the figures only: SQLite is enough (the core's figures are
    tested on both backends)."""
    g = build_acme(GatewayBuilder(sqlite_url(tmp_path / "gateway.sqlite3")))
    yield g
    g.close()


def build_acme(g):
    org = g.org("Acme")
    root = g.user("root", role="admin", org=org)
    alpha, beta, gamma = (g.token(root, name) for name in ("alpha", "beta", "gamma"))
    g.request(alpha, NOW - timedelta(hours=1), model="gpt-4o", input_tokens=1000, output_tokens=200, count=10)
    g.request(beta, NOW - timedelta(hours=2), model="local", input_tokens=100, output_tokens=50, count=3)
    g.request(alpha, NOW - timedelta(hours=25), model="gpt-4o", input_tokens=1000, output_tokens=200, count=8)
    g.request(gamma, NOW - timedelta(hours=26), model="cheap", input_tokens=1000, output_tokens=1000, count=2)
    # Before both periods: the gateway's record reaches back far enough (no notice).
    g.request(gamma, NOW - timedelta(days=3), model="cheap")
    return g


def usage_of(g, prices=PRICES, compare=True, **selection):
    db = open_database(g.url)
    try:
        return compute_usage(db, "root", Selection(now=NOW, org=selection.pop("org", "Acme"), **selection),
                             models=MODELS, prices=prices, compare=compare)
    finally:
        db.close()


def squashed(text: str) -> list[str]:
    """The lines of a text report, runs of spaces as one."""
    return [" ".join(line.split()) for line in text.splitlines()]


# -- text report ------------------------------------------------------------------------


def test_text_report_shows_cost_changes_and_stopped_rows(acme):
    lines = squashed(text(Report.of(usage_of(acme))))
    assert lines[2:12] == [
        "Total Requests 13 (+30% vs previous 24 hours)",
        "Failed Requests 0 (none in the previous 24 hours)",
        "Avg Resp Time (Completion) 100.0 ms (+0% vs previous 24 hours)",
        "Avg Resp Time (Embedding) 0.0 ms (none in the previous 24 hours)",
        "Input Tokens 10,300 (+3% vs previous 24 hours)",
        "Output Tokens 2,150 (-40% vs previous 24 hours)",
        "Total Tokens 12,450 (-8% vs previous 24 hours)",
        "Cost 0.05 USD (+20% vs previous 24 hours), leaves out 3 requests of unpriced models (450 tokens)",
        "Previous 24 hours: 10 requests, 13,600 tokens, 0.04 USD",
        "",
    ]
    assert "2026-11-24 10:00 3 300 150 0.00 USD" in lines
    assert "2026-11-24 11:00 10 10,000 2,000 0.05 USD" in lines
    models = lines.index("Requests and cost by model:")
    assert lines[models + 2:models + 5] == [
        "gpt-4o 10 10,000 2,000 0.05 USD",
        "local 3 300 150 0.00 USD (3 unpriced)",
        "cheap 0 0 0 0.00 USD",
    ]
    top = lines.index("Requests by API Key:")
    assert lines[top + 1:top + 6] == [
        "1. alpha 10 req 10,000 in 2,000 out 12,000 total 0.05 USD +25% owner root@example.org",
        "2. beta 3 req 300 in 150 out 450 total 0.00 USD new owner root@example.org",
        "",
        "Stopped since the previous 24 hours:",
        "1. gamma 0 req 0 in 0 out 0 total 0.00 USD stopped, 2 req before owner root@example.org",
    ]
    assert not any(line.startswith("Note:") for line in lines)


def test_text_report_without_prices_says_everything_is_unpriced(acme):
    lines = squashed(text(Report.of(usage_of(acme, prices=PriceBook()))))
    assert "Cost \u2014 leaves out 13 requests of unpriced models (12,450 tokens)" in lines
    assert "Previous 24 hours: 10 requests, 13,600 tokens, \u2014" in lines
    assert "gpt-4o 10 10,000 2,000 \u2014 (10 unpriced)" in lines


def test_text_report_without_previous_period_shows_no_changes(acme):
    out = text(Report.of(usage_of(acme, compare=False)))
    lines = squashed(out)
    assert "Total Requests 13" in lines and "vs previous" not in out and "Stopped" not in out
    assert "Cost 0.05 USD leaves out 3 requests of unpriced models (450 tokens)" in lines
    assert "1. alpha 10 req 10,000 in 2,000 out 12,000 total 0.05 USD owner root@example.org" in lines


def test_text_report_of_a_custom_range_names_the_period_before(acme):
    # 10:00 to 11:30: beta's 3 requests and alpha's 10; the 90 minutes before hold none.
    out = text(Report.of(usage_of(acme, start="2026-11-24T10:00+00:00", end="2026-11-24T11:30+00:00")))
    assert "Total Requests 13 (none in the previous 90 minutes)" in squashed(out)


@pytest.mark.parametrize("length, words", [
    (timedelta(minutes=90), "previous 90 minutes"), (timedelta(hours=1), "previous hour"),
    (timedelta(days=3), "previous 3 days"), (timedelta(hours=36), "previous 36 hours"),
    (timedelta(seconds=61), "previous 61 seconds"),
])
def test_previous_period_of_a_custom_range(length, words):
    assert previous_period(custom_span(length)) == words


@pytest.mark.parametrize("key, words", [
    ("1h", "previous hour"), ("1d", "previous 24 hours"), ("1w", "previous 7 days"), ("1m", "previous 30 days"),
])
def test_previous_period_of_a_preset(key, words):
    assert previous_period(SPANS[key]) == words


# -- CSV and zip ------------------------------------------------------------------------


def rows_of(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def exact(cell: str) -> str:
    """A money cell without its trailing zeros ("0.0450000" -> "0.045"), to compare."""
    return format(Decimal(cell).normalize(), "f")


def test_csv_files_carry_tokens_cost_and_the_previous_period(acme):
    files = render_csv(Report.of(usage_of(acme)), "x")
    top = rows_of(files["x.csv"])
    assert top[0] == ["rank", "kind", "id", "name", "requests", "input_tokens", "output_tokens", "total_tokens",
                      "owner_email", "service_account", "cost", "previous_requests", "change", "status"]
    assert [row[3:10] + [exact(row[10])] + row[11:] for row in top[1:]] == [
        ["alpha", "10", "10000", "2000", "12000", "root@example.org", "", "0.045", "8", "0.25", ""],
        ["beta", "3", "300", "150", "450", "root@example.org", "", "0", "0", "", "new"],
        ["gamma", "0", "0", "0", "0", "root@example.org", "", "0", "2", "-1.0", "stopped"],
    ]
    series = rows_of(files["x.timeseries.csv"])
    assert series[0] == ["bucket", "requests", "input_tokens", "output_tokens", "cost"]
    assert len(series) == 1 + 25
    assert [row[:4] + [exact(row[4])] for row in series[-3:-1]] == [["2026-11-24T10:00:00+00:00", "3", "300", "150", "0"],
                             ["2026-11-24T11:00:00+00:00", "10", "10000", "2000", "0.045"]]
    models = rows_of(files["x.models.csv"])
    assert models[0] == ["model", "requests", "input_tokens", "output_tokens", "cost", "unpriced_requests"]
    assert [row[:4] + [exact(row[4]), row[5]] for row in models[1:]] == [
        ["gpt-4o", "10", "10000", "2000", "0.045", "0"],
        ["local", "3", "300", "150", "0", "3"],
        ["cheap", "0", "0", "0", "0", "0"],
    ]
    summary = dict(rows_of(files["x.summary.csv"])[1:])
    summary["cost"], summary["previous_cost"] = exact(summary["cost"]), exact(summary["previous_cost"])
    assert {key: summary[key] for key in (
        "total_requests", "cost", "currency", "unpriced_requests", "unpriced_input_tokens", "unpriced_output_tokens",
        "previous_window_start", "previous_window_end", "previous_total_requests", "previous_total_tokens",
        "previous_cost", "previous_unpriced_requests",
        "change_total_requests", "change_failed_requests", "change_output_tokens", "change_cost",
    )} == {
        "total_requests": "13", "cost": "0.045", "currency": "USD", "unpriced_requests": "3",
        "unpriced_input_tokens": "300", "unpriced_output_tokens": "150",
        "previous_window_start": "2026-11-22T12:00:00+00:00", "previous_window_end": "2026-11-23T12:00:00+00:00",
        "previous_total_requests": "10", "previous_total_tokens": "13600",
        "previous_cost": "0.0375", "previous_unpriced_requests": "0",
        "change_total_requests": "0.3", "change_failed_requests": "", "change_output_tokens": "-0.402778",
        "change_cost": "0.2",
    }


def test_csv_money_is_the_reports_exact_decimal_string(acme):
    report = Report.of(usage_of(acme))
    files = render_csv(report, "x")
    # The JSON report's strings, as the core's Decimals print (no float on the way).
    assert [row[4] for row in rows_of(files["x.models.csv"])[1:]] == [
        format(cost, "f") for cost in report.usage.models["cost"]]
    assert [row[4] for row in rows_of(files["x.timeseries.csv"])[1:]] == [
        format(cost, "f") for cost in report.usage.timeseries["cost"]]
    assert dict(rows_of(files["x.summary.csv"])[1:])["cost"] == format(report.usage.cost.total, "f")


def test_csv_without_previous_period_leaves_the_comparison_empty(acme):
    files = render_csv(Report.of(usage_of(acme, compare=False)), "x")
    top = rows_of(files["x.csv"])
    assert [[exact(row[-4]), *row[-3:]] for row in top[1:]] == [["0.045", "", "", ""], ["0", "", "", ""]]
    summary = dict(rows_of(files["x.summary.csv"])[1:])
    assert exact(summary["cost"]) == "0.045" and not any(key.startswith(("previous_", "change_")) for key in summary)


def test_csv_without_prices_has_no_currency(acme):
    files = render_csv(Report.of(usage_of(acme, prices=PriceBook())), "x")
    summary = dict(rows_of(files["x.summary.csv"])[1:])
    assert (exact(summary["cost"]), summary["currency"], summary["unpriced_requests"]) == ("0", "", "13")
    assert summary["previous_unpriced_requests"] == "10" and summary["change_cost"] == ""


def test_zip_holds_the_csv_files(acme):
    report = Report.of(usage_of(acme))
    (data,) = render_zip(report, "x").values()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        # Without health figures (the live Export's report), the four files of issue 5.
        assert archive.namelist() == ["top.csv", "timeseries.csv", "models.csv", "summary.csv"]
        assert [archive.read(name) for name in archive.namelist()] == list(render_csv(report, "x").values())


# -- offline snapshot, static copy --------------------------------------------------------


def test_static_copy_has_the_cost_tile_changes_and_cost_column(acme):
    page = _static_html(usage := usage_of(acme), Report.of(usage).data)
    tiles = dict(re.findall(r'data-metric="(\w+)">.*?<div class="aq-static-value">(.*?)</div>', page))
    assert tiles["cost"] == "0.05 USD" and tiles["total_requests"] == "13"
    changes = dict(re.findall(r'data-metric="(\w+)">(?:(?!data-metric).)*?<div class="aq-static-change">(.*?)</div>',
                              page))
    assert changes["total_requests"] == "+30% vs previous 24 hours"
    assert changes["failed_requests"] == "none in the previous 24 hours"
    assert changes["cost"] == "+20% vs previous 24 hours; leaves out 3 requests of unpriced models (450 tokens)"
    table = re.search(r'<table class="aq-static-table".*?</table>', page).group(0)
    heads = re.findall(r"<th>(.*?)</th>", table)
    assert heads[-2:] == ["Cost", "Change"]
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table)[1:]]
    assert [(row[1], row[-2], row[-1]) for row in rows] == [("alpha", "0.05 USD", "+25%"), ("beta", "0.00 USD", "new")]
    stopped = re.search(r'<table class="aq-static-stopped".*?</table>', page).group(0)
    assert "Stopped since the previous 24 hours" in page
    assert re.findall(r"<td[^>]*>(.*?)</td>", stopped) == ["gamma", "2"]
    models = re.search(r'<table class="aq-static-models".*?</table>', page).group(0)
    assert "<td class=\"txt\">local</td><td class=\"num\">3</td><td class=\"num\">300</td>" in models
    assert "<td class=\"num\">0.05 USD</td>" in models


def test_static_copy_without_previous_period_or_prices(acme):
    page = _static_html(usage := usage_of(acme, prices=PriceBook(), compare=False), Report.of(usage).data)
    assert "aq-static-stopped" not in page and "Change</th>" not in page and "vs previous" not in page
    assert ('data-metric="cost"><div class="aq-static-label">Cost</div><div class="aq-static-value">\u2014</div>'
            '<div class="aq-static-change">leaves out 13 requests of unpriced models (12,450 tokens)</div>') in page
