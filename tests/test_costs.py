"""Costing from running totals (usage_lib.core.costs), on hand-made totals.

One model "m", one group; the totals are what the usage statement would return: requests,
input and output tokens stamped before each cut.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np

from usage_lib.core.costs import cut_points, costing
from usage_lib.core.prices import Price, PriceBook

VIENNA = ZoneInfo("Europe/Vienna")
CHANGE = datetime(2026, 11, 20, tzinfo=timezone.utc)  # 01:00 in Vienna: inside its Nov 20 day


def price(valid_from, per_million_in: str, per_million_out: str) -> Price:
    return Price(model="m", input_per_million=Decimal(per_million_in), output_per_million=Decimal(per_million_out),
                 currency="USD", valid_from=valid_from, source="test")


BOOK = PriceBook(prices=(price(None, "1", "2"), price(CHANGE, "10", "20")))


def test_a_price_change_inside_a_bucket_becomes_a_cut_and_both_prices_apply_to_their_parts():
    start = datetime(2026, 11, 19, 0, 0, tzinfo=VIENNA)
    edges = [datetime(2026, 11, 20, tzinfo=VIENNA), datetime(2026, 11, 21, tzinfo=VIENNA)]
    cuts = cut_points(start, edges, BOOK)
    assert cuts == (edges[0], CHANGE, edges[1])
    # Before the change (23:30 UTC Nov 19, in Vienna's Nov 20): 1,000,000 in, 500,000 out;
    # after it (00:30 UTC): 100,000 in, 0 out. Nothing on Nov 19.
    cumulative = np.array([[[0, 1, 2]], [[0, 1_000_000, 1_100_000]], [[0, 500_000, 500_000]]], dtype=np.int64)
    totals = cumulative[:, :, -1]
    result = costing(["m"], cumulative, totals, cuts, edges, start, BOOK)
    # Nov 20: 1,000,000 x 1/M + 500,000 x 2/M = 2; then 100,000 x 10/M = 1.
    assert result.bucket_cost == [Decimal(0), Decimal(3)]
    assert result.group_cost == [Decimal(3)]
    assert result.group_unpriced.tolist() == [[0, 0, 0]]


def test_a_model_without_a_price_before_its_first_entry_is_unpriced_then():
    book = PriceBook(prices=(price(CHANGE, "10", "20"),))
    start = CHANGE - timedelta(hours=2)
    edges = [CHANGE - timedelta(hours=1), CHANGE, CHANGE + timedelta(hours=1)]
    cuts = cut_points(start, edges, book)
    # one request of 7 in / 3 out in each hour
    cumulative = np.array([[[1, 2, 3]], [[7, 14, 21]], [[3, 6, 9]]], dtype=np.int64)
    result = costing(["m"], cumulative, cumulative[:, :, -1], cuts, edges, start, book)
    assert result.group_unpriced.tolist() == [[2, 14, 6]]
    # 7 x 10/M + 3 x 20/M = 0.00013
    assert result.bucket_cost == [Decimal(0), Decimal(0), Decimal("0.00013")]
    assert result.group_cost == [Decimal("0.00013")]


def test_rows_stamped_after_the_last_edge_count_in_the_cost_but_in_no_bucket():
    start = datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
    edges = [start + timedelta(hours=1)]
    cumulative = np.array([[[1]], [[1_000_000]], [[0]]], dtype=np.int64)
    totals = np.array([[2], [2_000_000], [0]], dtype=np.int64)  # one more, a clock ahead
    result = costing(["m"], cumulative, totals, cut_points(start, edges, BOOK), edges, start, BOOK)
    assert result.group_cost == [Decimal(20)]  # 2,000,000 x 10/M, at the last interval's price
    assert result.bucket_cost == [Decimal(10)]  # as the bucket's requests, without the row ahead
