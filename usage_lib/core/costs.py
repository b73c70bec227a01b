"""What the usage cost: each model's token sums times the price in effect (issue 14).

The usage statement takes running totals of requests and tokens at every cut: the
chart's bucket edges and the instants a price changes (`cuts`). Between two cuts every
model has one price, so a group's cost is a sum over those intervals, computed in
`Decimal` (prices are per million tokens: no float drift). A model without a price in
some interval is unpriced there, never free: its requests and tokens are counted apart.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Sequence

import numpy as np

from usage_lib.core.prices import Price, PriceBook

ZERO = Decimal(0)
#: Prices are per million tokens.
_PER_MILLION = -6


@dataclass(frozen=True)
class CostSummary:
    """The cost of some usage, and what it leaves out for want of a price."""

    #: The prices' currency; None when no model has a price.
    currency: str | None
    total: Decimal
    unpriced_requests: int
    unpriced_input_tokens: int
    unpriced_output_tokens: int

    @property
    def complete(self) -> bool:
        """Every request was priced."""
        return self.unpriced_requests == 0 and self.unpriced_input_tokens == 0 and self.unpriced_output_tokens == 0

    def as_dict(self) -> dict[str, object]:
        return {
            "currency": self.currency,
            # A string: exact, as JSON numbers are not.
            "total": format(self.total, "f"),
            "unpriced_requests": self.unpriced_requests,
            "unpriced_input_tokens": self.unpriced_input_tokens,
            "unpriced_output_tokens": self.unpriced_output_tokens,
        }


@dataclass(frozen=True)
class Costing:
    """Costs of one reading: per group (as the usage rows) and per chart bucket."""

    #: Cost of each group's priced usage.
    group_cost: list[Decimal]
    #: Per group: requests, input and output tokens in time its model had no price.
    group_unpriced: np.ndarray
    bucket_cost: list[Decimal]


def cut_points(start: datetime, edges: Sequence[datetime], prices: PriceBook) -> tuple[datetime, ...]:
    """The bucket edges and every price change between the window's start and its last
    edge, ascending, in UTC (aware datetimes of one zone compare by wall clock: the
    two 02:00 edges of an autumn DST night would be one)."""
    return tuple(sorted({moment.astimezone(timezone.utc) for moment in (*edges, *prices.changes(start, edges[-1]))}))


def _cost(input_tokens: int, output_tokens: int, price: Price) -> Decimal:
    return (input_tokens * price.input_per_million + output_tokens * price.output_per_million).scaleb(_PER_MILLION)


def costing(
    models: Sequence[str],
    cumulative: np.ndarray,
    totals: np.ndarray,
    cuts: Sequence[datetime],
    edges: Sequence[datetime],
    start: datetime,
    prices: PriceBook,
) -> Costing:
    """Costs from running totals.

    `cumulative` is (3, groups, cuts): requests, input and output tokens of each group
    (whose model is `models[g]`) stamped before each cut; `totals` (3, groups) the same
    without an upper bound (a preset counts rows stamped after its last edge too: they
    are priced as its last interval). The interval before cut j starts at cut j-1 (the
    first at `start`); each lies in the bucket of the first edge at or after it. The
    rows after the last edge are in no bucket (as their requests and tokens): their
    cost counts in the groups' cost only.
    """
    groups = len(models)
    extended = np.concatenate([cumulative, totals[:, :, None]], axis=2)
    per_interval = np.diff(extended, axis=2, prepend=0)
    lows = [start, *cuts]
    bucket_of = [min(bisect_left(edges, cut), len(edges) - 1) for cut in cuts]
    group_cost = [ZERO] * groups
    unpriced = np.zeros((groups, 3), dtype=np.int64)
    bucket_cost = [ZERO] * len(edges)
    names = np.array(models, dtype=object)
    for model in dict.fromkeys(models):
        rows = np.flatnonzero(names == model)
        in_effect = [prices.price_at(model, low) for low in lows]
        for price in dict.fromkeys(in_effect):
            columns = [index for index, each in enumerate(in_effect) if each == price]
            tokens = per_interval[:, rows][:, :, columns]
            if price is None:
                unpriced[rows] += tokens.sum(axis=2).T
                continue
            for row, (input_tokens, output_tokens) in zip(rows, tokens[1:].sum(axis=2).T.tolist()):
                group_cost[row] += _cost(input_tokens, output_tokens, price)
            for column, (input_tokens, output_tokens) in zip(columns, tokens[1:].sum(axis=1).T.tolist()):
                if column < len(bucket_of):  # not after the last edge
                    bucket_cost[bucket_of[column]] += _cost(input_tokens, output_tokens, price)
    return Costing(group_cost=group_cost, group_unpriced=unpriced, bucket_cost=bucket_cost)


def summary(costs: Sequence[Decimal], unpriced: np.ndarray, prices: PriceBook) -> CostSummary:
    """The cost of some groups (`Costing.group_cost` and `.group_unpriced` rows)."""
    left_out = unpriced.sum(axis=0) if len(unpriced) else np.zeros(3, dtype=np.int64)
    return CostSummary(
        currency=prices.currency,
        total=sum(costs, ZERO),
        unpriced_requests=int(left_out[0]),
        unpriced_input_tokens=int(left_out[1]),
        unpriced_output_tokens=int(left_out[2]),
    )
