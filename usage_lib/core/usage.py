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
from typing import Any, Literal, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

from usage_lib.core import access, queries
from usage_lib.core.access import Catalogue, Scope
from usage_lib.gateway.db import Database
from usage_lib.errors import UsageError
from usage_lib.core.spans import DEFAULT_SPAN, SPANS, Window, range_window, window, zone

log = logging.getLogger(__name__)

TOP_CHOICES = (10, 25, 100)
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
            notes.append(f"unknown span {span!r}; showing {DEFAULT_SPAN}")
            span = DEFAULT_SPAN
        try:
            top = int(top)
        except (TypeError, ValueError):
            top = -1
        if top not in TOP_CHOICES:
            notes.append(f"top {self.top!r} is not one of {TOP_CHOICES}; showing {DEFAULT_TOP}")
            top = DEFAULT_TOP
        return dataclasses.replace(self, span=span, top=top), tuple(notes)


@dataclass(frozen=True)
class Settled:
    """What an archive of settled usage answers for one window (`SettledSource.settled`).

    Its sums cover some whole slices of the window, per (model, key) in `keys`: `sums`
    in the columns of `SUMMED`, and `before`, the requests before each bucket's end (as
    `Usage.bucket_counts`). `gateway_ranges` are the timestamp ranges left for the
    gateway to read (`queries.usage_query`): the partial first slice and the unsettled
    tail. `notices` say where the archive rounded an edge or has a gap.
    """

    keys: tuple[tuple[Any, Any], ...]
    sums: np.ndarray
    before: np.ndarray
    gateway_ranges: tuple[queries.Range, ...]
    notices: tuple[str, ...] = ()
    #: Parts of the window with no record anywhere (`Usage.unrecorded`).
    unrecorded: tuple[tuple[datetime, datetime], ...] = ()

    @classmethod
    def empty(cls, buckets: int, gateway_ranges: tuple[queries.Range, ...], notices: tuple[str, ...] = ()) -> "Settled":
        return cls(keys=(), sums=np.zeros((0, len(SUMMED)), dtype=np.int64),
                   before=np.zeros((0, buckets), dtype=np.int64), gateway_ranges=gateway_ranges, notices=notices)


class SettledSource(Protocol):
    """An archive `compute_usage` can read (`usage_lib.history.archive.Archive`)."""

    def last_seen(self) -> Sequence[Mapping[str, Any]]:
        """Catalogue rows (`queries.catalogue_statement`'s columns) of orgs and tokens as
        last seen, for those deleted from the gateway since."""

    def settled(self, scope: Scope, window: Window, models: Sequence[str] | None, by_user_id: bool) -> Settled:
        """The window's settled part, for what `scope` may see."""


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


@dataclass(frozen=True)
class Usage:
    """The figures of one refresh.

    - `timeseries`: bucket (aware, dashboard zone), requests, one row per bucket.
    - `models`: model, requests, in display order.
    - `top`: rank, id, name, requests, input_tokens, output_tokens, total_tokens, and for
      tokens display_name, owner_email, service_account, is_service_account, can_open.

    The finer frames every figure above is summed from (for analyses of your own):

    - `groups`: one row per (model, key) with requests, failed, input_tokens,
      output_tokens, and the response-time sums and counts of completions and
      embeddings (averages: ``completion_ms_sum / completion_n``);
    - `breakdown`: requests per (model, key, bucket), buckets without requests left out.

    The key is the token id, or the `user_id` when a token is selected below an org
    (`key_kind`). Both hold only what the viewer may see.
    """

    scope: Scope
    window: Window
    tz: str
    top_k: int
    metrics: Metrics
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

    @cached_property
    def breakdown(self) -> pd.DataFrame:
        return _breakdown(self.groups, self.bucket_counts, self.window)

    def to_json(self) -> dict[str, Any]:
        """The documented report contract (README, "JSON report")."""
        scope = self.scope
        return {
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
            "timeseries": [
                {"bucket": bucket.isoformat(), "requests": int(requests)}
                for bucket, requests in zip(self.timeseries["bucket"], self.timeseries["requests"])
            ],
            "models": [
                {"model": model, "requests": int(requests)}
                for model, requests in zip(self.models["model"], self.models["requests"])
            ],
            "top": {"kind": self.top_kind, "rows": [_json_row(row, self.top_kind) for row in self.top.to_dict("records")]},
            "notices": list(self.notices),
        }


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
    }
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


def _grouped_frame(rows: Sequence, buckets: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The usage statement's rows as a frame of sums per (model, key), and the matrix
    (one row per group, one column per chart bucket) of requests stamped before each
    bucket's end.

    Plain Python and numpy: a few thousand rows at most, and pandas' per-column type
    inference cost more than the SQL on small windows.
    """
    rows = list(rows)
    width = len(GROUPED_COLUMNS) + buckets
    columns = list(zip(*rows)) if rows else [()] * width
    data: dict[str, Any] = {"model": list(columns[0]), "key": list(columns[1])}
    for position, name in enumerate(SUMMED, start=2):
        data[name] = np.fromiter((_as_int(v) for v in columns[position]), dtype=np.int64, count=len(rows))
    before = np.array(
        [[_as_int(v) for v in columns[position]] for position in range(len(GROUPED_COLUMNS), width)],
        dtype=np.int64,
    ).reshape(buckets, len(rows)).T
    return pd.DataFrame(data), before


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


def _timeseries(before: np.ndarray, win: Window) -> pd.DataFrame:
    """Bucket i holds the requests before its end and not before the previous end."""
    return pd.DataFrame({"bucket": list(win.starts), "requests": pd.Series(_per_bucket(before.sum(axis=0)), dtype="int64")})


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


def _models(grouped: pd.DataFrame, known: Sequence[str]) -> pd.DataFrame:
    """Most requests first (ties in configuration order), then unused models at 0."""
    counts = grouped.groupby("model")["requests"].sum()
    order = {name: position for position, name in enumerate(known)}
    used = sorted(
        ((name, int(count)) for name, count in counts.items() if count > 0),
        key=lambda item: (-item[1], order.get(item[0], len(order)), item[0]),
    )
    used_names = {name for name, _ in used}
    unused = [(name, 0) for name in known if name not in used_names]
    rows = used + unused
    return pd.DataFrame(
        {"model": [name for name, _ in rows], "requests": pd.Series([c for _, c in rows], dtype="int64")}
    )


TOP_COLUMNS = ["rank", "id", "name", "requests", "input_tokens", "output_tokens", "total_tokens"]
TOKEN_COLUMNS = ["display_name", "owner_email", "service_account", "is_service_account", "can_open"]


def _sum_by_key(grouped: pd.DataFrame, keys: Sequence) -> dict:
    """key -> [requests, input_tokens, output_tokens], in order of first appearance."""
    sums: dict = {}
    columns = zip(keys, grouped["requests"].tolist(), grouped["input_tokens"].tolist(),
                  grouped["output_tokens"].tolist())
    for key, requests, input_tokens, output_tokens in columns:
        entry = sums.get(key)
        if entry is None:
            sums[key] = [requests, input_tokens, output_tokens]
        else:
            entry[0] += requests
            entry[1] += input_tokens
            entry[2] += output_tokens
    return sums


def _rank(sums: dict, sort_key, top_k: int) -> list:
    """Keys with requests, most requests first, ties by `sort_key(key)`; at most top_k."""
    used = [key for key, (requests, _i, _o) in sums.items() if requests > 0]
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
    }
    data.update(extra or {})
    return pd.DataFrame(data)


def _top_orgs(grouped: pd.DataFrame, catalogue: Catalogue, top_k: int) -> pd.DataFrame:
    """One row per org of the tokens' owners; owners without a profile: one row, no org."""
    owner_org = {token.id: token.owner_org_id for token in catalogue.tokens.values()}
    sums = _sum_by_key(grouped, [owner_org.get(key) for key in grouped["key"].tolist()])
    names = {org.id: org.name for org in catalogue.orgs}

    def order(org_id):  # name (case-folded), then id; the row without an org last
        name = names.get(org_id)
        return (name is None, name.casefold() if name is not None else "", org_id is None, org_id or 0)

    keys = _rank(sums, order, top_k)
    return _table(keys, sums, keys, [names.get(key, np.nan) for key in keys], "Int64")


def _top_tokens(grouped: pd.DataFrame, scope: Scope, catalogue: Catalogue, top_k: int) -> pd.DataFrame:
    sums = _sum_by_key(grouped, [int(key) for key in grouped["key"].tolist()])
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
    return _table(keys, sums, keys, [token.name for token in chosen], "int64", extra=extra)


def _top_user_ids(grouped: pd.DataFrame, top_k: int) -> pd.DataFrame:
    sums = _sum_by_key(grouped, [str(key) for key in grouped["key"].tolist()])
    keys = _rank(sums, lambda key: (key,), top_k)
    # pandas' default string dtype, as `astype(str)` gives.
    return _table(keys, sums, keys, list(keys), "str", "str")


def _empty_grouped() -> pd.DataFrame:
    return _grouped_frame([], 0)[0]


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


def _with_settled(grouped: pd.DataFrame, before: np.ndarray, settled: Settled) -> tuple[pd.DataFrame, np.ndarray]:
    """The gateway's groups plus the archive's, summed per (model, key)."""
    if not settled.keys:
        return grouped, before
    index = {key: position for position, key in enumerate(zip(grouped["model"].tolist(), grouped["key"].tolist()))}
    new = [key for key in settled.keys if key not in index]
    for key in new:
        index[key] = len(index)
    rows = np.fromiter((index[key] for key in settled.keys), dtype=np.int64, count=len(settled.keys))
    sums = np.vstack([grouped[SUMMED].to_numpy(dtype=np.int64), np.zeros((len(new), len(SUMMED)), dtype=np.int64)])
    counts = np.vstack([before, np.zeros((len(new), before.shape[1]), dtype=np.int64)])
    sums[rows] += settled.sums
    counts[rows] += settled.before
    keys = list(index)
    frame = pd.DataFrame({"model": [key[0] for key in keys], "key": [key[1] for key in keys],
                          **{name: sums[:, position] for position, name in enumerate(SUMMED)}})
    return frame, counts


def compute_usage(
    db: Database,
    viewer: str,
    selection: Selection | None = None,
    models: Sequence[str] | None = None,
    archive: SettledSource | None = None,
) -> Usage:
    """All figures for `viewer` (email or username) and `selection`.

    `models` are the router configuration's model names (`load_router_config`); None
    means no configuration: every request counts and the known models are those in the
    request table. With an `archive` (`usage_lib.history.archive.open_archive`), settled
    slices come from it and only the rest of the window from the gateway; the figures
    are the same while the gateway still holds the window. Raises `UsageError` for an
    unknown viewer, zone or span.
    """
    selection, selection_notes = (selection or Selection()).normalised()
    tz = zone(selection.tz)
    now = _as_of(selection.now, selection.tz)
    if selection.custom:
        win = range_window(selection.start, selection.end, now, tz)
    else:
        win = window(selection.span, now, tz)
    with db.connect() as conn:
        person = access.resolve_viewer(conn.execute(queries.viewer_statement(viewer.strip())).mappings(), viewer)
        catalogue_rows = list(conn.execute(queries.catalogue_statement(models is None)).mappings())
        if archive is not None:
            catalogue_rows = with_last_seen(catalogue_rows, archive.last_seen())
        catalogue = access.build_catalogue(catalogue_rows)
        scope = access.resolve_scope(person, catalogue, org=selection.org, token=selection.token)
        notices: list[str] = []
        if not db.has_user_id:
            scope = dataclasses.replace(scope, reach=dataclasses.replace(scope.reach, email=None))
            notices.append(NO_USER_ID_NOTICE)
        settled = None
        if archive is not None:
            settled = archive.settled(scope, win, models, scope.top_kind == "user_id" and db.has_user_id)
            notices.extend(settled.notices)
        ranges = settled.gateway_ranges if settled is not None else queries.window_ranges(win)
        statement, params = queries.usage_query(db, scope, win, models, ranges)
        grouped, before = _grouped_frame(conn.execute(statement, params).all(), len(win.starts))
        if settled is not None:
            grouped, before = _with_settled(grouped, before, settled)
    for note in selection_notes + scope.fallbacks:
        # A choice the viewer may not make (or garbage): shown narrower, and on record.
        log.warning("viewer %s (%s): %s", person.label, person.role, note)
    known = tuple(models) if models is not None else tuple(
        sorted(row["name"] for row in catalogue_rows if row["kind"] == "model")
    )
    kind = scope.top_kind
    if kind == "org":
        top = _top_orgs(grouped, catalogue, selection.top)
    elif kind == "token":
        top = _top_tokens(grouped, scope, catalogue, selection.top)
    elif db.has_user_id:
        top = _top_user_ids(grouped, selection.top)
    else:
        top = _top_user_ids(_empty_grouped(), selection.top)
    return Usage(
        scope=scope,
        window=win,
        tz=selection.tz,
        top_k=selection.top,
        metrics=_metrics(grouped),
        timeseries=_timeseries(before, win),
        models=_models(grouped, known),
        top_kind=kind,
        top=top,
        groups=grouped,
        key_kind="user_id" if kind == "user_id" and db.has_user_id else "token",
        bucket_counts=before,
        notices=tuple(notices),
        unrecorded=settled.unrecorded if settled is not None else (),
        fallbacks=selection_notes + scope.fallbacks,
    )


def describe_error(exc: BaseException) -> str:
    """The one line to show for an error: ours verbatim, others summarised."""
    if isinstance(exc, UsageError):
        return str(exc)
    return f"unexpected error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
