"""The gateway's health for one viewer and selection (issue 15): latency percentiles,
failures by kind, requests in flight or without reported tokens, gateway overhead and
rate-limit headroom, within the viewer's reach (SPEC §2), as `compute_health`.

One statement over the window (`health_query`) counts requests per model, chart bucket,
path kind, status code, latency bin (`latency`) and whether both token counts are 0;
every figure here is a sum over those counts. None of the gateway's own figures
(`usage.compute_usage`) comes from here or changes.

Choices where the issue leaves room:
- a request "without reported tokens" is a completion (SPEC's path rule) that finished
  without failing (status below 400) with 0 input and 0 output tokens: a failed request
  legitimately has none;
- failures: 4xx are the 400-499 codes but 429 (rate limited, on its own), 5xx are 500
  and above; a NULL status is in flight, not a failure;
- the failure rate is failed / all requests (in flight included, as the Failed tile).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    DateTime,
    Select,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    null,
    select,
    union_all,
)

from usage_lib.core import headroom as limits, latency, queries
from usage_lib.core.queries import COMPLETION_PATH, EMBEDDING_PATH, Shape, bucket_index, no_affinity
from usage_lib.core.access import Catalogue, Scope
from usage_lib.core.spans import Window
from usage_lib.core.usage import Context, Selection, SettledSource, open_context
from usage_lib.gateway.db import Database
from usage_lib.gateway.schema import management_request as request

#: Path kinds with a latency, in SPEC's order.
PATH_KINDS = ("completion", "embedding")
#: Failure kinds, in the charts' stacking order.
FAILURE_KINDS = ("4xx", "429", "5xx")
HEALTH_JSON_VERSION = 1
HEADROOM_GATEWAY_ONLY_NOTICE = (
    "Rate-limit headroom covers only the requests the gateway still holds: the archive keeps no "
    "per-minute peaks."
)
NO_PROCESSING_TIME_NOTICE = (
    "This gateway's database has no processing_time_ms column (gateways before it log "
    "no time spent in the gateway itself): no gateway overhead shown."
)


def failure_kind(status: int | None) -> str:
    """'in flight' (no status yet), 'ok' (below 400), '429', '4xx' or '5xx'."""
    if status is None:
        return "in flight"
    if status < 400:
        return "ok"
    if status == 429:
        return "429"
    return "4xx" if status < 500 else "5xx"


@dataclass(frozen=True)
class SettledHealth:
    """What an archive answers for one window's health (`HealthSource.settled_health`):
    `rows` of the settled slices in the health statement's form (`COLUMNS`, summed as
    the gateway sums its own: the two are simply concatenated), the timestamp ranges
    left to the gateway, and what is said about it (as `usage.Settled`)."""

    rows: tuple[tuple, ...]
    gateway_ranges: tuple[queries.Range, ...]
    notices: tuple[str, ...] = ()
    #: Parts of the window without a health record (`Health.unrecorded`).
    unrecorded: tuple[tuple[datetime, datetime], ...] = ()
    #: Part of the window is older than the gateway's oldest request: only the archive
    #: holds it (so the headroom, read from the gateway alone, leaves it out).
    beyond_gateway: bool = False


class HealthSource(SettledSource, Protocol):
    """An archive `compute_health` can read (`usage_lib.history.archive.Archive`)."""

    def settled_health(self, scope: Scope, window: Window, models: Sequence[str] | None,
                       processing: bool) -> SettledHealth:
        """The window's settled health for what `scope` may see (bucketed by the
        window's edges); `processing`: with the gateway-overhead part."""


def health_query(db: Database, context: Context, models: Sequence[str] | None,
                 ranges: Sequence[queries.Range] | None = None) -> tuple[Select, dict[str, object]]:
    """The health statement and its parameters, over the same rows as the usage
    statement (window, models, reach, token): `queries.statement_inputs`. It reads the
    timestamp `ranges`, by default the whole window; with an archive, the parts the
    archive does not hold (`SettledHealth.gateway_ranges`)."""
    win = context.window
    ranges = ranges if ranges is not None else queries.window_ranges(win)
    shape, params = queries.statement_inputs(db, context.scope, models, ranges, win.edges)
    return _health_template(shape, db.has_processing_time), params


#: Status codes are kept as code + 1 (0: none yet); codes outside 0-998 as 999.
STATUS_SLOTS = 1000
#: Latency bins are kept as bin + 1 (0: no response time).
BIN_SLOTS = latency.BINS + 1


def status_part(status):
    """A status code as the statement keeps it (`STATUS_SLOTS`)."""
    return case((status.is_(None), 0), (and_(status >= 0, status < STATUS_SLOTS - 1), status + 1),
                else_=STATUS_SLOTS - 1)


def _bin_part(milliseconds):
    return case((milliseconds.is_(None), 0), else_=latency.bin_expression(milliseconds) + 1)


def model_position(model, names: Sequence) -> Any:
    """The model's position among the configured `names` (bound parameters or literals)."""
    return case(*((model == name, index) for index, name in enumerate(names)), else_=0)


def zero_tokens(requests):
    """1 when both token counts of a row of `requests` are 0, else 0."""
    return case((and_(requests.c.input_tokens == 0, requests.c.output_tokens == 0), 1), else_=0)


#: The statement's parts: each a sum over the window's groups by fewer keys.
LATENCY_BY_MODEL, LATENCY_BY_BUCKET = "latency_model", "latency_bucket"
STATUS_BY_MODEL, STATUS_BY_BUCKET = "status_model", "status_bucket"
PROCESSING = "processing"
#: The statement's columns (NULL where a part does not group by one).
COLUMNS = ("part", "model", "position", "bucket", "status", "zero", "bin", "completion", "embedding", "n", "oldest")


def _health_template(shape: Shape, processing: bool) -> Select:
    """The window's requests counted per (model, path, slot), the slot packing the
    model's position in the configuration, the status, whether both token counts are
    0, the latency bin and the bucket into one integer: sorting (SQLite) or hashing
    (PostgreSQL) one integer and the raw path cost a third of grouping by those columns
    themselves. Those groups (a common table expression) are then summed four ways, so
    that only what the figures need comes back: latency bins per model and per bucket,
    statuses per model (with the zero-token flag and the oldest timestamp, for requests
    in flight) and per bucket. Paths are classified once per group, as in the usage
    statement (SPEC's case-insensitive LIKE)."""
    buckets = shape.cuts + 1
    per_status = 2 * BIN_SLOTS * buckets
    per_model = STATUS_SLOTS * per_status
    stamp_type = String() if shape.dialect == "sqlite" else DateTime(timezone=True)
    timestamp = no_affinity(request.c.timestamp) if shape.dialect == "sqlite" else request.c.timestamp
    cuts = [bindparam(f"cut_{index}", type_=stamp_type) for index in range(shape.cuts)]
    model = queries.model_expression(shape)
    zero = zero_tokens(request)
    slot = ((status_part(request.c.status_code) * 2 + zero) * BIN_SLOTS + _bin_part(request.c.response_time_ms)) \
        * buckets + bucket_index(timestamp, cuts, 0, shape.cuts)
    if shape.models:
        names = [bindparam(f"model_{index}", type_=String()) for index in range(shape.models)]
        slot = model_position(model, names) * per_model + slot
        model_column = cast(null(), String)
    else:
        model_column = model
    rows = queries.grouping_fence(
        select(model_column.label("model"), cast(slot, BigInteger).label("slot"), request.c.path, request.c.timestamp)
        .where(*queries.window_conditions(shape)),
        shape.dialect,
    ).subquery("health_rows")
    groups = (
        select(rows.c.model, rows.c.slot, rows.c.path, func.count().label("n"), func.min(rows.c.timestamp).label("oldest"))
        .group_by(rows.c.slot, rows.c.model, rows.c.path)
        .cte("health_groups")
    )
    rest = groups.c.slot % per_model
    keys = {
        "model": groups.c.model,
        "position": groups.c.slot // per_model,
        "status": rest // per_status,
        "zero": (rest // (BIN_SLOTS * buckets)) % 2,
        "bin": (rest // buckets) % BIN_SLOTS,
        "bucket": rest % buckets,
        "completion": case((groups.c.path.ilike(COMPLETION_PATH), 1), else_=0),
        "embedding": case((groups.c.path.ilike(EMBEDDING_PATH), 1), else_=0),
    }
    parts = summed_parts(keys, groups.c.n, groups.c.oldest, stamp_type)
    if processing:
        # Gateway overhead: its own histogram per path kind (a second pass over the window).
        processing_bin = _bin_part(request.c.processing_time_ms)
        path_completion = case((request.c.path.ilike(COMPLETION_PATH), 1), else_=0)
        path_embedding = case((request.c.path.ilike(EMBEDDING_PATH), 1), else_=0)
        values = {"bin": processing_bin, "completion": path_completion, "embedding": path_embedding}
        parts.append(
            part_select(PROCESSING, values, func.count(), cast(null(), stamp_type), stamp_type)
            .where(*queries.window_conditions(shape), request.c.processing_time_ms.is_not(None))
            .group_by(path_completion, path_embedding, processing_bin)
        )
    return union_all(*parts)


def part_select(name: str, values: Mapping[str, Any], n, oldest, oldest_type) -> Select:
    """One part's row (`COLUMNS`): `values` of the columns it groups by, typed NULLs for
    the others, then `n` and `oldest` (of type `oldest_type`)."""
    types = {"model": String(), "oldest": oldest_type}
    columns = [literal(name).label("part")]
    for column in COLUMNS[1:-2]:
        columns.append(values[column].label(column) if column in values
                       else cast(null(), types.get(column, BigInteger())).label(column))
    return select(*columns, n.label("n"), oldest.label("oldest"))


def summed_parts(keys: Mapping[str, Any], n, oldest, oldest_type) -> list[Select]:
    """The four parts of the response times and statuses, summed from groups: `keys`
    are the groups' columns `COLUMNS[1:-2]` (in the statement's encoding), `n` their
    requests and `oldest` their earliest timestamp (of type `oldest_type`). The gateway
    sums its window's groups so; the archive its slices' (`history.archive`)."""

    def part(name: str, by: Sequence[str], *where) -> Select:
        earliest = func.min(oldest) if "status" in by and "model" in by else cast(null(), oldest_type)
        return part_select(name, {column: keys[column] for column in by}, func.sum(n), earliest, oldest_type) \
            .where(*where).group_by(*(keys[column] for column in by))

    timed = and_(keys["bin"] > 0, (keys["completion"] + keys["embedding"]) > 0)
    return [
        part(LATENCY_BY_MODEL, ("model", "position", "bin", "completion", "embedding"), timed),
        part(LATENCY_BY_BUCKET, ("bucket", "bin", "completion", "embedding"), timed),
        part(STATUS_BY_MODEL, ("model", "position", "status", "zero", "completion")),
        part(STATUS_BY_BUCKET, ("bucket", "status")),
    ]


@dataclass(frozen=True)
class Health:
    """The health figures of one refresh.

    - `latency`: per path kind (index 'completion', 'embedding'): requests with a
      response time, and its p50, p90, p95, p99 (ms; NaN without requests);
      `latency_by_model`: the same per (model, kind); `latency_over_time`: per bucket,
      p50 and p95 of each kind (`<kind>_p50`, `<kind>_p95`).
    - `statuses`: requests per status code (NA: in flight) with its kind
      (`failure_kind`).
    - `failures_over_time`: per bucket, requests, each of `FAILURE_KINDS`, failed and
      failure_rate; `failures_by_model`: the same per model, with in_flight and
      tokens_unknown.
    - `in_flight`, `oldest_in_flight`: requests without a status yet, and the oldest's
      timestamp; `tokens_unknown`: completions that ended without reported tokens.
    - `processing`: like `latency`, for the time spent in the gateway before the
      upstream call (None when the gateway does not log it).
    - `headroom`: per token of the reach, its busiest minute against its limits
      (`headroom.read_headroom`, with the name the token is shown by; None for
      standard users or without limits);
      `near_limit`: the tokens within `headroom.NEAR_LIMIT` of a limit.
    """

    window: Window
    tz: str
    latency: pd.DataFrame
    latency_by_model: pd.DataFrame
    latency_over_time: pd.DataFrame
    statuses: pd.DataFrame
    failures_over_time: pd.DataFrame
    failures_by_model: pd.DataFrame
    in_flight: int
    oldest_in_flight: datetime | None
    tokens_unknown: int
    processing: pd.DataFrame | None
    headroom: pd.DataFrame | None
    near_limit: pd.DataFrame | None
    notices: tuple[str, ...] = field(default=())
    #: Parts of the window of which neither the gateway nor the archive has a health
    #: record: their buckets show nothing for want of data, not for want of use.
    unrecorded: tuple[tuple[datetime, datetime], ...] = field(default=())
    #: What the figures cover (the effective scope, as `Usage.scope`; None when shaped
    #: without a viewer) and the choices it fell back from (as `Usage.fallbacks`); not
    #: part of the JSON.
    scope: Scope | None = field(default=None, compare=False, repr=False)
    fallbacks: tuple[str, ...] = field(default=())

    @property
    def oldest_in_flight_age_s(self) -> float | None:
        """How long the oldest request in flight has been waiting, at `now` (seconds)."""
        if self.oldest_in_flight is None:
            return None
        return max(0.0, (self.window.now - self.oldest_in_flight).total_seconds())

    def to_json(self) -> dict[str, Any]:
        """The report's "health" object (README, "JSON report")."""
        return {
            "version": HEALTH_JSON_VERSION,
            "latency": _percentile_rows(self.latency.reset_index()),
            "latency_by_model": _percentile_rows(self.latency_by_model),
            "latency_over_time": [
                {"bucket": row["bucket"].isoformat(), **{k: _number(v) for k, v in row.items() if k != "bucket"}}
                for row in self.latency_over_time.to_dict("records")
            ],
            "statuses": [
                {"status_code": None if pd.isna(row["status_code"]) else int(row["status_code"]),
                 "kind": row["kind"], "requests": int(row["requests"])}
                for row in self.statuses.to_dict("records")
            ],
            "failures_over_time": [
                {"bucket": row["bucket"].isoformat(), **{k: _number(v) for k, v in row.items() if k != "bucket"}}
                for row in self.failures_over_time.to_dict("records")
            ],
            "failures_by_model": [
                {k: (v if k == "model" else _number(v)) for k, v in row.items()}
                for row in self.failures_by_model.to_dict("records")
            ],
            "in_flight": self.in_flight,
            "oldest_in_flight": None if self.oldest_in_flight is None else self.oldest_in_flight.isoformat(),
            "tokens_unknown": self.tokens_unknown,
            "processing": None if self.processing is None else _percentile_rows(self.processing.reset_index()),
            "headroom": None if self.headroom is None else _records(self.headroom),
            "near_limit": None if self.near_limit is None else _records(self.near_limit),
            "notices": list(self.notices),
        }


def _number(value: Any) -> Any:
    """JSON-safe: NaN and NA as null, numpy scalars as Python numbers."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        # JSON has no infinity: a share of a limit of 0 that was used is null.
        return float(value) if np.isfinite(value) else None
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _number(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _percentile_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (v if k in ("kind", "model") else _number(v)) for k, v in row.items()}
            for row in frame.to_dict("records")]


@dataclass(frozen=True)
class _Counts:
    """The health statement's rows as arrays (one entry per row)."""

    part: np.ndarray
    model: np.ndarray
    bucket: np.ndarray
    completion: np.ndarray
    embedding: np.ndarray
    status: list
    bin: np.ndarray
    zero: np.ndarray
    n: np.ndarray
    oldest: list

    @classmethod
    def of(cls, rows: Sequence, models: Sequence[str] | None) -> "_Counts":
        """The health statement's rows (`COLUMNS`); a column a part does not group by
        is -1 (0 for the flags)."""
        columns = dict(zip(COLUMNS, zip(*rows))) if rows else {name: () for name in COLUMNS}
        count = len(columns["part"])

        def ints(name: str, missing: int = -1) -> np.ndarray:
            return np.fromiter((missing if v is None else int(v) for v in columns[name]), dtype=np.int64, count=count)

        position = ints("position")
        if models:
            model = np.array([None if at < 0 else models[at] for at in position.tolist()], dtype=object)
        else:
            model = np.array(columns["model"], dtype=object)
        status = ints("status")
        return cls(
            part=np.array(columns["part"], dtype=object), model=model, bucket=ints("bucket"),
            completion=ints("completion", 0), embedding=ints("embedding", 0),
            status=[None if code <= 0 else code - 1 for code in status.tolist()],
            bin=ints("bin", 0) - 1, zero=ints("zero", 0), n=ints("n", 0), oldest=list(columns["oldest"]),
        )


def _histograms(counts: _Counts, rows: np.ndarray, by: np.ndarray, groups: int) -> np.ndarray:
    """Histograms (groups, BINS) of the rows selected by the boolean mask `rows`, per
    group index `by`; rows without a time (bin -1) left out."""
    chosen = rows & (counts.bin >= 0)
    result = np.zeros((groups, latency.BINS), dtype=np.int64)
    np.add.at(result, (by[chosen], counts.bin[chosen]), counts.n[chosen])
    return result


def _percentile_frame(histograms: np.ndarray) -> pd.DataFrame:
    values = latency.percentiles(histograms)
    return pd.DataFrame({
        "requests": histograms.sum(axis=1).astype("int64"),
        **{f"p{round(q * 100)}": values[:, position] for position, q in enumerate(latency.QUANTILES)},
    })


def _kind_masks(counts: _Counts, part: str) -> dict[str, np.ndarray]:
    mine = counts.part == part
    return {"completion": mine & (counts.completion == 1), "embedding": mine & (counts.embedding == 1)}


def _latency(counts: _Counts, part: str) -> pd.DataFrame:
    masks = _kind_masks(counts, part)
    everything = np.zeros(len(counts.n), dtype=np.int64)
    histograms = np.vstack([_histograms(counts, masks[kind], everything, 1) for kind in PATH_KINDS])
    return _percentile_frame(histograms).set_index(pd.Index(PATH_KINDS, name="kind"))


def _latency_by_model(counts: _Counts, names: list[str], model_index: np.ndarray) -> pd.DataFrame:
    frames = []
    for kind, mask in _kind_masks(counts, LATENCY_BY_MODEL).items():
        frame = _percentile_frame(_histograms(counts, mask, model_index, len(names)))
        frames.append(frame.assign(model=names, kind=kind))
    result = pd.concat(frames, ignore_index=True)
    result = result[result["requests"] > 0]
    return result[["model", "kind", *(c for c in result.columns if c not in ("model", "kind"))]].reset_index(drop=True)


def _in_buckets(counts: _Counts, part: str, buckets: int) -> np.ndarray:
    """Rows of `part` in one of the chart's buckets (not stamped after its last edge)."""
    return (counts.part == part) & (counts.bucket >= 0) & (counts.bucket < buckets)


def _latency_over_time(counts: _Counts, win: Window) -> pd.DataFrame:
    buckets = len(win.starts)
    inside = _in_buckets(counts, LATENCY_BY_BUCKET, buckets)
    columns: dict[str, Any] = {"bucket": list(win.starts)}
    for kind, mask in _kind_masks(counts, LATENCY_BY_BUCKET).items():
        values = latency.percentiles(_histograms(counts, mask & inside, np.where(inside, counts.bucket, 0), buckets),
                                     (0.5, 0.95))
        columns[f"{kind}_p50"] = values[:, 0]
        columns[f"{kind}_p95"] = values[:, 1]
    return pd.DataFrame(columns)


def _kinds(counts: _Counts) -> np.ndarray:
    return np.array([failure_kind(status) for status in counts.status], dtype=object)


def _failure_table(kinds: np.ndarray, counts: _Counts, rows: np.ndarray, by: np.ndarray, groups: int) -> dict[str, np.ndarray]:
    """Requests, each failure kind, failed, in flight and the failure rate per group."""
    def total(mask: np.ndarray) -> np.ndarray:
        out = np.zeros(groups, dtype=np.int64)
        np.add.at(out, by[rows & mask], counts.n[rows & mask])
        return out

    table = {"requests": total(rows), **{kind: total(kinds == kind) for kind in FAILURE_KINDS}}
    table["failed"] = sum(table[kind] for kind in FAILURE_KINDS)
    table["in_flight"] = total(kinds == "in flight")
    with np.errstate(invalid="ignore", divide="ignore"):
        table["failure_rate"] = np.where(table["requests"] > 0, table["failed"] / np.maximum(table["requests"], 1),
                                         np.nan)
    return table


def _statuses(kinds: np.ndarray, counts: _Counts, rows: np.ndarray) -> pd.DataFrame:
    sums: dict[int | None, int] = {}
    for status, n, chosen in zip(counts.status, counts.n.tolist(), rows.tolist()):
        if chosen:
            sums[status] = sums.get(status, 0) + n
    codes = sorted(sums, key=lambda code: (code is None, code or 0))
    return pd.DataFrame({
        "status_code": pd.array(codes, dtype="Int64"),
        "kind": [failure_kind(code) for code in codes],
        "requests": pd.Series([sums[code] for code in codes], dtype="int64"),
    })


def _oldest_in_flight(counts: _Counts, rows: np.ndarray) -> datetime | None:
    stamps = [stamp for stamp, chosen in zip(counts.oldest, rows.tolist()) if chosen and stamp is not None]
    if not stamps:
        return None
    moments = [datetime.fromisoformat(s) if isinstance(s, str) else s for s in stamps]
    # SQLite keeps naive UTC text.
    return min(m if m.tzinfo is not None else m.replace(tzinfo=timezone.utc) for m in moments)


def shape_health(rows: Sequence, models: Sequence[str] | None, win: Window, tz: str, has_processing_time: bool,
                 headroom: pd.DataFrame | None, notices: tuple[str, ...] = ()) -> Health:
    """The figures from the health statement's rows (`models`: the configured ones)."""
    counts = _Counts.of(rows, models)
    kinds = _kinds(counts)
    per_model = counts.part == STATUS_BY_MODEL
    names = sorted({name for name, chosen in zip(counts.model.tolist(), per_model.tolist()) if chosen})
    position = {name: index for index, name in enumerate(names)}
    model_index = np.fromiter((position.get(name, 0) for name in counts.model.tolist()), dtype=np.int64,
                              count=len(counts.n))
    buckets = len(win.starts)
    inside = _in_buckets(counts, STATUS_BY_BUCKET, buckets)
    over_time = _failure_table(kinds, counts, inside, np.where(inside, counts.bucket, 0), buckets)
    by_model = _failure_table(kinds, counts, per_model, model_index, len(names))
    unknown = per_model & (counts.completion == 1) & (counts.zero == 1) & (kinds == "ok")
    unknown_by_model = np.zeros(len(names), dtype=np.int64)
    np.add.at(unknown_by_model, model_index[unknown], counts.n[unknown])
    failures_over_time = pd.DataFrame({"bucket": list(win.starts),
                                       **{k: v for k, v in over_time.items() if k != "in_flight"}})
    failures_by_model = pd.DataFrame({"model": names, **by_model, "tokens_unknown": unknown_by_model})
    failures_by_model = failures_by_model.sort_values(["requests", "model"], ascending=[False, True],
                                                      kind="stable").reset_index(drop=True)
    in_flight = per_model & (kinds == "in flight")
    return Health(
        window=win,
        tz=tz,
        latency=_latency(counts, LATENCY_BY_MODEL),
        latency_by_model=_latency_by_model(counts, names, model_index),
        latency_over_time=_latency_over_time(counts, win),
        statuses=_statuses(kinds, counts, per_model),
        failures_over_time=failures_over_time,
        failures_by_model=failures_by_model,
        in_flight=int(counts.n[in_flight].sum()),
        oldest_in_flight=_oldest_in_flight(counts, in_flight),
        tokens_unknown=int(counts.n[unknown].sum()),
        processing=_latency(counts, PROCESSING) if has_processing_time else None,
        headroom=headroom,
        near_limit=None if headroom is None else limits.near_limit(headroom),
        notices=notices if has_processing_time else (*notices, NO_PROCESSING_TIME_NOTICE),
    )


def _named(headroom: pd.DataFrame, catalogue: Catalogue) -> pd.DataFrame:
    """Headroom rows with the name each token is shown by (a service account's name for
    its tokens), after the id."""
    names = [catalogue.tokens[key].display_name if key in catalogue.tokens else None
             for key in headroom["token_id"].tolist()]
    return headroom.assign(name=pd.Series(names, index=headroom.index, dtype=object))[
        ["token_id", "name", *(column for column in headroom.columns if column != "token_id")]]


def compute_health(
    db: Database,
    viewer: str,
    selection: Selection | None = None,
    models: Sequence[str] | None = None,
    multipliers: Mapping[str, float] | None = None,
    archive: HealthSource | None = None,
) -> Health:
    """The health figures for `viewer` and `selection`, over the same requests as
    `usage.compute_usage` (window, configured `models`, reach, token), read from the
    gateway: viewer, catalogue, the health statement and, for org admins and global
    admins of a gateway with limits, the headroom statement. `multipliers` are the
    router configuration's per-model request-limit multipliers.

    With an `archive` (`usage_lib.history.archive.open_archive`), settled slices come
    from it and the health statement reads only the rest of the window; the figures are
    the same while the gateway still holds the window. Headroom (per-minute peaks, which
    the archive does not keep) always comes from the gateway."""
    with db.connect() as conn:
        context = open_context(conn, db, viewer, selection, models, archive)
        settled = None
        if archive is not None:
            settled = archive.settled_health(context.scope, context.window, models, db.has_processing_time)
        statement, params = health_query(db, context, models, settled.gateway_ranges if settled is not None else None)
        rows = [*conn.execute(statement, params).all(), *(settled.rows if settled is not None else ())]
        headroom = limits.read_headroom(conn, db, context.scope, context.window, models, multipliers or {})
    context.log_fallbacks()
    if headroom is not None:
        headroom = _named(headroom, context.catalogue)
    notices = (*context.notices, *(settled.notices if settled is not None else ()))
    if headroom is not None and settled is not None and settled.beyond_gateway:
        notices = (*notices, HEADROOM_GATEWAY_ONLY_NOTICE)
    health = shape_health(rows, models, context.window, context.selection.tz, db.has_processing_time, headroom,
                          notices)
    return dataclasses.replace(health, unrecorded=settled.unrecorded if settled is not None else (),
                               scope=context.scope, fallbacks=context.selection_notes + context.scope.fallbacks)
