"""Spend and changes in the file renderers (issue 14 item 6): money and change
formatting, the text report, CSV/zip exports and the offline snapshot's static page."""

from __future__ import annotations

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
