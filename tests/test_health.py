"""Health (issue 15, items 1-4 and 8): latency percentiles, failures by kind, requests in
flight or without reported tokens, gateway overhead, on tiny hand-built orgs, on SQLite
and PostgreSQL.

Rules under test:
- percentiles are nearest-rank (the ceil(q * n)-th smallest time) from log-scale
  histograms, within 1% of the exact value; completions and embeddings by SPEC's path
  rule (a path containing "completion" / "embedding", case-insensitive);
- failures: 4xx (400-499 but 429), 429 on its own, 5xx; NULL status is in flight, not
  failed; the failure rate is failed / all requests;
- "tokens unknown": a completion that did not fail (status below 400) with 0 input and
  0 output tokens;
- everything within the viewer's reach, like every other figure.

The window is the day before NOW (2026-11-24 12:00 UTC), hourly buckets. Unless a test
says otherwise a request is a gpt-4o chat completion at 11:00, status 200, 100 ms, 10
input and 5 output tokens.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from tests.support.gateway import NOW
from usage_lib import Selection, open_database
from usage_lib.core.health import compute_health, failure_kind
from usage_lib.core.latency import RELATIVE_ERROR

CONFIG = ("gpt-4o", "claude", "embed")
AT_11 = datetime(2026, 11, 24, 11, 0, tzinfo=timezone.utc)
AT_09 = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
EMBEDDINGS = "/v1/embeddings"


def nearest_rank(values: list[int], quantile: float) -> int:
    """The exact percentile: the ceil(q * n)-th smallest value."""
    ordered = sorted(values)
    return ordered[math.ceil(quantile * len(ordered)) - 1]


def close_to(estimate: float, exact: int) -> bool:
    return abs(estimate - exact) <= RELATIVE_ERROR * exact + 1e-9


def one_org(g, **limits):
    """Acme: root (global admin), ana (user) and bob (user), each with a token."""
    acme = g.org("Acme")
    users = {"root": g.user("root", role="admin", org=acme), "ana": g.user("ana", org=acme),
             "bob": g.user("bob", org=acme)}
    return {name: g.token(user, f"{name}-key") for name, user in users.items()}


def health_of(g, viewer="root", span="1d", models=CONFIG, **selection):
    db = open_database(g.url)
    try:
        return compute_health(db, viewer, Selection(span=span, now=NOW, **selection), models)
    finally:
        db.close()


def test_percentiles_of_ten_times(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    for ms in range(100, 1001, 100):
        g.request(tokens["root"], AT_11, ms=ms)
    latency = health_of(g).latency.loc["completion"]
    # Ranks: p50 ceil(5) = 5th (500), p90 9th (900), p95 ceil(9.5) = 10th, p99 10th.
    assert latency["requests"] == 10
    assert [close_to(latency[p], exact) for p, exact in
            (("p50", 500), ("p90", 900), ("p95", 1000), ("p99", 1000))] == [True] * 4


def test_percentiles_within_one_percent_of_a_sorted_list(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    rng = random.Random(15)
    times = [int(rng.lognormvariate(7, 1.5)) for _ in range(300)] + [0, 1, 2]
    for ms in times:
        g.request(tokens["root"], AT_11, ms=ms)
    latency = health_of(g).latency.loc["completion"]
    for quantile in (0.5, 0.9, 0.95, 0.99):
        exact = nearest_rank(times, quantile)
        assert close_to(latency[f"p{round(quantile * 100)}"], exact), (quantile, exact)


def test_completions_and_embeddings_apart_and_other_paths_in_neither(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    g.request(tokens["root"], AT_11, ms=100, path="/v1/chat/completions")
    g.request(tokens["root"], AT_11, ms=300, path="/COMPLETIONS")
    g.request(tokens["root"], AT_11, ms=40, model="embed", path=EMBEDDINGS)
    g.request(tokens["root"], AT_11, ms=9000, path="/v1/responses")
    latency = health_of(g).latency
    assert latency.loc["completion", "requests"] == 2 and close_to(latency.loc["completion", "p99"], 300)
    assert latency.loc["embedding", "requests"] == 1 and close_to(latency.loc["embedding", "p50"], 40)


def test_requests_without_a_time_have_no_percentile(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    g.request(tokens["root"], AT_11, ms=None, status=None)
    latency = health_of(g).latency
    assert latency.loc["completion", "requests"] == 0
    assert math.isnan(latency.loc["completion", "p50"])


def test_percentiles_per_model(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    g.request(tokens["root"], AT_11, ms=100, count=3)
    g.request(tokens["root"], AT_11, ms=2000, model="claude")
    by_model = health_of(g).latency_by_model.set_index(["model", "kind"])
    assert by_model.loc[("gpt-4o", "completion"), "requests"] == 3
    assert close_to(by_model.loc[("claude", "completion"), "p50"], 2000)
    assert ("embed", "completion") not in by_model.index  # no requests: no row


def test_p50_and_p95_per_bucket(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    g.request(tokens["root"], AT_09 + timedelta(minutes=5), ms=50)
    g.request(tokens["root"], AT_11 + timedelta(minutes=5), ms=700, count=19)
    g.request(tokens["root"], AT_11 + timedelta(minutes=6), ms=5000)
    over_time = health_of(g).latency_over_time.set_index("bucket")
    nine, eleven, ten = (pd.Timestamp(moment) for moment in (AT_09, AT_11, AT_11 - timedelta(hours=1)))
    assert close_to(over_time.loc[nine, "completion_p50"], 50)
    # 20 requests at 11:00: p50 = 10th (700), p95 = 19th (700); the 5000 ms one is 20th.
    assert close_to(over_time.loc[eleven, "completion_p50"], 700)
    assert close_to(over_time.loc[eleven, "completion_p95"], 700)
    assert math.isnan(over_time.loc[ten, "completion_p50"])
    assert len(over_time) == 25


def test_status_codes_and_their_kinds(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    for status, count in ((200, 4), (404, 2), (400, 1), (429, 3), (500, 1), (503, 2), (None, 1)):
        g.request(tokens["root"], AT_11, status=status, count=count)
    statuses = health_of(g).statuses
    assert statuses["status_code"].tolist() == [200, 400, 404, 429, 500, 503, pd.NA]
    assert statuses["kind"].tolist() == ["ok", "4xx", "4xx", "429", "5xx", "5xx", "in flight"]
    assert statuses["requests"].tolist() == [4, 1, 2, 3, 1, 2, 1]


def test_failure_kinds():
    assert [failure_kind(s) for s in (None, 200, 399, 400, 428, 429, 430, 499, 500, 599)] == [
        "in flight", "ok", "ok", "4xx", "4xx", "429", "4xx", "4xx", "5xx", "5xx"]


def test_failures_over_time_and_the_failure_rate(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    g.request(tokens["root"], AT_09, status=200, count=3)
    g.request(tokens["root"], AT_09, status=500)
    g.request(tokens["root"], AT_11, status=429, count=2)
    g.request(tokens["root"], AT_11, status=404)
    g.request(tokens["root"], AT_11, status=None)  # in flight: counted, not failed
    over_time = health_of(g).failures_over_time.set_index("bucket")
    nine, eleven = pd.Timestamp(AT_09), pd.Timestamp(AT_11)
    assert over_time.loc[nine, ["requests", "4xx", "429", "5xx", "failed"]].tolist() == [4, 0, 0, 1, 1]
    assert over_time.loc[nine, "failure_rate"] == pytest.approx(1 / 4)
    assert over_time.loc[eleven, ["requests", "4xx", "429", "5xx", "failed"]].tolist() == [4, 1, 2, 0, 3]
    assert over_time.loc[eleven, "failure_rate"] == pytest.approx(3 / 4)
    assert over_time["failed"].sum() == 4


def test_failures_per_model(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    g.request(tokens["root"], AT_11, status=502, model="claude")
    g.request(tokens["root"], AT_11, status=200, model="claude")
    g.request(tokens["root"], AT_11, status=429, count=2)
    by_model = health_of(g).failures_by_model.set_index("model")
    assert by_model.loc["claude", ["requests", "5xx", "failed"]].tolist() == [2, 1, 1]
    assert by_model.loc["gpt-4o", ["requests", "429", "failed"]].tolist() == [2, 2, 2]
    assert by_model.index.tolist() == ["claude", "gpt-4o"]  # most requests first, ties by name


def test_requests_in_flight_and_the_oldest(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    g.request(tokens["root"], AT_09, status=None, ms=None)
    g.request(tokens["root"], AT_11, status=None, ms=None, count=2)
    g.request(tokens["root"], AT_09 - timedelta(hours=1), status=200)
    health = health_of(g)
    assert health.in_flight == 3
    assert health.oldest_in_flight == AT_09
    assert health.oldest_in_flight_age_s == 3 * 3600  # 09:00 to NOW (12:00)


def test_nothing_in_flight(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    g.request(tokens["root"], AT_11)
    health = health_of(g)
    assert (health.in_flight, health.oldest_in_flight, health.oldest_in_flight_age_s) == (0, None, None)


def test_completions_without_reported_tokens(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    g.request(tokens["root"], AT_11, input_tokens=0, output_tokens=0, count=2)  # counted
    g.request(tokens["root"], AT_11, input_tokens=0, output_tokens=0, status=500)  # failed: not
    g.request(tokens["root"], AT_11, input_tokens=0, output_tokens=0, status=None)  # in flight: not
    g.request(tokens["root"], AT_11, input_tokens=7, output_tokens=0)  # has tokens: not
    g.request(tokens["root"], AT_11, input_tokens=0, output_tokens=0, model="embed", path=EMBEDDINGS)  # not a completion
    health = health_of(g)
    assert health.tokens_unknown == 2
    assert health.failures_by_model.set_index("model").loc["gpt-4o", "tokens_unknown"] == 2


def test_a_standard_user_sees_only_their_reach(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    g.request(tokens["ana"], AT_11, ms=100, status=500)
    g.request(tokens["bob"], AT_11, ms=9000, status=None, count=4)
    health = health_of(g, viewer="ana")
    assert health.latency.loc["completion", "requests"] == 1
    assert health.statuses["requests"].sum() == 1
    assert health.in_flight == 0
    assert health.headroom is None


def test_only_configured_models_count(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    g.request(tokens["root"], AT_11, model="gpt-4o-alias", status=500, count=3)
    g.request(tokens["root"], AT_11, model="", status=None)
    g.request(tokens["root"], AT_11)
    health = health_of(g)
    assert health.statuses["requests"].sum() == 1


def test_every_request_counts_without_a_router_config(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    g.request(tokens["root"], AT_11, model="anything", status=500)
    g.request(tokens["root"], AT_11, model=None)
    by_model = health_of(g, models=None).failures_by_model.set_index("model")
    assert by_model["requests"].to_dict() == {"": 1, "anything": 1}


def test_gateway_overhead_percentiles(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    for ms in (5, 10, 20, 40):
        g.request(tokens["root"], AT_11, processing_ms=ms)
    g.request(tokens["root"], AT_11, processing_ms=None)
    g.request(tokens["root"], AT_11, model="embed", path=EMBEDDINGS, processing_ms=3)
    processing = health_of(g).processing
    # Completions: 4 times; p50 = 2nd (10), p99 = 4th (40).
    assert processing.loc["completion", "requests"] == 4
    assert close_to(processing.loc["completion", "p50"], 10) and close_to(processing.loc["completion", "p99"], 40)
    assert close_to(processing.loc["embedding", "p50"], 3)


def test_no_overhead_without_the_column_and_nothing_breaks(gateway_db):
    g = gateway_db(processing_time_column=False)
    tokens = one_org(g)
    g.request(tokens["root"], AT_11, ms=100)
    health = health_of(g)
    assert health.processing is None
    assert any("processing_time_ms" in notice for notice in health.notices)
    assert health.latency.loc["completion", "requests"] == 1


def test_statements_per_health_refresh(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    g.request(tokens["root"], AT_11)
    db = open_database(g.url)
    try:
        for viewer, expected in (("ana", 3), ("root", 4)):  # viewer, catalogue, health (+ headroom)
            db.statements.count = 0
            compute_health(db, viewer, Selection(span="1d", now=NOW), CONFIG)
            assert db.statements.count == expected, viewer
    finally:
        db.close()


def test_the_json_health_object(gateway_db):
    g = gateway_db()
    tokens = one_org(g)
    g.request(tokens["root"], AT_11, status=429)
    g.request(tokens["root"], AT_11, status=None, ms=None)
    data = health_of(g).to_json()
    assert data["version"] == 1
    assert data["in_flight"] == 1 and data["oldest_in_flight"] == AT_11.isoformat()
    assert data["statuses"] == [{"status_code": 429, "kind": "429", "requests": 1},
                                {"status_code": None, "kind": "in flight", "requests": 1}]
    assert data["latency"][0]["kind"] == "completion" and data["latency"][0]["requests"] == 1
    assert data["latency"][1]["p50"] is None
