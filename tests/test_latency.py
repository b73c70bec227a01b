"""Latency histograms (issue 15, item 1): a percentile read from the bins lies within
1% of the exact nearest-rank percentile of the times, and SQL bins a time exactly as
Python does, on SQLite and PostgreSQL."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings, strategies as st
from sqlalchemy import select

from tests.support.gateway import NOW
from usage_lib.core import latency
from usage_lib.gateway.schema import management_request as request

QUANTILES = (0.5, 0.9, 0.95, 0.99)


def histogram(times: list[int]) -> np.ndarray:
    counts = np.zeros(latency.BINS, dtype=np.int64)
    for ms in times:
        counts[latency.bin_of(ms)] += 1
    return counts


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=latency.LARGEST_MS - 1), min_size=1, max_size=200))
def test_percentiles_within_the_error_bound_of_a_sorted_list(times):
    found = latency.percentiles(histogram(times), QUANTILES)
    ordered = sorted(times)
    for quantile, estimate in zip(QUANTILES, found):
        exact = ordered[math.ceil(quantile * len(ordered)) - 1]
        assert abs(estimate - exact) <= latency.RELATIVE_ERROR * exact + 1e-9


def test_the_error_bound_is_under_one_percent():
    assert latency.RELATIVE_ERROR < 0.01


def test_an_empty_histogram_has_no_percentiles():
    assert np.isnan(latency.percentiles(np.zeros(latency.BINS, dtype=np.int64))).all()


def test_histograms_add_up():
    # Percentiles of merged bins equal those of the merged times' bins.
    left, right = [5, 700, 70_000], [12, 13, 4_000]
    assert (histogram(left) + histogram(right) == histogram(left + right)).all()


def test_sql_bins_as_python_at_every_threshold(gateway_db):
    g = gateway_db()
    org = g.org("Acme")
    token = g.token(g.user("root", role="admin", org=org), "key")
    edges = sorted({0, 1, *latency.THRESHOLDS[::5], *(t - 1 for t in latency.THRESHOLDS[::5]), latency.LARGEST_MS * 3})
    for ms in edges:
        g.request(token, NOW, ms=ms)
    with g.engine.connect() as conn:
        rows = conn.execute(select(request.c.response_time_ms, latency.bin_expression(request.c.response_time_ms))).all()
    assert sorted(rows) == [(ms, latency.bin_of(ms)) for ms in edges]
