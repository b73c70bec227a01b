"""Per-model prices (issue 14, item 1): router config, prices file, override, validity.

Every expected price is worked by hand: a per-token cost c is c * 1,000,000 per million.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from usage_lib.core.prices import (
    EMPTY,
    Price,
    PriceBook,
    load_price_book,
    load_prices_file,
    parse_prices_file,
    price_book,
)
from usage_lib.errors import UsageError
from usage_lib.gateway.routerconfig import parse_router_prices

UTC = timezone.utc


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def router(tmp_path, text):
    path = tmp_path / "router.yaml"
    path.write_text(text)
    return path


def prices_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def one_line_error(call, *args) -> str:
    with pytest.raises(UsageError) as caught:
        call(*args)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- router config ------------------------------------------------------------------


def test_router_price_from_model_info(tmp_path):
    path = router(tmp_path, (
        "model_list:\n"
        "  - model_name: gpt-4o\n"
        "    model_info: {input_cost_per_token: 0.0000025, output_cost_per_token: 0.00001}\n"
    ))
    book = load_price_book(path, None)
    assert book.prices == (Price("gpt-4o", Decimal("2.5"), Decimal("10"), "USD", None, "router config"),)
    assert book.notices == ()


def test_router_price_from_litellm_params(tmp_path):
    path = router(tmp_path, (
        "model_list:\n"
        "  - model_name: claude\n"
        "    litellm_params: {model: anthropic/claude, input_cost_per_token: 0.000003, output_cost_per_token: 0.000015}\n"
    ))
    assert load_price_book(path, None).price_at("claude", at(1)).output_per_million == Decimal("15")


def test_model_info_wins_over_litellm_params():
    prices, _ = parse_router_prices(
        "model_list:\n"
        "  - model_name: m\n"
        "    litellm_params: {input_cost_per_token: 0.000009, output_cost_per_token: 0.000009}\n"
        "    model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}\n"
    )
    assert prices == (("m", Decimal("1"), Decimal("2")),)


def test_cost_without_a_dot_is_read_exactly():
    """PyYAML reads 3e-06 (no dot) as the string "3e-06", 3.0e-06 as a float."""
    prices, _ = parse_router_prices(
        "model_list:\n"
        "  - model_name: m\n"
        "    model_info: {input_cost_per_token: 3e-06, output_cost_per_token: 1.5e-05}\n"
        "  - model_name: n\n"
        "    model_info: {input_cost_per_token: '3e-06', output_cost_per_token: 0.0000001}\n"
    )
    assert prices == (("m", Decimal("3"), Decimal("15")), ("n", Decimal("3"), Decimal("0.1")))
    assert str(prices[0][1]) == "3"  # normalised, not 3.000000


def test_deployments_with_equal_prices_give_one_price():
    prices, notices = parse_router_prices(
        "model_list:\n"
        "  - model_name: m\n"
        "    litellm_params: {model: azure/m, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}\n"
        "  - model_name: m\n"
        "    litellm_params: {model: openai/m, input_cost_per_token: 1.0e-06, output_cost_per_token: 2e-06}\n"
    )
    assert (prices, notices) == ((("m", Decimal("1"), Decimal("2")),), ())


def test_deployments_with_different_prices_leave_the_model_unpriced():
    prices, notices = parse_router_prices(
        "model_list:\n"
        "  - model_name: m\n"
        "    model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}\n"
        "  - model_name: m\n"
        "    model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000003}\n"
    )
    assert prices == ()
    [(model, text)] = notices
    assert model == "m" and "m is unpriced" in text and "set its price in a prices file" in text


def test_a_model_priced_on_some_deployments_only_is_unpriced():
    prices, notices = parse_router_prices(
        "model_list:\n"
        "  - model_name: m\n    model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}\n"
        "  - model_name: m\n    litellm_params: {model: openai/m}\n"
    )
    assert prices == ()
    assert [model for model, _ in notices] == ["m"]


def test_a_model_with_only_one_cost_is_unpriced_not_free():
    prices, notices = parse_router_prices(
        "model_list:\n  - model_name: m\n    model_info: {input_cost_per_token: 0.000001}\n"
    )
    assert prices == ()
    assert [model for model, _ in notices] == ["m"]
    assert "entry 1" in notices[0][1]


def test_a_model_without_costs_is_unpriced_silently(tmp_path):
    book = load_price_book(router(tmp_path, "model_list:\n  - model_name: m\n"), None)
    assert book == EMPTY
    assert book.price_at("m", at(1)) is None
    assert book.currency is None


@pytest.mark.parametrize("value, problem", [("-0.000001", "is negative"), ("cheap", "is not a number"), ("true", "is not a number")])
def test_bad_router_cost_names_model_and_entry(value, problem):
    text = (
        "model_list:\n  - model_name: a\n"
        f"  - model_name: b\n    model_info: {{input_cost_per_token: {value}, output_cost_per_token: 0}}\n"
    )
    message = one_line_error(parse_router_prices, text)
    assert "model_list entry 2 (b)" in message and "input_cost_per_token " + problem in message


# --- prices file --------------------------------------------------------------------


def test_prices_file_yaml(tmp_path):
    path = prices_file(tmp_path, "prices.yaml", (
        "- {model: gpt-4o, input_per_million: 2.50, output_per_million: '10', currency: usd}\n"
        "- {model: gpt-4o, input_per_million: 2, output_per_million: 8, valid_from: 2026-03-10}\n"
    ))
    assert load_prices_file(path) == (
        Price("gpt-4o", Decimal("2.5"), Decimal("10"), "USD", None, f"{path} entry 1"),
        Price("gpt-4o", Decimal("2"), Decimal("8"), "USD", at(10), f"{path} entry 2"),
    )


def test_prices_file_yaml_under_a_prices_key():
    prices = parse_prices_file("prices:\n  - {model: m, input_per_million: 1, output_per_million: 2}\n", "p.yaml", "yaml")
    assert [(p.model, p.input_per_million, p.output_per_million, p.currency) for p in prices] == [("m", 1, 2, "USD")]


def test_prices_file_csv(tmp_path):
    path = prices_file(tmp_path, "prices.csv", (
        "model,input_per_million,output_per_million,currency,valid_from\n"
        "gpt-4o,2.50,10,USD,\n"
        "claude, 3 ,15,,2026-03-10T12:00:00\n"
    ))
    assert load_prices_file(path) == (
        Price("gpt-4o", Decimal("2.5"), Decimal("10"), "USD", None, f"{path} line 2"),
        Price("claude", Decimal("3"), Decimal("15"), "USD", at(10, 12), f"{path} line 3"),
    )


def test_empty_prices_file_holds_no_prices(tmp_path):
    assert load_prices_file(prices_file(tmp_path, "p.yaml", "")) == ()
    assert load_prices_file(prices_file(tmp_path, "p.csv", "")) == ()


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2026-03-10", at(10)),
        ("2026-03-10T12:00:00", at(10, 12)),  # no offset: UTC
        ("2026-03-10T12:00:00+02:00", at(10, 10)),
        ("2026-03-10T12:00:00Z", at(10, 12)),
    ],
)
def test_valid_from_date_or_datetime_in_utc(value, expected):
    csv_text = f"model,input_per_million,output_per_million,valid_from\nm,1,1,{value}\n"
    yaml_text = f"- {{model: m, input_per_million: 1, output_per_million: 1, valid_from: {value}}}\n"
    assert parse_prices_file(csv_text, "p.csv", "csv")[0].valid_from == expected
    assert parse_prices_file(yaml_text, "p.yaml", "yaml")[0].valid_from == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("- {input_per_million: 1, output_per_million: 1}\n", "p.yaml entry 1: no model"),
        ("- {model: m, input_per_million: 1, output_per_million: 1}\n- {model: n, output_per_million: 1}\n",
         "p.yaml entry 2 (n): no input_per_million"),
        ("- {model: m, input_per_million: abc, output_per_million: 1}\n", "p.yaml entry 1 (m): input_per_million is not a number: 'abc'"),
        ("- {model: m, input_per_million: 1, output_per_million: -1}\n", "p.yaml entry 1 (m): output_per_million is negative"),
        ("- {model: m, input_per_million: 1, output_per_million: 1, currency: dollars}\n", "p.yaml entry 1 (m): currency is not a 3-letter code"),
        ("- {model: m, input_per_million: 1, output_per_million: 1, valid_from: soon}\n", "p.yaml entry 1 (m): valid_from is not a date"),
        ("- {model: m, input_per_million: 1, output_per_million: 1, price: 3}\n", "p.yaml entry 1 (m): unknown key 'price'"),
        ("- {modle: m, input_per_million: 1, output_per_million: 1}\n", "p.yaml entry 1: unknown key 'modle'"),
        ("- {model: 4, input_per_million: 1, output_per_million: 1}\n", "p.yaml entry 1: model is not text: 4"),
        ("- {model: m, input_per_million: 1, output_per_million: 1, valid_from: 2026-03-10}\n"
         "- {model: m, input_per_million: 2, output_per_million: 2, valid_from: '2026-03-10T00:00:00Z'}\n",
         "p.yaml entry 2 (m): same model and valid_from as p.yaml entry 1"),
        ("- just a model\n", "p.yaml entry 1: not a mapping"),
        ("model: m\n", "p.yaml: expected a list of prices"),
        ("- {model: m\n", "p.yaml: not valid YAML (line 2)"),
    ],
)
def test_malformed_yaml_prices_file_names_the_entry(text, message):
    assert one_line_error(parse_prices_file, text, "p.yaml", "yaml").startswith(message)


@pytest.mark.parametrize(
    "rows, message",
    [
        ("gpt-4o,1,1\nclaude,1,1\ngpt-4o,abc,1\n", "p.csv line 4 (gpt-4o): input_per_million is not a number: 'abc'"),
        (",1,1\n", "p.csv line 2: no model"),
        ("m,1\n", "p.csv line 2 (m): no output_per_million"),
        ("m,1,1,extra\n", "p.csv line 2: more fields than the header has columns"),
        ("m,1,1\nm,2,2\n", "p.csv line 3 (m): same model and valid_from as p.csv line 2"),
    ],
)
def test_malformed_csv_prices_file_names_the_line(rows, message):
    text = "model,input_per_million,output_per_million\n" + rows
    assert one_line_error(parse_prices_file, text, "p.csv", "csv") == message


def test_unknown_csv_column_is_refused():
    message = one_line_error(parse_prices_file, "model,input_per_million,output_per_million,note\n", "p.csv", "csv")
    assert message.startswith("p.csv line 1: unknown column 'note'")


def test_prices_file_must_exist_and_be_yaml_or_csv(tmp_path):
    assert "prices file not found" in one_line_error(load_prices_file, tmp_path / "nope.csv")
    assert ".yaml, .yml or .csv" in one_line_error(load_prices_file, prices_file(tmp_path, "p.json", "[]"))


# --- the price book -----------------------------------------------------------------


def config_price(model, input_price, output_price):
    return Price(model, Decimal(input_price), Decimal(output_price), "USD", None, "router config")


def file_price(model, input_price, output_price, valid_from=None, currency="USD"):
    return Price(model, Decimal(input_price), Decimal(output_price), currency, valid_from, "prices.yaml")


def test_prices_file_replaces_all_config_prices_of_its_models():
    book = price_book(
        [config_price("a", 1, 2), config_price("b", 3, 4)],
        [file_price("a", 5, 6, valid_from=at(10))],
    )
    assert book.prices == (file_price("a", 5, 6, valid_from=at(10)), config_price("b", 3, 4))
    assert book.price_at("a", at(9)) is None  # the config's price of a no longer applies
    assert book.price_at("b", at(9)) == config_price("b", 3, 4)


def test_a_file_price_silences_the_config_notice_of_its_model(tmp_path):
    config = router(tmp_path, (
        "model_list:\n"
        "  - model_name: a\n    model_info: {input_cost_per_token: 0.000001}\n"
        "  - model_name: b\n    model_info: {output_cost_per_token: 0.000001}\n"
    ))
    prices = prices_file(tmp_path, "prices.csv", "model,input_per_million,output_per_million\na,1,2\n")
    book = load_price_book(config, prices)
    assert [p.model for p in book.prices] == ["a"]
    assert len(book.notices) == 1 and "b is unpriced" in book.notices[0]


def test_prices_are_sorted_by_model_then_valid_from():
    later, always, earlier = file_price("m", 3, 3, at(20)), file_price("m", 1, 1), file_price("m", 2, 2, at(10))
    assert price_book([config_price("z", 1, 1)], [later, always, earlier]).prices == (always, earlier, later, config_price("z", 1, 1))


def test_price_at_before_at_and_after_a_change():
    old, new = file_price("m", 1, 2), file_price("m", 3, 4, valid_from=at(10))
    book = price_book([], [new, old])
    assert book.price_at("m", at(9, 23)) == old
    assert book.price_at("m", at(10)) == new
    assert book.price_at("m", at(11)) == new


def test_a_model_is_unpriced_before_its_first_valid_from():
    book = price_book([], [file_price("m", 1, 2, valid_from=at(10))])
    assert book.price_at("m", at(9)) is None
    assert book.price_at("other", at(11)) is None


def test_changes_lists_the_instants_strictly_inside_the_window():
    book = price_book([], [
        file_price("a", 1, 1, at(5)), file_price("a", 2, 2, at(10)), file_price("b", 1, 1, at(10)),
        file_price("b", 2, 2, at(15)), file_price("b", 3, 3, at(20)),
    ])
    assert book.changes(at(5), at(20)) == (at(10), at(15))


def test_periods_cut_the_window_at_the_model_s_changes():
    old, new = file_price("a", 1, 1), file_price("a", 2, 2, at(10))
    book = price_book([], [old, new, file_price("b", 1, 1, at(12))])
    assert book.periods("a", at(1), at(20)) == ((at(1), at(10), old), (at(10), at(20), new))
    assert book.periods("a", at(11), at(20)) == ((at(11), at(20), new),)


def test_periods_of_a_model_priced_mid_window_start_unpriced():
    price = file_price("b", 1, 1, at(12))
    book = price_book([], [price])
    assert book.periods("b", at(1), at(20)) == ((at(1), at(12), None), (at(12), at(20), price))
    assert book.periods("c", at(1), at(20)) == ((at(1), at(20), None),)


def test_prices_in_more_than_one_currency_are_refused():
    message = one_line_error(price_book, [config_price("a", 1, 1)], [file_price("b", 1, 1, currency="EUR")])
    assert message == "prices in more than one currency (EUR, USD): costs cannot be summed; use one currency"


def test_the_book_has_the_one_currency_of_its_prices():
    assert price_book([], [file_price("b", 1, 1, currency="EUR")]).currency == "EUR"
    assert PriceBook().currency is None
