"""Every figure of the dashboard for one viewer and selection (SPEC §3), in one refresh.

`compute_usage` is what the dashboard, the command line, the snapshot exporter and a data
scientist's notebook all call. It sends three statements (viewer, catalogue, usage) and
shapes the grouped rows (one per model and token or user_id, with a count per chart
bucket) into small pandas frames; raw request rows never leave the database.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Literal, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

from usage_lib.core import access, costs, queries
from usage_lib.core.access import Catalogue, Scope
from usage_lib.core.costs import CostSummary
from usage_lib.core.prices import EMPTY as NO_PRICES, PriceBook
from usage_lib.gateway.db import Database
from usage_lib.errors import UsageError, quoted
from usage_lib.core.spans import DEFAULT_SPAN, SPANS, Window, previous_window, range_window, window, zone

log = logging.getLogger(__name__)

TOP_CHOICES = (10, 25, 100)
PREVIOUS_PARTIAL_NOTICE = (
    "Part of the previous period is not recorded (the gateway deletes old requests; an archive keeps them): "
    "the changes compare with less than was used then."
)
#: The JSON report's "version" (`Usage.to_json`): 2 added cost, tokens over time and the
#: previous period; 3 the "health" object (`render.files.Report`), purely additive.
JSON_VERSION = 3
#: `Usage.model_timeseries`' column of the models not shown one by one.
OTHER_MODELS = "other"
DEFAULT_TOP = 100
NO_USER_ID_NOTICE = (
    "This gateway's database has no user_id column: no breakdown by user_id and no "
    "matching of requests to your email."
)


@dataclass(frozen=True)
class Selection:
    """What a viewer asks to see. Anything that does not fit falls back (see `normalised`).

    `start` and `end` (both or neither; datetimes or ISO 8601 text, read in `tz` when
    without an offset) ask for the custom range `start <= timestamp < end` instead of
    `span`; a malformed or impossible range is a `UsageError` (`spans.range_window`).
    """

    org: object = None
    span: str = DEFAULT_SPAN
    token: object = None
    top: int = DEFAULT_TOP
    tz: str = "UTC"
    now: datetime | None = None
    start: datetime | str | None = None
    end: datetime | str | None = None

    @property
    def custom(self) -> bool:
        """A custom range is asked for (`start` or `end` given)."""
        return self.start is not None or self.end is not None

    def normalised(self) -> tuple["Selection", tuple[str, ...]]:
        """Unknown spans fall back to 1d and unknown top-k to 100, with a note each."""
        notes = []
        span, top = self.span, self.top
        if span not in SPANS and not self.custom:
            notes.append(f"unknown span {quoted(span)}; showing {DEFAULT_SPAN}")
            span = DEFAULT_SPAN
        try:
            top = int(top)
        except (TypeError, ValueError):
            top = -1
        if top not in TOP_CHOICES:
            notes.append(f"top {quoted(self.top)} is not one of {TOP_CHOICES}; showing {DEFAULT_TOP}")
            top = DEFAULT_TOP
        return dataclasses.replace(self, span=span, top=top), tuple(notes)


@dataclass(frozen=True)
class Settled:
    """What an archive of settled usage answers for one window (`SettledSource.settled`).

    Its sums cover some whole slices of the window, per (model, key) in `keys`: `sums`
    in the columns of `SUMMED`, and `cumulative`, the running totals of
    `queries.CUMULATIVE` at each cut (shape: 3, keys, cuts). `gateway_ranges` are the
    timestamp ranges left for the gateway to read (`queries.usage_query`): the partial
    first slice and the unsettled tail. `notices` say where the archive rounded an edge
    or has a gap.
    """

    keys: tuple[tuple[Any, Any], ...]
    sums: np.ndarray
    cumulative: np.ndarray
    gateway_ranges: tuple[queries.Range, ...]
    notices: tuple[str, ...] = ()
    #: Parts of the window with no record anywhere (`Usage.unrecorded`).
    unrecorded: tuple[tuple[datetime, datetime], ...] = ()

    @classmethod
    def empty(cls, cuts: int, gateway_ranges: tuple[queries.Range, ...], notices: tuple[str, ...] = ()) -> "Settled":
        return cls(keys=(), sums=np.zeros((0, len(SUMMED)), dtype=np.int64),
                   cumulative=np.zeros((len(queries.CUMULATIVE), 0, cuts), dtype=np.int64),
                   gateway_ranges=gateway_ranges, notices=notices)


class SettledSource(Protocol):
    """An archive `compute_usage` can read (`usage_lib.history.archive.Archive`)."""

    def last_seen(self) -> Sequence[Mapping[str, Any]]:
        """Catalogue rows (`queries.catalogue_statement`'s columns) of orgs and tokens as
        last seen, for those deleted from the gateway since."""

    def settled(self, scope: Scope, window: Window, cuts: Sequence[datetime], models: Sequence[str] | None,
                by_user_id: bool) -> Settled:
        """The window's settled part, for what `scope` may see, with running totals at
        `cuts` (ascending; all but the last inside the window)."""


@dataclass(frozen=True)
class Metrics:
    total_requests: int
    failed_requests: int
    avg_response_ms_completion: float
    avg_response_ms_embedding: float
    input_tokens: int
    output_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "total_tokens": self.total_tokens}


#: The figures of the tiles, in the page's order: `Metrics.as_dict` keys and "cost".
TILE_FIGURES = (
    "total_requests", "failed_requests", "avg_response_ms_completion", "avg_response_ms_embedding",
    "input_tokens", "output_tokens", "total_tokens", "cost",
)


@dataclass(frozen=True)
class Previous:
    """The same length of time just before the window (`spans.previous_window`), read
    for the same scope: what each figure's change compares with."""

    window: Window
    metrics: Metrics
    cost: CostSummary

    def figure(self, name: str) -> float:
        return float(self.cost.total) if name == "cost" else float(self.metrics.as_dict()[name])


@dataclass(frozen=True)
class Usage:
    """The figures of one refresh.

    - `timeseries`: bucket (aware, dashboard zone), requests, input_tokens,
      output_tokens and cost (`Decimal`), one row per bucket.
    - `models`: model, requests, input_tokens, output_tokens, cost, unpriced_requests,
      in display order.
    - `top`: rank, id, name, requests, input_tokens, output_tokens, total_tokens, cost,
      and with a previous period previous_requests, change (relative; NaN when there
      were none) and new; for tokens also display_name, owner_email, service_account,
      is_service_account, can_open. `stopped`: the same columns for the rows that had
      requests in the previous period and have none now (ranked by then).
    - `cost`: the window's cost and what it leaves out (`costs.CostSummary`);
      `previous`: the period before, for changes (`change`).

    The finer frames every figure above is summed from (for analyses of your own):

    - `groups`: one row per (model, key) with requests, failed, input_tokens,
      output_tokens, the response-time sums and counts of completions and embeddings
      (averages: ``completion_ms_sum / completion_n``), and cost;
    - `breakdown`: requests per (model, key, bucket), buckets without requests left out;
      `model_timeseries(n)`: requests per bucket of the top n models and the rest.

    The key is the token id, or the `user_id` when a token is selected below an org
    (`key_kind`). Both hold only what the viewer may see.
    """

    scope: Scope
    window: Window
    tz: str
    top_k: int
    metrics: Metrics
    cost: CostSummary
    timeseries: pd.DataFrame
    models: pd.DataFrame
    top_kind: Literal["org", "token", "user_id"]
    top: pd.DataFrame
    groups: pd.DataFrame
    key_kind: Literal["token", "user_id"]
    #: Requests stamped before each bucket's end, one row per row of `groups`.
    bucket_counts: np.ndarray = field(repr=False, compare=False)
    notices: tuple[str, ...] = field(default=())
    fallbacks: tuple[str, ...] = field(default=())
    #: Parts of the window of which neither the gateway nor the archive has a record
    #: (an archive gap, or before its history began): their buckets show 0 for want of
    #: data, not for want of use.
    unrecorded: tuple[tuple[datetime, datetime], ...] = field(default=())
    previous: Previous | None = None
    stopped: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @cached_property
    def breakdown(self) -> pd.DataFrame:
        return _breakdown(self.groups, self.bucket_counts, self.window)

    def figure(self, name: str) -> float:
        """A tile's figure (`TILE_FIGURES`) as a number."""
        return float(self.cost.total) if name == "cost" else float(self.metrics.as_dict()[name])

    def change(self, name: str) -> float | None:
        """A tile's relative change against the previous period (0.12: 12% more); None
        without a previous period or when the figure was 0 then."""
        if self.previous is None:
            return None
        before = self.previous.figure(name)
        return None if before == 0 else self.figure(name) / before - 1.0

    def model_timeseries(self, top: int = 5) -> pd.DataFrame:
        """Requests per bucket (rows, indexed by bucket start) of the `top` models with
        the most requests (columns, most first) and of all others together ("other",
        only when there are others)."""
        counts = _per_bucket(self.bucket_counts)
        names = self.groups["model"].to_numpy(dtype=object)
        used = self.models.loc[self.models["requests"] > 0, "model"].tolist()
        shown = used[:top]
        columns = {name: counts[names == name].sum(axis=0) for name in shown}
        if len(used) > top:
            columns[OTHER_MODELS] = counts[~np.isin(names, shown)].sum(axis=0)
        return pd.DataFrame({name: values.astype("int64") for name, values in columns.items()},
                            index=pd.Index(list(self.window.starts), name="bucket"))

    def to_json(self) -> dict[str, Any]:
        """The documented report contract (README, "JSON report")."""
        scope = self.scope
        previous = self.previous
        return {
            "version": JSON_VERSION,
            "scope": {
                "viewer": scope.viewer.label,
                "role": scope.viewer.role,
                "org": "all" if scope.org is None else {"id": scope.org.id, "name": scope.org.name},
                "span": self.window.span,  # "custom" for a custom range
                "token": None if scope.token is None else {"id": scope.token.id, "name": scope.token.name},
                "now": self.window.now.isoformat(),
                "window_start": self.window.start.isoformat(),
                # A custom range's (excluded) end; null for a preset: no upper bound.
                "window_end": None if self.window.until is None else self.window.until.isoformat(),
                "tz": self.tz,
            },
            "metrics": self.metrics.as_dict(),
            "cost": self.cost.as_dict(),
            "previous": None if previous is None else {
                "window_start": previous.window.start.isoformat(),
                "window_end": previous.window.until.isoformat(),
                "metrics": previous.metrics.as_dict(),
                "cost": previous.cost.as_dict(),
            },
            "changes": {name: _rounded(self.change(name)) for name in TILE_FIGURES} if previous is not None else None,
            "timeseries": [
                {"bucket": row["bucket"].isoformat(), "requests": int(row["requests"]),
                 "input_tokens": int(row["input_tokens"]), "output_tokens": int(row["output_tokens"]),
                 "cost": format(row["cost"], "f")}
                for row in self.timeseries.to_dict("records")
            ],
            "models": [
                {"model": row["model"], "requests": int(row["requests"]), "input_tokens": int(row["input_tokens"]),
                 "output_tokens": int(row["output_tokens"]), "cost": format(row["cost"], "f"),
                 "unpriced_requests": int(row["unpriced_requests"])}
                for row in self.models.to_dict("records")
            ],
            "top": {
                "kind": self.top_kind,
                "rows": [_json_row(row, self.top_kind) for row in self.top.to_dict("records")],
                "stopped": [] if self.stopped is None else [
                    _json_row(row, self.top_kind) for row in self.stopped.to_dict("records")],
            },
            "notices": list(self.notices),
        }


def _rounded(change: float | None) -> float | None:
    """A relative change to 6 decimals (0.2, not 0.19999999999999996)."""
    return None if change is None else round(change, 6)


def _none_if_missing(value: Any) -> Any:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def _json_row(row: dict, kind: str) -> dict[str, Any]:
    out = {
        "rank": int(row["rank"]),
        "id": None if kind == "org" and pd.isna(row["id"]) else (int(row["id"]) if kind != "user_id" else row["id"]),
        "name": _none_if_missing(row["name"]),
        "requests": int(row["requests"]),
        "input_tokens": int(row["input_tokens"]),
        "output_tokens": int(row["output_tokens"]),
        "total_tokens": int(row["total_tokens"]),
        "cost": format(row["cost"], "f"),
    }
    if "previous_requests" in row:
        change = row["change"]
        out["previous_requests"] = int(row["previous_requests"])
        out["change"] = None if pd.isna(change) else _rounded(float(change))
        out["new"] = bool(row["new"])
    if kind == "token":
        out["owner_email"] = _none_if_missing(row["owner_email"])
        out["service_account"] = _none_if_missing(row["service_account"])
        out["can_open"] = bool(row["can_open"])
    return out


def _as_of(now: datetime | None, tz: str) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        return now.replace(tzinfo=zone(tz))
    return now


GROUPED_COLUMNS = [
    "model", "key", "requests", "failed", "input_tokens", "output_tokens",
    "completion_ms_sum", "completion_n", "embedding_ms_sum", "embedding_n",
]
SUMMED = GROUPED_COLUMNS[2:]


def _as_int(value: Any) -> int:
    # PostgreSQL sums come back as Decimal or NULL (no rows); keep exact integers.
    return 0 if value is None else int(value)


def _grouped_frame(rows: Sequence, cuts: int, width: int) -> tuple[pd.DataFrame, np.ndarray]:
    """One period's rows of the usage statement (without the period column) as a frame
    of sums per (model, key), and their running totals of `queries.CUMULATIVE` at the
    period's `cuts` (shape: 3, groups, cuts); the statement pads them to `width` cuts.

    Plain Python and numpy: a few thousand rows at most, and pandas' per-column type
    inference cost more than the SQL on small windows.
    """
    rows = list(rows)
    columns = list(zip(*rows)) if rows else [()] * (len(GROUPED_COLUMNS) + len(queries.CUMULATIVE) * width)
    data: dict[str, Any] = {"model": list(columns[0]), "key": list(columns[1])}
    for position, name in enumerate(SUMMED, start=2):
        data[name] = np.fromiter((_as_int(v) for v in columns[position]), dtype=np.int64, count=len(rows))
    first = len(GROUPED_COLUMNS)
    cumulative = np.array(
        [[[_as_int(v) for v in columns[first + measure * width + cut]] for cut in range(cuts)]
         for measure in range(len(queries.CUMULATIVE))],
        dtype=np.int64,
    ).reshape(len(queries.CUMULATIVE), cuts, len(rows)).transpose(0, 2, 1)
    return pd.DataFrame(data), cumulative


def _metrics(grouped: pd.DataFrame) -> Metrics:
    sums = grouped[SUMMED].sum()

    def mean(total: str, count: str) -> float:
        return float(sums[total]) / float(sums[count]) if sums[count] else 0.0

    return Metrics(
        total_requests=int(sums["requests"]),
        failed_requests=int(sums["failed"]),
        avg_response_ms_completion=mean("completion_ms_sum", "completion_n"),
        avg_response_ms_embedding=mean("embedding_ms_sum", "embedding_n"),
        input_tokens=int(sums["input_tokens"]),
        output_tokens=int(sums["output_tokens"]),
    )


def _timeseries(at_edges: np.ndarray, bucket_cost: Sequence[Decimal], win: Window) -> pd.DataFrame:
    """Per bucket: requests and tokens (from the running totals at the bucket edges,
    shape 3, groups, buckets) and cost."""
    per_bucket = _per_bucket(at_edges.sum(axis=1))
    return pd.DataFrame({
        "bucket": list(win.starts),
        **{name: pd.Series(per_bucket[position], dtype="int64") for position, name in enumerate(queries.CUMULATIVE)},
        "cost": pd.Series(list(bucket_cost), dtype=object),
    })


def _per_bucket(before: np.ndarray) -> np.ndarray:
    """Counts before each bucket's end (last axis) -> counts in each bucket."""
    return np.diff(before, axis=-1, prepend=0)


def _breakdown(grouped: pd.DataFrame, before: np.ndarray, win: Window) -> pd.DataFrame:
    """Requests per (model, key, bucket), buckets without requests left out."""
    counts = _per_bucket(before)
    group, bucket = np.nonzero(counts)
    return pd.DataFrame({
        "model": grouped["model"].to_numpy(dtype=object)[group],
        "key": grouped["key"].to_numpy(dtype=object)[group],
        "bucket": pd.Series([win.starts[i] for i in bucket], dtype=object if not len(bucket) else None),
        "requests": counts[group, bucket].astype("int64"),
    })


def _models(grouped: pd.DataFrame, unpriced: np.ndarray, known: Sequence[str]) -> pd.DataFrame:
    """Per model: requests, tokens, cost and unpriced requests. Most requests first
    (ties in configuration order), then unused models at 0."""
    sums: dict[str, list] = {}
    columns = zip(grouped["model"].tolist(), grouped["requests"].tolist(), grouped["input_tokens"].tolist(),
                  grouped["output_tokens"].tolist(), grouped["cost"].tolist(), unpriced[:, 0].tolist())
    for name, *values in columns:
        entry = sums.setdefault(name, [0, 0, 0, costs.ZERO, 0])
        for position, value in enumerate(values):
            entry[position] += value
    order = {name: position for position, name in enumerate(known)}
    used = sorted(
        (name for name, entry in sums.items() if entry[0] > 0),
        key=lambda name: (-sums[name][0], order.get(name, len(order)), name),
    )
    names = used + [name for name in known if name not in set(used)]
    rows = [sums.get(name, [0, 0, 0, costs.ZERO, 0]) if name in used else [0, 0, 0, costs.ZERO, 0] for name in names]
    return pd.DataFrame({
        "model": names,
        **{column: pd.Series([row[position] for row in rows], dtype="int64")
           for position, column in ((0, "requests"), (1, "input_tokens"), (2, "output_tokens"), (4, "unpriced_requests"))},
        "cost": pd.Series([row[3] for row in rows], dtype=object),
    })[["model", "requests", "input_tokens", "output_tokens", "cost", "unpriced_requests"]]


TOP_COLUMNS = ["rank", "id", "name", "requests", "input_tokens", "output_tokens", "total_tokens", "cost"]
TOKEN_COLUMNS = ["display_name", "owner_email", "service_account", "is_service_account", "can_open"]
COMPARISON_COLUMNS = ["previous_requests", "change", "new"]


def _sum_by_key(grouped: pd.DataFrame, keys: Sequence) -> dict:
    """key -> [requests, input_tokens, output_tokens, cost], in order of first appearance."""
    sums: dict = {}
    columns = zip(keys, grouped["requests"].tolist(), grouped["input_tokens"].tolist(),
                  grouped["output_tokens"].tolist(), grouped["cost"].tolist())
    for key, *values in columns:
        entry = sums.get(key)
        if entry is None:
            sums[key] = values
        else:
            for position, value in enumerate(values):
                entry[position] += value
    return sums


def _rank(sums: dict, sort_key, top_k: int) -> list:
    """Keys with requests, most requests first, ties by `sort_key(key)`; at most top_k."""
    used = [key for key, entry in sums.items() if entry[0] > 0]
    used.sort(key=lambda key: (-sums[key][0], *sort_key(key)))
    return used[:top_k]


def _table(keys: list, sums: dict, ids: list, names: list, id_dtype, name_dtype=object, extra=None) -> pd.DataFrame:
    data = {
        "rank": pd.Series(range(1, len(keys) + 1), dtype="int64"),
        "id": pd.Series(ids, dtype=id_dtype),
        "name": pd.Series(names, dtype=name_dtype),
        "requests": pd.Series([sums[key][0] for key in keys], dtype="int64"),
        "input_tokens": pd.Series([sums[key][1] for key in keys], dtype="int64"),
        "output_tokens": pd.Series([sums[key][2] for key in keys], dtype="int64"),
        "total_tokens": pd.Series([sums[key][1] + sums[key][2] for key in keys], dtype="int64"),
        "cost": pd.Series([sums[key][3] for key in keys], dtype=object),
    }
    data.update(extra or {})
    return pd.DataFrame(data)


def _top_keys(kind: str, grouped: pd.DataFrame, catalogue: Catalogue) -> list:
    """The top table's row of each group: its token's owner's org, its token or its user_id."""
    keys = grouped["key"].tolist()
    if kind == "org":
        owner_org = {token.id: token.owner_org_id for token in catalogue.tokens.values()}
        return [owner_org.get(key) for key in keys]
    if kind == "token":
        return [int(key) for key in keys]
    return [str(key) for key in keys]


def _top(kind: str, sums: dict, scope: Scope, catalogue: Catalogue, top_k: int) -> tuple[pd.DataFrame, list]:
    """The top table of `sums` (`_sum_by_key` over `_top_keys`), and its rows' keys."""
    if kind == "org":
        names = {org.id: org.name for org in catalogue.orgs}

        def order(org_id):  # name (case-folded), then id; the row without an org last
            name = names.get(org_id)
            return (name is None, name.casefold() if name is not None else "", org_id is None, org_id or 0)

        keys = _rank(sums, order, top_k)
        return _table(keys, sums, keys, [names.get(key, np.nan) for key in keys], "Int64"), keys
    if kind == "token":
        tokens = catalogue.tokens

        def order(key):  # shown name (case-folded), then id
            name = tokens[key].display_name
            return (name is None, name.casefold() if name is not None else "", key)

        keys = _rank(sums, order, top_k)
        chosen = [tokens[key] for key in keys]
        extra = {
            "display_name": pd.Series([token.display_name for token in chosen], dtype=object),
            "owner_email": pd.Series([token.owner_email for token in chosen], dtype=object),
            "service_account": pd.Series([token.service_account for token in chosen], dtype=object),
            "is_service_account": pd.Series([token.service_account_id is not None for token in chosen], dtype=bool),
            "can_open": pd.Series([access.can_open(scope.viewer, token, scope.org) for token in chosen], dtype=bool),
        }
        return _table(keys, sums, keys, [token.name for token in chosen], "int64", extra=extra), keys
    keys = _rank(sums, lambda key: (key,), top_k)
    # pandas' default string dtype, as `astype(str)` gives.
    return _table(keys, sums, keys, list(keys), "str", "str"), keys


def _compared(table: pd.DataFrame, keys: list, now: dict, before: dict) -> pd.DataFrame:
    """`table` with each row's requests in the previous period, their relative change
    (NaN when there were none) and whether the row is new."""
    previous = [before[key][0] if key in before else 0 for key in keys]
    current = [now[key][0] if key in now else 0 for key in keys]
    return table.assign(
        previous_requests=pd.Series(previous, dtype="int64"),
        change=pd.Series([c / p - 1.0 if p else np.nan for c, p in zip(current, previous)], dtype="float64"),
        new=pd.Series([p == 0 for p in previous], dtype=bool),
    )


def _stopped(kind: str, now: dict, before: dict, scope: Scope, catalogue: Catalogue, top_k: int) -> pd.DataFrame:
    """Rows with requests in the previous period and none now, ranked by then, with
    their figures now (0)."""
    gone = {key: entry for key, entry in before.items() if entry[0] > 0 and (key not in now or now[key][0] == 0)}
    table, keys = _top(kind, gone, scope, catalogue, top_k)
    table = table.assign(requests=0, input_tokens=0, output_tokens=0, total_tokens=0,
                         cost=pd.Series([costs.ZERO] * len(table), dtype=object))
    return _compared(table, keys, {}, gone)


def find_viewer(db: Database, viewer: str) -> access.Viewer:
    """The gateway user `viewer` names (email or username), or `UsageError` (one line)
    when none may look: unknown, inactive, ambiguous, no profile or no role."""
    with db.connect() as conn:
        return access.resolve_viewer(conn.execute(queries.viewer_statement(viewer.strip())).mappings(), viewer)


def with_last_seen(live: Sequence[Mapping[str, Any]], seen: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The live catalogue rows, plus the last-seen orgs and tokens gone from it since: a
    deleted token keeps the owner and org it last had (live rows always win)."""
    present = {(row["kind"], row["id"]) for row in live}
    return [*live, *(row for row in seen if (row["kind"], row["id"]) not in present)]


def _with_settled(grouped: pd.DataFrame, cumulative: np.ndarray, settled: Settled) -> tuple[pd.DataFrame, np.ndarray]:
    """The gateway's groups plus the archive's, summed per (model, key)."""
    if not settled.keys:
        return grouped, cumulative
    index = {key: position for position, key in enumerate(zip(grouped["model"].tolist(), grouped["key"].tolist()))}
    new = [key for key in settled.keys if key not in index]
    for key in new:
        index[key] = len(index)
    rows = np.fromiter((index[key] for key in settled.keys), dtype=np.int64, count=len(settled.keys))
    sums = np.vstack([grouped[SUMMED].to_numpy(dtype=np.int64), np.zeros((len(new), len(SUMMED)), dtype=np.int64)])
    totals = np.concatenate([cumulative, np.zeros((cumulative.shape[0], len(new), cumulative.shape[2]), dtype=np.int64)],
                            axis=1)
    sums[rows] += settled.sums
    totals[:, rows] += settled.cumulative
    keys = list(index)
    frame = pd.DataFrame({"model": [key[0] for key in keys], "key": [key[1] for key in keys],
                          **{name: sums[:, position] for position, name in enumerate(SUMMED)}})
    return frame, totals


def _oldest(catalogue_rows: Sequence[Mapping[str, Any]]) -> datetime | None:
    """The gateway's oldest request (`queries.catalogue_statement`'s 'oldest' row)."""
    text = next((row["name"] for row in catalogue_rows if row["kind"] == "oldest"), None)
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)  # SQLite: naive UTC


def _previous_held(earlier: "_Reading", before: Window, oldest: datetime | None, archived: bool) -> tuple[str, ...]:
    """A notice when part of the previous period has no record: its changes would
    compare with less than was used then (the gateway deletes old requests)."""
    if archived:
        missing = bool(earlier.unrecorded)
    else:
        missing = oldest is not None and oldest > before.start
    return (PREVIOUS_PARTIAL_NOTICE,) if missing else ()


@dataclass(frozen=True)
class _Reading:
    """One window read for one scope: sums per (model, key) with their cost, running
    totals at the cuts, and what the archive said."""

    grouped: pd.DataFrame
    cumulative: np.ndarray
    costing: costs.Costing
    notices: tuple[str, ...]
    unrecorded: tuple[tuple[datetime, datetime], ...]


def _read(conn, db: Database, scope: Scope, windows: Sequence[Window], models: Sequence[str] | None,
          prices: PriceBook, archive: SettledSource | None, by_user_id: bool) -> list[_Reading]:
    """Read each of `windows` for `scope` in one statement to the gateway (with an
    archive, only the parts it does not hold), and the costs at the windows' prices."""
    plans = []
    for win in windows:
        cuts = costs.cut_points(win.start, win.edges, prices)
        settled = archive.settled(scope, win, cuts, models, by_user_id) if archive is not None else None
        plans.append((win, cuts, settled))
    periods = [(settled.gateway_ranges if settled is not None else queries.window_ranges(win), cuts)
               for win, cuts, settled in plans]
    statement, params = queries.usage_query(db, scope, models, periods)
    rows = conn.execute(statement, params).all()
    width = max(len(cuts) for _win, cuts, _settled in plans)
    readings = []
    for index, (win, cuts, settled) in enumerate(plans):
        grouped, cumulative = _grouped_frame([row[1:] for row in rows if row[0] == index], len(cuts), width)
        if settled is not None:
            grouped, cumulative = _with_settled(grouped, cumulative, settled)
        totals = grouped[list(queries.CUMULATIVE)].to_numpy(dtype=np.int64).T
        costing = costs.costing(grouped["model"].tolist(), cumulative, totals, cuts, win.edges, win.start, prices)
        grouped = grouped.assign(cost=pd.Series(costing.group_cost, dtype=object))
        # Keep the running totals at the bucket edges only.
        at_edges = [cuts.index(edge.astimezone(timezone.utc)) for edge in win.edges]
        readings.append(_Reading(grouped=grouped, cumulative=cumulative[:, :, at_edges], costing=costing,
                                 notices=settled.notices if settled is not None else (),
                                 unrecorded=settled.unrecorded if settled is not None else ()))
    return readings


@dataclass(frozen=True)
class Context:
    """Who is looking at what (`open_context`): the normalised selection and what it
    fell back from, the window, the catalogue and the viewer's scope."""

    selection: Selection
    selection_notes: tuple[str, ...]
    window: Window
    catalogue_rows: list[Mapping[str, Any]]
    catalogue: Catalogue
    scope: Scope
    notices: tuple[str, ...]

    def log_fallbacks(self) -> None:
        """Put on record every choice the viewer may not make (or garbage): it was shown
        narrower."""
        person = self.scope.viewer
        for note in self.selection_notes + self.scope.fallbacks:
            log.warning("viewer %s (%s): %s", person.label, person.role, note)


def open_context(conn, db: Database, viewer: str, selection: Selection | None, models: Sequence[str] | None,
                 archive: SettledSource | None = None) -> Context:
    """The first two statements of a refresh (viewer, catalogue) and what follows from
    them: the window and the viewer's scope, with every fallback noted."""
    selection, selection_notes = (selection or Selection()).normalised()
    tz = zone(selection.tz)
    now = _as_of(selection.now, selection.tz)
    if selection.custom:
        win = range_window(selection.start, selection.end, now, tz)
    else:
        win = window(selection.span, now, tz)
    person = access.resolve_viewer(conn.execute(queries.viewer_statement(viewer.strip())).mappings(), viewer)
    catalogue_rows = list(conn.execute(queries.catalogue_statement(models is None)).mappings())
    if archive is not None:
        catalogue_rows = with_last_seen(catalogue_rows, archive.last_seen())
    catalogue = access.build_catalogue(catalogue_rows)
    scope = access.resolve_scope(person, catalogue, org=selection.org, token=selection.token)
    notices: tuple[str, ...] = ()
    if not db.has_user_id:
        scope = dataclasses.replace(scope, reach=dataclasses.replace(scope.reach, email=None))
        notices = (NO_USER_ID_NOTICE,)
    return Context(selection=selection, selection_notes=selection_notes, window=win, catalogue_rows=catalogue_rows,
                   catalogue=catalogue, scope=scope, notices=notices)


def compute_usage(
    db: Database,
    viewer: str,
    selection: Selection | None = None,
    models: Sequence[str] | None = None,
    archive: SettledSource | None = None,
    prices: PriceBook | None = None,
    compare: bool = True,
) -> Usage:
    """All figures for `viewer` (email or username) and `selection`.

    `models` are the router configuration's model names (`load_router_config`); None
    means no configuration: every request counts and the known models are those in the
    request table. With an `archive` (`usage_lib.history.archive.open_archive`), settled
    slices come from it and only the rest of the window from the gateway; the figures
    are the same while the gateway still holds the window. `prices`
    (`prices.load_price_book`) price the tokens; without, every request is unpriced.
    With `compare`, the same length of time before the window is read too (a second
    part of the usage statement) for each figure's change. Raises `UsageError` for an unknown viewer,
    zone or span.
    """
    prices = prices if prices is not None else NO_PRICES
    with db.connect() as conn:
        context = open_context(conn, db, viewer, selection, models, archive)
        selection, selection_notes, win, scope = context.selection, context.selection_notes, context.window, context.scope
        catalogue, catalogue_rows = context.catalogue, context.catalogue_rows
        notices = list(context.notices)
        by_user_id = scope.top_kind == "user_id" and db.has_user_id
        before = previous_window(win)
        reading, *compared = _read(conn, db, scope, (win, before) if compare else (win,), models, prices, archive,
                                   by_user_id)
        notices.extend(reading.notices)
        earlier = compared[0] if compared else None
        if earlier is not None:
            notices.extend(_previous_held(earlier, before, _oldest(catalogue_rows), archive is not None))
    context.log_fallbacks()
    notices.extend(prices.notices)
    known = tuple(models) if models is not None else tuple(
        sorted(row["name"] for row in catalogue_rows if row["kind"] == "model")
    )
    grouped = reading.grouped
    kind = scope.top_kind
    counted = grouped if kind != "user_id" or db.has_user_id else grouped.iloc[0:0]
    now_sums = _sum_by_key(counted, _top_keys(kind, counted, catalogue))
    top, top_keys = _top(kind, now_sums, scope, catalogue, selection.top)
    previous = stopped = None
    if earlier is not None:
        then = earlier.grouped if kind != "user_id" or db.has_user_id else earlier.grouped.iloc[0:0]
        then_sums = _sum_by_key(then, _top_keys(kind, then, catalogue))
        top = _compared(top, top_keys, now_sums, then_sums)
        stopped = _stopped(kind, now_sums, then_sums, scope, catalogue, selection.top)
        previous = Previous(window=before, metrics=_metrics(earlier.grouped),
                            cost=costs.summary(earlier.costing.group_cost, earlier.costing.group_unpriced, prices))
    return Usage(
        scope=scope,
        window=win,
        tz=selection.tz,
        top_k=selection.top,
        metrics=_metrics(grouped),
        cost=costs.summary(reading.costing.group_cost, reading.costing.group_unpriced, prices),
        timeseries=_timeseries(reading.cumulative, reading.costing.bucket_cost, win),
        models=_models(grouped, reading.costing.group_unpriced, known),
        top_kind=kind,
        top=top,
        groups=grouped,
        key_kind="user_id" if kind == "user_id" and db.has_user_id else "token",
        bucket_counts=reading.cumulative[0],
        notices=tuple(notices),
        unrecorded=reading.unrecorded,
        fallbacks=selection_notes + scope.fallbacks,
        previous=previous,
        stopped=stopped,
    )


def describe_error(exc: BaseException) -> str:
    """The one line to show for an error: ours verbatim, others summarised."""
    if isinstance(exc, UsageError):
        return str(exc)
    return f"unexpected error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
