"""Latency histograms with a bounded relative error, mergeable by adding counts.

A response time in whole milliseconds falls in one of a fixed list of bins: bin 0 holds
everything under 1 ms, bin k (k >= 1) the times from `THRESHOLDS[k-1]` up to but not
including `THRESHOLDS[k]`, the last bin everything from `THRESHOLDS[-1]` on. Each
threshold is the previous one times `GAMMA`, rounded up (at least one more), so below
50 ms every millisecond has its own bin and above it a bin spans less than 2%.

A percentile is read as the nearest rank (the ceil(q * n)-th smallest time) and
answered with its bin's `estimate`, which lies within `RELATIVE_ERROR` (under 1%) of
every time in the bin, so of the exact percentile too (up to `THRESHOLDS[-1]`, about
2.8 hours; beyond, the estimate is that bound). Counts per bin add up across groups,
buckets and archive slices, so percentiles of any union are exact to the same bound.

The bin of a time is computed in SQL, the same way on SQLite and PostgreSQL, as a
balanced tree of comparisons with the thresholds (`bin_expression`): no math functions
needed (SQLite may be built without them), about ten comparisons per row.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np
from sqlalchemy import Integer, literal_column

GAMMA = 1.02
#: Times at or above this (ms) share the last bin.
LARGEST_MS = 10_000_000
#: The largest relative distance of a bin's estimate from any time in it.
RELATIVE_ERROR = (GAMMA - 1) / (GAMMA + 1)
#: The percentiles shown.
QUANTILES = (0.5, 0.9, 0.95, 0.99)


def _thresholds() -> tuple[int, ...]:
    bounds = [1]
    while bounds[-1] < LARGEST_MS:
        bounds.append(max(bounds[-1] + 1, math.ceil(bounds[-1] * GAMMA)))
    return tuple(bounds)


THRESHOLDS = _thresholds()
#: Number of bins: under 1 ms, one per pair of thresholds, and the open last one.
BINS = len(THRESHOLDS) + 1


def bin_of(ms: int) -> int:
    """The bin of a time (the plain-Python twin of `bin_expression`)."""
    low, high = 0, len(THRESHOLDS)
    while low < high:
        middle = (low + high) // 2
        if ms < THRESHOLDS[middle]:
            high = middle
        else:
            low = middle + 1
    return low


def _tree_sql(name: str, low: int, high: int) -> str:
    if low == high:
        return str(low)
    middle = (low + high) // 2
    return (f"CASE WHEN {name} < {THRESHOLDS[middle]} THEN {_tree_sql(name, low, middle)} "
            f"ELSE {_tree_sql(name, middle + 1, high)} END")


def bin_expression(column):
    """SQL for the bin of `column` (a column of the request table; NULL stays NULL): the
    number of thresholds at or below it, by about log2(len(THRESHOLDS)) comparisons.

    One piece of SQL text rather than a tree of SQLAlchemy expressions: a statement
    holding a tree of some 1,300 nodes cost tens of milliseconds per execution in
    SQLAlchemy's cache key alone."""
    return literal_column(_bin_sql(column.name), Integer())


@lru_cache(maxsize=4)
def _bin_sql(name: str) -> str:
    return f"(CASE WHEN {name} IS NULL THEN NULL ELSE {_tree_sql(name, 0, len(THRESHOLDS))} END)"


@lru_cache(maxsize=1)
def estimates() -> np.ndarray:
    """Each bin's answer: 0 under 1 ms; for times lo..hi the value closest in relative
    terms to both ends, 2 lo hi / (lo + hi); the last bin's lower bound."""
    values = np.zeros(BINS)
    for index in range(1, BINS - 1):
        low, high = THRESHOLDS[index - 1], THRESHOLDS[index] - 1
        values[index] = 2 * low * high / (low + high)
    values[-1] = THRESHOLDS[-1]
    return values


def percentiles(counts: np.ndarray, quantiles: Sequence[float] = QUANTILES) -> np.ndarray:
    """Percentiles of histograms: `counts` has bins on its last axis (shape (..., BINS));
    the result has one value per quantile on its last axis, NaN where a histogram is
    empty."""
    counts = np.asarray(counts, dtype=np.int64)
    cumulative = np.cumsum(counts, axis=-1)
    total = cumulative[..., -1:]
    result = np.full(counts.shape[:-1] + (len(quantiles),), np.nan)
    for position, quantile in enumerate(quantiles):
        rank = np.maximum(np.ceil(quantile * total - 1e-9), 1)
        index = (cumulative < rank).sum(axis=-1)
        found = estimates()[np.minimum(index, BINS - 1)]
        result[..., position] = np.where(total[..., 0] > 0, found, np.nan)
    return result
