"""Spend and trends (issue 14, item 7): what the usage cost and what changed since the
previous period, on tiny hand-built organisations, on SQLite and PostgreSQL.

Rules under test (issue 14, items 1-4; SPEC §2 for who sees what):
- a model's price comes from the router config (`model_info` or `litellm_params`,
  LiteLLM's `input_cost_per_token` / `output_cost_per_token`), or from a prices file
  (YAML or CSV, per million tokens, optional `valid_from`) that overrides it;
- a model without a price is unpriced, never free: the cost leaves it out and says how
  many requests and tokens it left out;
- money is exact (Decimal);
- every figure has a change against the same length of real time just before the
  window, read for the same reach, at the price of its own time;
- the archive path gives the same figures as the direct path;
- a refresh with prices and the previous period sends at most 3 statements (the
  previous period is a second part of the usage statement).

Every expected figure is worked by hand in a comment. Prices are per million tokens:
a request of i input and o output tokens at (I, O) costs (i*I + o*O) / 1,000,000.
Unless a test says otherwise a request has 10 input and 5 output tokens, so at the
usual price of gpt-4o here, (2, 8), it costs (10*2 + 5*8) / 1e6 = 60 / 1e6 = 0.00006.
"""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pandas.testing import assert_frame_equal
from sqlalchemy import delete

from tests.support.gateway import NOW
from usage_lib import Selection, compute_usage, open_database
from usage_lib.core.prices import EMPTY, Price, PriceBook, load_price_book, price_book
from usage_lib.core.usage import TILE_FIGURES
from usage_lib.gateway import schema as gateway_schema
from usage_lib.gateway.routerconfig import load_router_config
from usage_lib.history.archive import open_archive
from usage_lib.history.store import open_store
from usage_lib.history.sync import sync

UTC = timezone.utc
CONFIG = ("gpt-4o", "claude", "embed-small")
US = timedelta(microseconds=1)
#: One default request of gpt-4o at (2, 8): (10*2 + 5*8) / 1e6.
ONE = Decimal("0.00006")


def D(text: str) -> Decimal:
    return Decimal(text)


def book(*entries: tuple) -> PriceBook:
    """A price book from (model, input, output[, valid_from]) per million tokens, USD."""
    prices = [Price(model, D(i), D(o), "USD", (rest[0] if rest else None), "test")
              for model, i, o, *rest in entries]
    return price_book([], prices)


GPT = book(("gpt-4o", "2", "8"))


def usage_of(g, viewer="root", prices=GPT, models=CONFIG, archive=None, compare=True, **selection):
    """compute_usage for `viewer` at NOW (unless `now=` is given), gpt-4o at (2, 8)."""
    db = open_database(g.url)
    try:
        return compute_usage(db, viewer, Selection(now=selection.pop("now", NOW), **selection), models=models,
                             prices=prices, archive=archive, compare=compare)
    finally:
        db.close()


def costs_by_model(usage) -> dict[str, Decimal]:
    return dict(zip(usage.models["model"], usage.models["cost"]))


def bucket_costs(usage) -> dict[str, Decimal]:
    """{bucket start as "MM-DD HH:MM" in the window's zone: cost}, buckets with a cost only."""
    return {b.strftime("%m-%d %H:%M"): c for b, c in zip(usage.timeseries["bucket"], usage.timeseries["cost"]) if c}


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def acme(gateway_db):
    """Acme with one global admin, root, who owns one token; (builder, token id)."""
    g = gateway_db()
    org = g.org("Acme")
    root = g.user("root", role="admin", org=org)
    return g, g.token(root, "main")


# --- prices: router config, prices file ------------------------------------------------

ROUTER = (
    "model_list:\n"
    "  - model_name: gpt-4o\n"
    "    litellm_params: {model: azure/gpt-4o}\n"
    "    model_info: {mode: chat, input_cost_per_token: 0.000002, output_cost_per_token: 0.000008}\n"
    "  - model_name: claude\n"
    "    litellm_params: {model: anthropic/claude, input_cost_per_token: 3.0e-06, output_cost_per_token: 1.5e-05}\n"
    "  - model_name: embed-small\n"
    "    litellm_params: {model: openai/text-embedding-3-small}\n"
)


def add_router_traffic(g, token):
    """gpt-4o: 3 requests of 100 in / 10 out; claude: 2 of 1,000 in / 200 out, an hour ago."""
    g.request(token, NOW - timedelta(hours=1), model="gpt-4o", input_tokens=100, output_tokens=10, count=3)
    g.request(token, NOW - timedelta(hours=1), model="claude", input_tokens=1000, output_tokens=200, count=2)


def test_router_config_prices_from_model_info_and_from_litellm_params_price_the_usage(acme, tmp_path):
    g, token = acme
    add_router_traffic(g, token)
    router = write(tmp_path, "router.yaml", ROUTER)
    usage = usage_of(g, prices=load_price_book(router, None), models=load_router_config(router))
    # gpt-4o (model_info: 2, 8 per million): 300 * 2 + 30 * 8 = 840 / 1e6 = 0.00084
    # claude (litellm_params: 3, 15):        2000 * 3 + 400 * 15 = 12000 / 1e6 = 0.012
    assert costs_by_model(usage) == {"gpt-4o": D("0.00084"), "claude": D("0.012"), "embed-small": 0}
    assert usage.cost.total == D("0.01284")           # 0.00084 + 0.012
    assert usage.cost.currency == "USD" and usage.cost.complete
    assert list(usage.top["cost"]) == [D("0.01284")]  # the one token
    assert sum(usage.timeseries["cost"]) == D("0.01284")


@pytest.mark.parametrize("kind", ["yaml", "csv"])
def test_a_prices_file_overrides_the_router_config_for_the_models_it_names(acme, tmp_path, kind):
    g, token = acme
    add_router_traffic(g, token)
    router = write(tmp_path, "router.yaml", ROUTER)
    if kind == "yaml":
        prices = write(tmp_path, "prices.yaml", (
            "prices:\n"
            "  - {model: gpt-4o, input_per_million: 1, output_per_million: 4, currency: USD}\n"
        ))
    else:
        prices = write(tmp_path, "prices.csv", "model,input_per_million,output_per_million,currency\ngpt-4o,1,4,USD\n")
    usage = usage_of(g, prices=load_price_book(router, prices), models=load_router_config(router))
    # gpt-4o from the file (1, 4): 300 * 1 + 30 * 4 = 420 / 1e6 = 0.00042
    # claude still from the router config (3, 15): 0.012
    assert costs_by_model(usage) == {"gpt-4o": D("0.00042"), "claude": D("0.012"), "embed-small": 0}
    assert usage.cost.total == D("0.01242")


@pytest.mark.parametrize("kind", ["yaml", "csv"])
def test_a_price_change_mid_week_prices_each_request_at_the_price_of_its_time(acme, tmp_path, kind):
    g, token = acme
    # 1w to NOW (Tue 11-24 12:00 UTC): from 11-17 12:00, daily buckets 11-17 .. 11-24.
    # gpt-4o costs (2, 8) until 11-20 06:00 UTC and (1, 4) from then on.
    if kind == "yaml":   # valid_from read by YAML itself as a timestamp (07:00 at +01:00)
        prices = write(tmp_path, "prices.yml", (
            "- {model: gpt-4o, input_per_million: 2, output_per_million: 8}\n"
            "- {model: gpt-4o, input_per_million: 1, output_per_million: 4, valid_from: 2026-11-20T07:00:00+01:00}\n"
        ))
    else:
        prices = write(tmp_path, "prices.csv", (
            "model,input_per_million,output_per_million,currency,valid_from\n"
            "gpt-4o,2,8,USD,\n"
            "gpt-4o,1,4,USD,2026-11-20T06:00:00\n"
        ))
    # A request of 1,000 in / 100 out: (1000*2 + 100*8) / 1e6 = 0.0028 before the
    # change, (1000*1 + 100*4) / 1e6 = 0.0014 after.
    tokens = {"input_tokens": 1000, "output_tokens": 100}
    g.request(token, datetime(2026, 11, 19, 10, tzinfo=UTC), count=1, **tokens)        # 1 * 0.0028
    g.request(token, datetime(2026, 11, 20, 6, tzinfo=UTC) - US, count=2, **tokens)    # 2 * 0.0028
    g.request(token, datetime(2026, 11, 20, 6, tzinfo=UTC), count=4, **tokens)         # 4 * 0.0014
    g.request(token, datetime(2026, 11, 22, 12, tzinfo=UTC), count=8, **tokens)        # 8 * 0.0014
    usage = usage_of(g, span="1w", prices=load_price_book(None, prices))
    assert bucket_costs(usage) == {
        "11-19 00:00": D("0.0028"),
        "11-20 00:00": D("0.0112"),   # 2 * 0.0028 + 4 * 0.0014 = 0.0056 + 0.0056
        "11-22 00:00": D("0.0112"),   # 8 * 0.0014
    }
    assert usage.cost.total == D("0.0252")    # 0.0028 + 0.0112 + 0.0112
    assert costs_by_model(usage)["gpt-4o"] == D("0.0252") and list(usage.top["cost"]) == [D("0.0252")]
    assert usage.cost.complete


def test_a_model_priced_only_from_mid_week_is_unpriced_before_not_free(acme):
    g, token = acme
    # claude has a price (3, 15) only from 11-20 06:00 UTC: earlier requests are unpriced.
    prices = book(("gpt-4o", "2", "8"), ("claude", "3", "15", datetime(2026, 11, 20, 6, tzinfo=UTC)))
    g.request(token, datetime(2026, 11, 19, 10, tzinfo=UTC), model="claude", count=2)   # unpriced
    g.request(token, datetime(2026, 11, 21, 10, tzinfo=UTC), model="claude", count=4)   # 4 * (10*3 + 5*15)/1e6
    usage = usage_of(g, span="1w", prices=prices)
    assert usage.cost.total == D("0.00042")   # 4 * 105 / 1e6
    assert (usage.cost.unpriced_requests, usage.cost.unpriced_input_tokens, usage.cost.unpriced_output_tokens) == (
        2, 20, 10)
    assert bucket_costs(usage) == {"11-21 00:00": D("0.00042")}
    assert usage.models.set_index("model").loc["claude", "unpriced_requests"] == 2


def test_rows_after_the_last_bucket_cost_in_the_total_but_in_no_bucket(acme):
    g, token = acme
    # 1d to NOW: the last bucket is 12:00-13:00. As their requests and tokens, rows
    # stamped after it (clock skew) count in the total only (SPEC §3).
    g.request(token, NOW - timedelta(hours=1), count=1)        # bucket 11:00
    g.request(token, NOW + timedelta(minutes=10), count=2)     # bucket 12:00 (after now)
    g.request(token, NOW + timedelta(hours=2), count=4)        # no bucket
    usage = usage_of(g)
    assert usage.cost.total == 7 * ONE                          # 1 + 2 + 4 requests
    assert bucket_costs(usage) == {"11-24 11:00": ONE, "11-24 12:00": 2 * ONE}
    assert list(usage.timeseries["requests"].iloc[-2:]) == [1, 2]


# --- unpriced models ------------------------------------------------------------------


def test_an_unpriced_model_is_left_out_of_the_cost_and_counted_apart(acme):
    g, token = acme
    g.request(token, NOW - timedelta(hours=2), model="gpt-4o", count=1)                        # 0.00006
    g.request(token, NOW - timedelta(hours=1), model="claude", input_tokens=7, output_tokens=3, count=2)  # no price
    usage = usage_of(g)
    assert usage.cost.total == ONE
    assert usage.cost.currency == "USD"
    # claude: 2 requests, 2 * 7 = 14 input and 2 * 3 = 6 output tokens left out.
    assert (usage.cost.unpriced_requests, usage.cost.unpriced_input_tokens, usage.cost.unpriced_output_tokens) == (
        2, 14, 6)
    assert not usage.cost.complete
    models = usage.models.set_index("model")
    assert models.loc["claude", "cost"] == 0 and models.loc["claude", "unpriced_requests"] == 2
    assert models.loc["gpt-4o", "unpriced_requests"] == 0
    assert list(usage.top["cost"]) == [ONE]
    assert bucket_costs(usage) == {"11-24 10:00": ONE}
    assert usage.to_json()["cost"] == {"currency": "USD", "total": format(usage.cost.total, "f"),
                                       "unpriced_requests": 2, "unpriced_input_tokens": 14,
                                       "unpriced_output_tokens": 6}


def test_without_any_price_every_request_is_unpriced_and_there_is_no_currency(acme):
    g, token = acme
    g.request(token, NOW - timedelta(hours=1), count=3)
    usage = usage_of(g, prices=EMPTY)
    assert usage.cost.currency is None and usage.cost.total == 0
    assert (usage.cost.unpriced_requests, usage.cost.unpriced_input_tokens, usage.cost.unpriced_output_tokens) == (
        3, 30, 15)
    assert not usage.cost.complete


def test_a_model_outside_the_router_config_is_neither_cost_nor_unpriced(acme):
    g, token = acme
    # SPEC §3: only configured models count, in every figure; cost is one of them.
    g.request(token, NOW - timedelta(hours=1), model="GPT-4o", count=4)
    g.request(token, NOW - timedelta(hours=1), model="gpt-4o", count=1)
    usage = usage_of(g, prices=book(("gpt-4o", "2", "8"), ("GPT-4o", "1000", "1000")))
    assert usage.cost.total == ONE and usage.cost.complete


# --- reach ------------------------------------------------------------------------------


@pytest.fixture
def two_orgs(gateway_db):
    """Acme and Beta, with a service account of Acme's team ML whose token bert (Beta)
    created. Requests an hour before NOW, all gpt-4o at (2, 8), 1,000 in / 500 out:
    (1000*2 + 500*8) / 1e6 = 0.006 each.

        olga's   olga (Acme, org admin)        1 request    0.006
        bert's   bert (Beta, user)             2            0.012
        ml-key   service account ml-bot of     4            0.024
                 Acme's team ML, made by bert
    """
    g = gateway_db()
    acme, beta = g.org("Acme"), g.org("Beta")
    ml = g.team(acme, "ML")
    users = {
        "root": g.user("root", role="admin", org=acme),
        "olga": g.user("olga", role="org-admin", org=acme),
        "ursula": g.user("ursula", role="user", org=acme, teams={ml: False}),
        "bert": g.user("bert", role="user", org=beta),
        "bea": g.user("bea", role="org-admin", org=beta),
    }
    tokens = {
        "olga": g.token(users["olga"], "olga's"),
        "bert": g.token(users["bert"], "bert's"),
        "ml-key": g.token(users["bert"], "ml-key", service_account=g.service_account(ml, "ml-bot")),
    }
    at = NOW - timedelta(hours=1)
    for name, count in (("olga", 1), ("bert", 2), ("ml-key", 4)):
        g.request(tokens[name], at, count=count, input_tokens=1000, output_tokens=500)
    return g, {"acme": acme, "beta": beta}, tokens


def test_a_service_account_token_made_in_another_org_costs_in_both_orgs(two_orgs):
    g, orgs, tokens = two_orgs
    everything = usage_of(g, org="all")
    # All: 1 + 2 + 4 = 7 requests, 7 * 0.006 = 0.042.
    assert everything.cost.total == D("0.042")
    # The org table puts a service account's token under its owner's org (SPEC §3):
    # Acme: olga's 0.006; Beta: bert's + ml-key = 0.012 + 0.024 = 0.036.
    assert dict(zip(everything.top["name"], everything.top["cost"])) == {"Acme": D("0.006"), "Beta": D("0.036")}
    # Both orgs reach ml-key (SPEC §2): Acme through its team, Beta through its owner.
    acme = usage_of(g, org=orgs["acme"])          # olga's + ml-key = 0.006 + 0.024
    assert acme.cost.total == D("0.030")
    assert dict(zip(acme.top["id"], acme.top["cost"])) == {tokens["ml-key"]: D("0.024"), tokens["olga"]: D("0.006")}
    assert usage_of(g, "olga").cost.total == D("0.030")
    beta = usage_of(g, "bea")                     # bert's + ml-key = 0.012 + 0.024
    assert beta.cost.total == D("0.036")
    assert dict(zip(beta.top["id"], beta.top["cost"])) == {tokens["ml-key"]: D("0.024"), tokens["bert"]: D("0.012")}
    # So per-org costs add up to more than All's: 0.030 + 0.036 = 0.066 > 0.042.
    assert acme.cost.total + beta.cost.total > everything.cost.total
    # Standard users: ursula through her team's service account, bert as its owner.
    assert usage_of(g, "ursula").cost.total == D("0.024")
    assert usage_of(g, "bert").cost.total == D("0.036")


def test_a_standard_users_cost_holds_only_requests_in_their_reach(gateway_db):
    g = gateway_db()
    acme, beta = g.org("Acme"), g.org("Beta")
    g.user("root", role="admin", org=acme)
    ursula = g.user("ursula", role="user", org=acme)
    uwe = g.user("uwe", role="user", org=acme)
    bert = g.user("bert", role="user", org=beta)
    hers, his, berts = g.token(ursula, "hers"), g.token(uwe, "his"), g.token(bert, "berts")
    at = NOW - timedelta(hours=1)
    before = NOW - timedelta(days=1, hours=1)     # in the previous period
    mail = "ursula@example.org"
    # Expensive: claude (3, 15) with 1,000,000 in / 100,000 out: 3 + 1.5 = 4.5 each.
    big = {"model": "claude", "input_tokens": 1_000_000, "output_tokens": 100_000}
    g.request(hers, at, count=1)                          # hers: 0.00006
    g.request(his, at, count=2, user_id=mail)             # her email on an Acme token: 2 * 0.00006
    g.request(his, at, count=4, **big)                    # uwe's own, not hers: 4 * 4.5 = 18
    g.request(berts, at, count=8, user_id=mail, **big)    # her email, but a Beta token: not hers
    g.request(hers, before, count=3)                      # 3 * 0.00006
    g.request(his, before, count=16, **big)               # not hers
    prices = book(("gpt-4o", "2", "8"), ("claude", "3", "15"))
    usage = usage_of(g, "ursula", prices=prices)
    assert usage.cost.total == D("0.00018")               # (1 + 2) * 0.00006
    assert usage.cost.complete
    assert usage.previous.cost.total == D("0.00018")      # 3 * 0.00006
    assert usage.change("cost") == 0.0
    # Her token table: uwe's token (2 requests in her reach) before hers (1).
    assert list(usage.top["id"]) == [his, hers] and list(usage.top["cost"]) == [2 * ONE, ONE]
    # Selecting uwe's token, she sees only its part in her reach: 2 * 0.00006.
    assert usage_of(g, "ursula", prices=prices, token=his).cost.total == D("0.00012")
    # Asking for Beta falls back to Acme: still her reach only.
    assert usage_of(g, "ursula", prices=prices, org=beta).cost.total == D("0.00018")
    # The org admin's view of the same org has everything of Acme's tokens:
    # 3 * 0.00006 + 4 * 4.5 = 18.00018 (bert's token is Beta's).
    assert usage_of(g, "root", prices=prices, org=acme).cost.total == D("18.00018")


# --- money is exact -------------------------------------------------------------------


def test_a_thousand_tiny_costs_sum_exactly(gateway_db):
    g = gateway_db()
    acme = g.org("Acme")
    root = g.user("root", role="admin", org=acme)
    tokens = [g.token(root, f"t{n}") for n in range(10)]
    g.request(tokens[0], NOW - timedelta(hours=1), count=1)   # gpt-4o: no price in this book
    # 10 tokens x 10 hours x 10 requests of 1 input token at 0.1 per million:
    # each request 0.1 / 1e6 = 0.0000001; 1,000 of them 0.0001 exactly (as floats,
    # 1,000 additions of 1e-7 give 9.999999999999924e-05).
    for hour, token in itertools.product(range(1, 11), tokens):
        g.request(token, NOW - timedelta(hours=hour), model="embed-small", input_tokens=1, output_tokens=0, count=10)
    prices = book(("embed-small", "0.1", "0"))
    usage = usage_of(g, prices=prices)
    assert usage.cost.total == D("0.0001") and isinstance(usage.cost.total, Decimal)
    assert usage.cost.unpriced_requests == 1              # the gpt-4o request
    assert sum(usage.timeseries["cost"], Decimal(0)) == D("0.0001")
    assert set(bucket_costs(usage).values()) == {D("0.00001")}   # 10 tokens x 10 requests per hour
    assert set(usage.top["cost"]) == {D("0.00001")}              # 10 hours x 10 requests per token
    assert D(usage.to_json()["cost"]["total"]) == D("0.0001")


# --- the previous period --------------------------------------------------------------


@pytest.fixture
def three_tokens(gateway_db):
    """Acme, root (global admin) with tokens A, B and C; (builder, {name: id})."""
    g = gateway_db()
    acme = g.org("Acme")
    root = g.user("root", role="admin", org=acme)
    return g, {name: g.token(root, name) for name in "ABC"}


def test_changes_against_the_previous_day_for_tiles_and_top_table(three_tokens):
    g, t = three_tokens
    start = NOW - timedelta(days=1)               # window [11-23 12:00, ...); previous [11-22 12:00, 11-23 12:00)
    g.request(t["A"], start - timedelta(days=1), count=2)               # previous, its first instant
    g.request(t["B"], start - US, count=4, status=500)                  # previous, its last instant, failed
    g.request(t["B"], start - timedelta(days=1) - US, count=64)         # before both: nowhere
    g.request(t["A"], start, count=3)                                   # now, the window's first instant
    g.request(t["C"], NOW - timedelta(hours=1), count=1, model="claude")   # now, unpriced
    usage = usage_of(g)
    prev = usage.previous
    assert (prev.window.start, prev.window.until) == (start - timedelta(days=1), start)
    # Requests: now 3 + 1 = 4, then 2 + 4 = 6: 4/6 - 1 = -1/3.
    assert usage.metrics.total_requests == 4 and prev.metrics.total_requests == 6
    assert usage.change("total_requests") == pytest.approx(-1 / 3)
    # Tokens: input 40 vs 60, output 20 vs 30: -1/3 each.
    assert usage.change("input_tokens") == pytest.approx(-1 / 3)
    assert usage.change("total_tokens") == pytest.approx(-1 / 3)
    # Failed: 0 now, 4 then: -100%.
    assert usage.change("failed_requests") == -1.0
    # Cost: now 3 * 0.00006 = 0.00018 (C's claude unpriced), then 6 * 0.00006 = 0.00036: -50%.
    assert usage.cost.total == D("0.00018") and prev.cost.total == D("0.00036")
    assert usage.change("cost") == pytest.approx(-0.5)
    # Embeddings: none in either period: no change to tell.
    assert usage.change("avg_response_ms_embedding") is None
    assert set(usage.to_json()["changes"]) == set(TILE_FIGURES)
    # Top table: A 3 (then 2: +50%), C 1 (then 0: new, no change to tell); B stopped (then 4).
    top = usage.top.set_index("name")
    assert list(usage.top["name"]) == ["A", "C"]
    assert list(top["previous_requests"]) == [2, 0]
    assert top.loc["A", "change"] == pytest.approx(0.5) and math.isnan(top.loc["C", "change"])
    assert list(top["new"]) == [False, True]
    stopped = usage.stopped
    assert list(stopped["name"]) == ["B"]
    assert (stopped["requests"].iloc[0], stopped["previous_requests"].iloc[0], stopped["change"].iloc[0]) == (0, 4, -1.0)
    assert stopped["cost"].iloc[0] == 0 and not stopped["new"].iloc[0]


def test_without_compare_there_is_no_previous_period(three_tokens):
    g, t = three_tokens
    g.request(t["A"], NOW - timedelta(days=1, hours=1), count=2)
    usage = usage_of(g, compare=False)
    assert usage.previous is None and usage.change("total_requests") is None
    assert "previous_requests" not in usage.top.columns


def test_changes_across_the_autumn_dst_change_compare_with_the_24_real_hours_before(three_tokens):
    g, t = three_tokens
    # Vienna's clocks go back on 2026-10-25 at 03:00 CEST = 01:00 UTC, to 02:00 CET.
    # now = 06:00 CET 10-25 = 05:00 UTC. The 1d window is the 24 real hours from
    # 05:00 UTC 10-24 (07:00 CEST): 23 hours on the wall clock, 25 hourly buckets.
    # The previous period is [05:00 UTC 10-23, 05:00 UTC 10-24) = [07:00 CEST 10-23, 07:00 CEST 10-24);
    # wall-clock arithmetic ("06:00 yesterday") would start both an hour early.
    now = datetime(2026, 10, 25, 5, tzinfo=UTC)
    g.request(t["A"], datetime(2026, 10, 23, 5, tzinfo=UTC) - US, count=16)   # before the previous period
    g.request(t["A"], datetime(2026, 10, 23, 5, tzinfo=UTC), count=8)         # previous, first instant
    g.request(t["A"], datetime(2026, 10, 24, 4, 30, tzinfo=UTC), count=2)     # previous (06:30 CEST 10-24)
    g.request(t["A"], datetime(2026, 10, 24, 5, tzinfo=UTC), count=4)         # window, first instant
    g.request(t["B"], datetime(2026, 10, 25, 0, 30, tzinfo=UTC), count=32)    # window, 02:30 CEST
    g.request(t["B"], datetime(2026, 10, 25, 1, 30, tzinfo=UTC), count=64)    # window, 02:30 CET
    usage = usage_of(g, now=now, tz="Europe/Vienna")
    prev = usage.previous
    assert prev.window.start.astimezone(UTC) == datetime(2026, 10, 23, 5, tzinfo=UTC)
    assert prev.window.until.astimezone(UTC) == datetime(2026, 10, 24, 5, tzinfo=UTC)
    assert prev.window.until - prev.window.start == timedelta(hours=24)
    assert len(usage.timeseries) == 25
    # Now 4 + 32 + 64 = 100 requests, then 8 + 2 = 10: +900%.
    assert (usage.metrics.total_requests, prev.metrics.total_requests) == (100, 10)
    assert usage.change("total_requests") == pytest.approx(9.0)
    # Cost: 100 * 0.00006 = 0.006 vs 10 * 0.00006 = 0.0006: +900%.
    assert (usage.cost.total, prev.cost.total) == (D("0.006"), D("0.0006"))
    assert usage.change("cost") == pytest.approx(9.0)
    # The two 02:00 hours of the night are two buckets, each with its own cost.
    costs = [(b.strftime("%H:%M%z"), c) for b, c in zip(usage.timeseries["bucket"], usage.timeseries["cost"]) if c]
    assert costs == [("07:00+0200", 4 * ONE), ("02:00+0200", 32 * ONE), ("02:00+0100", 64 * ONE)]
    top = usage.top.set_index("name")
    assert (top.loc["A", "requests"], top.loc["A", "previous_requests"]) == (4, 10)
    assert top.loc["A", "change"] == pytest.approx(-0.6) and bool(top.loc["B", "new"])


def test_the_day_after_the_autumn_change_compares_with_a_previous_day_holding_it(three_tokens):
    g, t = three_tokens
    # now = 02:00 CET 10-26 = 01:00 UTC; window from 01:00 UTC 10-25 (02:00 CET, just
    # after the change); previous [01:00 UTC 10-24, 01:00 UTC 10-25) = [03:00 CEST 10-24,
    # 02:00 CET 10-25): 24 real hours, 23 on the wall clock.
    now = datetime(2026, 10, 26, 1, tzinfo=UTC)
    g.request(t["A"], datetime(2026, 10, 24, 0, 30, tzinfo=UTC), count=1)    # 02:30 CEST 10-24: before it
    g.request(t["A"], datetime(2026, 10, 24, 1, tzinfo=UTC), count=2)        # previous, first instant
    g.request(t["A"], datetime(2026, 10, 25, 0, 30, tzinfo=UTC), count=4)    # 02:30 CEST 10-25: previous
    g.request(t["A"], datetime(2026, 10, 25, 1, tzinfo=UTC), count=8)        # 02:00 CET: window
    usage = usage_of(g, now=now, tz="Europe/Vienna")
    assert usage.previous.window.start.astimezone(UTC) == datetime(2026, 10, 24, 1, tzinfo=UTC)
    # Now 8, then 2 + 4 = 6: 8/6 - 1 = +1/3; cost 8 * 0.00006 vs 6 * 0.00006.
    assert (usage.metrics.total_requests, usage.previous.metrics.total_requests) == (8, 6)
    assert (usage.cost.total, usage.previous.cost.total) == (D("0.00048"), D("0.00036"))
    assert usage.change("total_requests") == pytest.approx(1 / 3)
    assert usage.change("cost") == pytest.approx(1 / 3)


def test_a_custom_range_across_the_autumn_change_compares_with_as_many_real_hours_before(three_tokens):
    g, t = three_tokens
    # [12:00 CEST 10-24, 12:00 CET 10-25) = [10:00 UTC 10-24, 11:00 UTC 10-25): 25 real
    # hours. The previous period is the 25 real hours before: [09:00 UTC 10-23, 10:00 UTC 10-24).
    g.request(t["A"], datetime(2026, 10, 23, 9, tzinfo=UTC) - US, count=16)   # before it
    g.request(t["A"], datetime(2026, 10, 23, 9, tzinfo=UTC), count=2)         # previous, first instant
    g.request(t["A"], datetime(2026, 10, 24, 10, tzinfo=UTC) - US, count=4)   # previous, last instant
    g.request(t["A"], datetime(2026, 10, 24, 10, tzinfo=UTC), count=8)        # the range's first instant
    usage = usage_of(g, tz="Europe/Vienna", start="2026-10-24T12:00", end="2026-10-25T12:00")
    assert usage.metrics.total_requests == 8
    assert usage.previous.window.start.astimezone(UTC) == datetime(2026, 10, 23, 9, tzinfo=UTC)
    # Then 2 + 4 = 6 requests, 6 * 0.00006: changes 8/6 - 1 = +1/3.
    assert (usage.previous.metrics.total_requests, usage.previous.cost.total) == (6, D("0.00036"))
    assert usage.change("cost") == pytest.approx(1 / 3)


def test_the_previous_period_is_priced_at_its_own_prices(three_tokens):
    g, t = three_tokens
    # gpt-4o costs (4, 16) until the window's start (11-23 12:00 UTC), (2, 8) after:
    # previous: 1 request at (10*4 + 5*16)/1e6 = 0.00012; now: 1 at 0.00006.
    prices = book(("gpt-4o", "4", "16"), ("gpt-4o", "2", "8", NOW - timedelta(days=1)))
    g.request(t["A"], NOW - timedelta(days=1, hours=1), count=1)
    g.request(t["A"], NOW - timedelta(hours=1), count=1)
    usage = usage_of(g, prices=prices)
    assert (usage.cost.total, usage.previous.cost.total) == (ONE, D("0.00012"))
    assert usage.change("total_requests") == 0.0 and usage.change("cost") == pytest.approx(-0.5)


# --- the archive path -------------------------------------------------------------------


def test_the_archive_gives_the_same_cost_and_changes_as_the_gateway(three_tokens, new_archive):
    g, t = three_tokens
    now = datetime(2026, 11, 24, 12, 40, tzinfo=UTC)
    # 1d: window from 11-23 12:40, previous [11-22 12:40, 11-23 12:40). A sync at now
    # with a 2-hour settle archives the slices before 10:30 on 11-24.
    # gpt-4o: (2, 8) until 11-24 09:15 (a slice edge), then (1, 4): 0.00006 and
    # 0.00003 a request; claude unpriced.
    prices = book(("gpt-4o", "2", "8"), ("gpt-4o", "1", "4", datetime(2026, 11, 24, 9, 15, tzinfo=UTC)))
    day = datetime(2026, 11, 24, tzinfo=UTC)
    g.request(t["A"], day - timedelta(hours=35), count=2)                  # 11-22 13:00, previous
    g.request(t["B"], day - timedelta(hours=34), count=4)                  # 11-22 14:00, previous; B stops
    g.request(t["A"], day - timedelta(hours=11), count=1)                  # 11-23 13:00, now, (2, 8)
    g.request(t["A"], day + timedelta(hours=9), count=8)                   # 09:00, (2, 8)
    g.request(t["A"], day + timedelta(hours=9, minutes=20), count=16)      # 09:20, (1, 4)
    g.request(t["C"], day + timedelta(hours=9, minutes=30), count=32, model="claude")   # unpriced
    g.request(t["A"], day + timedelta(hours=11), count=64)                 # 11:00, not settled, (1, 4)
    direct = usage_of(g, prices=prices, now=now)
    # Now: (1 + 8) * 0.00006 + (16 + 64) * 0.00003 = 0.00054 + 0.0024 = 0.00294; then 6 * 0.00006.
    assert (direct.cost.total, direct.previous.cost.total) == (D("0.00294"), D("0.00036"))
    assert direct.cost.unpriced_requests == 32

    archive_url = new_archive(g.backend)
    db, store = open_database(g.url), open_store(archive_url, writable=True)
    try:
        sync(db, store, now=now, settle=timedelta(hours=2))
    finally:
        store.close()
        db.close()
    # The gateway forgets everything but the 64 unsettled requests (the last inserted):
    # what the window and the previous period now show comes from the archive.
    settled = 2 + 4 + 1 + 8 + 16 + 32
    request = gateway_schema.management_request
    with g.engine.begin() as conn:
        conn.execute(delete(request).where(request.c.id <= settled))
    archive = open_archive(archive_url)
    try:
        through = usage_of(g, prices=prices, now=now, archive=archive)
    finally:
        archive.close()
    assert through.cost == direct.cost and through.previous.cost == direct.previous.cost
    assert {name: through.change(name) for name in TILE_FIGURES} == {name: direct.change(name) for name in TILE_FIGURES}
    assert list(through.timeseries["cost"]) == list(direct.timeseries["cost"])
    assert costs_by_model(through) == costs_by_model(direct)
    assert_frame_equal(through.top, direct.top)            # with previous_requests, change, new
    assert_frame_equal(through.stopped, direct.stopped)    # B
    assert list(direct.stopped["name"]) == ["B"]


# --- the statement budget ---------------------------------------------------------------


def test_a_refresh_with_prices_and_the_previous_period_sends_at_most_three_statements(acme):
    g, token = acme
    g.request(token, NOW - timedelta(hours=30), count=1)
    g.request(token, NOW - timedelta(hours=1), count=2)
    # A price change inside the window and one inside the previous period: more cuts,
    # no more statements.
    prices = book(("gpt-4o", "2", "8"), ("gpt-4o", "1", "4", NOW - timedelta(hours=5)),
                  ("gpt-4o", "3", "9", NOW - timedelta(hours=28)), ("claude", "1", "1"))
    for span in ("1h", "1d", "1w"):
        db = open_database(g.url)
        try:
            db.statements.count = 0
            usage = compute_usage(db, "root", Selection(now=NOW, span=span), models=CONFIG, prices=prices)
            assert db.statements.count <= 3, span
            assert usage.previous is not None
        finally:
            db.close()
