"""Reading the archive: the settled part of a window, for what a scope may see.

`Archive` is what `core.usage.compute_usage(..., archive=...)` and
`core.health.compute_health(..., archive=...)` take. For a window it
chooses the run of whole slices the archive answers and leaves the rest (the partial
first slice, the unsettled tail) to the gateway; docs/history.md explains the choice.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Sequence

import numpy as np
from sqlalchemy import BigInteger, Integer, String, and_, case, cast, false, func, literal, null, select, union_all

from usage_lib.core import health
from usage_lib.core.access import Scope
from usage_lib.core.health import SettledHealth
from usage_lib.core.queries import CUMULATIVE, Range, bucket_index, window_ranges
from usage_lib.core.spans import Window
from usage_lib.core.usage import SUMMED, Settled
from usage_lib.history import schema
from usage_lib.history.schema import SLICE, TOKEN_TABLES
from usage_lib.history.slices import ceil_to, epoch, floor_to, from_micros, instant
from usage_lib.history.store import State, Store, open_store

EMPTY_NOTICE = "The usage archive is empty (no sync yet): figures come from the gateway alone."


@dataclass(frozen=True)
class Plan:
    """Which whole slices `[start, end)` the archive answers (epoch seconds), from which
    of its tables, what the gateway reads instead, and what is said about it."""

    start: int
    end: int
    #: The coarsest of `schema.TOKEN_TABLES`' steps every cut lies on.
    grid: int
    gateway_ranges: tuple[Range, ...]
    notices: tuple[str, ...]
    #: (start, end) epoch seconds without a record: gaps, and before history began.
    unrecorded: tuple[tuple[int, int], ...] = ()


def _aligned(cuts: Sequence[datetime], step: int) -> bool:
    """Whether every cut inside the window (all but the last: the end of its last
    bucket) lies on the `step` grid (UTC)."""
    return all(cut.microsecond == 0 and int(epoch(cut)) % step == 0 for cut in cuts[:-1])


def _shown(seconds: float, window: Window) -> str:
    return instant(seconds).astimezone(window.start.tzinfo).strftime("%Y-%m-%d %H:%M")


def plan(window: Window, state: State, gaps: Sequence[tuple[int, int]] = (),
         cuts: Sequence[datetime] | None = None) -> Plan | None:
    """The archive's part of `window` (None: the gateway reads it all).

    A slice comes from the archive when it lies wholly in the window and below the
    watermark (if the `cuts`, by default the bucket edges, fall between slices), or when the gateway holds none
    of it any more (older than its oldest request: the window's edge then snaps to the
    slice, with a notice). Everything else is the gateway's, as it would read it.
    """
    start = epoch(window.start)
    end = None if window.until is None else epoch(window.until)
    top = math.inf if end is None else end
    held_from = math.inf if state.gateway_oldest is None else state.gateway_oldest
    parts = []
    cuts = window.edges if cuts is None else cuts
    aligned = _aligned(cuts, SLICE)
    if aligned:
        inner = (ceil_to(start), min(floor_to(top) if end is not None else math.inf, state.watermark))
        if inner[0] < inner[1]:
            parts.append(inner)
    gone = (floor_to(start), min(floor_to(held_from) if held_from != math.inf else math.inf,
                                 state.watermark, ceil_to(top) if end is not None else math.inf))
    if gone[0] < gone[1]:
        parts.append(gone)
    if not parts:
        return None
    low, high = min(p[0] for p in parts), int(max(p[1] for p in parts))
    ranges: list[Range] = []
    if low > start:
        ranges.append((window.start, instant(low)))
    if end is None or high < end:
        ranges.append((instant(high), window.until))
    notices = []
    if low < start and low + SLICE > state.first_slice:
        notices.append(f"The gateway no longer holds the requests at the range's start: shown from "
                       f"{_shown(low, window)}, the start of the archive's 15-minute slice.")
    if end is not None and high > end:
        notices.append(f"The gateway no longer holds the requests at the range's end: shown up to "
                       f"{_shown(high, window)}, the end of the archive's 15-minute slice.")
    if not aligned and gone[0] < gone[1]:
        notices.append(f"Before {_shown(gone[1], window)} the gateway no longer holds the requests: "
                       "each 15-minute slice of the archive is counted in its first minute.")
    unrecorded = []
    if start < state.first_slice and held_from > start:
        notices.append(f"The usage archive starts at {_shown(state.first_slice, window)}: "
                       "nothing before it was recorded.")
        unrecorded.append((floor_to(start), min(state.first_slice, floor_to(held_from))))
    for gap_start, gap_end in gaps:
        if gap_start < high and gap_end > low:
            notices.append(f"No usage recorded from {_shown(gap_start, window)} to {_shown(gap_end, window)}: "
                           "the gateway deleted those requests before a sync saved them.")
            unrecorded.append((gap_start, gap_end))
    grid = next(step for step in TOKEN_TABLES if step == SLICE or (aligned and _aligned(cuts, step)))
    return Plan(start=low, end=high, grid=grid, gateway_ranges=tuple(ranges),
                notices=tuple(notices), unrecorded=tuple(unrecorded))


def _cover(low: int, high: int, steps: Sequence[int]) -> list[tuple[int, int, int]]:
    """[low, high) as (step, start, end) pieces, the coarsest step in the middle and finer
    ones at the ends."""
    if low >= high:
        return []
    step, finer = steps[0], steps[1:]
    first, last = ceil_to(low, step), floor_to(high, step)
    if not finer:
        return [(step, low, high)]
    if first >= last:
        return _cover(low, high, finer)
    return [*_cover(low, first, finer), (step, first, last), *_cover(last, high, finer)]


def _token_parts(plan_: Plan) -> list[tuple[Any, int, int]]:
    """(table, start, end) pieces covering the plan's slices: days or hours where the
    window's buckets allow, slices at the ends."""
    steps = [step for step in TOKEN_TABLES if step <= plan_.grid]
    return [(TOKEN_TABLES[step], start, end) for step, start, end in _cover(plan_.start, plan_.end, steps)]


def _select_part(table, low: int, high: int, key, conditions) -> Any:
    failed = table.c.failed if "failed" in table.c else case((table.c.status_code >= 400, table.c.requests), else_=0)
    measures = [table.c[name] for name in schema.DETAIL_MEASURES]
    return select(
        table.c.slice, table.c.model, key.label("key"), measures[0], failed.label("failed"), *measures[1:],
    ).where(table.c.slice >= low, table.c.slice < high, *conditions)


def _common(table, scope: Scope, models: Sequence[str] | None) -> list:
    """Conditions on `table`'s rows: the configured models and the selected token."""
    conditions = []
    if models is not None:
        conditions.append(table.c.model.in_(list(models)) if models else false())
    if scope.token is not None:
        conditions.append(table.c.token_id == scope.token.id)
    return conditions


def _reach_conditions(table, scope: Scope, models: Sequence[str] | None) -> list | None:
    """Conditions for the rows of `table` (one with token_id and user_id) that `scope`
    may see, as `queries.reach_condition` for requests (None: none)."""
    reach = scope.reach
    conditions = _common(table, scope, models)
    if reach.everything:
        return conditions
    either = []
    if reach.token_ids:
        either.append(table.c.token_id.in_(sorted(reach.token_ids)))
    if reach.email and reach.email_token_ids:
        either.append(and_(table.c.user_id == reach.email, table.c.token_id.in_(sorted(reach.email_token_ids))))
    if not either:
        return None
    return [*conditions, either[0] if len(either) == 1 else either[0] | either[1]]


def _parts(plan_: Plan, scope: Scope, models: Sequence[str] | None, by_user_id: bool) -> list:
    """The SELECTs whose union is every archived row in the plan that `scope` may see."""
    reach = scope.reach
    detail = schema.slice_detail
    if by_user_id:
        conditions = _reach_conditions(detail, scope, models)
        if conditions is None:
            return []
        return [_select_part(detail, plan_.start, plan_.end, detail.c.user_id, conditions)]
    parts = []
    if reach.everything or reach.token_ids:
        for table, low, high in _token_parts(plan_):
            conditions = _common(table, scope, models)
            if not reach.everything:
                conditions.append(table.c.token_id.in_(sorted(reach.token_ids)))
            parts.append(_select_part(table, low, high, table.c.token_id, conditions))
    if not reach.everything and reach.email and reach.email_token_ids:
        # Requests under the viewer's email on other tokens of their org: only
        # `slice_detail` knows user_ids; tokens already counted above are left out.
        conditions = [*_common(detail, scope, models), detail.c.user_id == reach.email,
                      detail.c.token_id.in_(sorted(reach.email_token_ids - reach.token_ids))]
        if reach.email_token_ids - reach.token_ids:
            parts.append(_select_part(detail, plan_.start, plan_.end, detail.c.token_id, conditions))
    return parts


def _sums(conn, plan_: Plan, scope: Scope, cuts: Sequence[datetime], models, by_user_id: bool) -> Settled:
    """The archived rows summed per (model, key): one statement grouped by the interval
    between cuts, turned into the frames' sums and running totals with numpy."""
    parts = _parts(plan_, scope, models, by_user_id)
    if not parts:
        return Settled.empty(len(cuts), plan_.gateway_ranges)
    rows = union_all(*parts).subquery("archived") if len(parts) > 1 else parts[0].subquery("archived")
    bounds = [literal(int(epoch(cut)), Integer()) for cut in cuts]
    bucket = bucket_index(rows.c.slice, bounds, 0, len(bounds)).label("bucket")
    # Cast: PostgreSQL sums bigints to numeric (Decimal), slow to convert one by one.
    statement = select(
        bucket, rows.c.model, rows.c.key, *(cast(func.sum(rows.c[name]), BigInteger) for name in SUMMED),
    ).group_by(bucket, rows.c.model, rows.c.key)
    result = conn.execute(statement).all()
    columns = list(zip(*result)) if result else [()] * (3 + len(SUMMED))
    index: dict[tuple, int] = {}
    group = np.fromiter((index.setdefault(key, len(index)) for key in zip(columns[1], columns[2])),
                        dtype=np.int64, count=len(result))
    values = np.array(columns[3:], dtype=np.int64).reshape(len(SUMMED), len(result)).T
    sums = np.zeros((len(index), len(SUMMED)), dtype=np.int64)
    np.add.at(sums, group, values)
    measures = [SUMMED.index(name) for name in CUMULATIVE]
    per_interval = np.zeros((len(CUMULATIVE), len(index), len(cuts)), dtype=np.int64)
    # Slices after the last cut cannot occur (the plan stays inside the window).
    interval = np.minimum(np.array(columns[0], dtype=np.int64), len(cuts) - 1)
    for position, measure in enumerate(measures):
        np.add.at(per_interval[position], (group, interval), values[:, measure])
    return Settled(keys=tuple(index), sums=sums, cumulative=np.cumsum(per_interval, axis=2),
                   gateway_ranges=plan_.gateway_ranges)


HEALTH_FROM_NOTICE = ("No health figures recorded from {start} to {end}: those slices were archived before "
                      "the archive kept them (a sync without --health, or of an older version).")


def _health_gap(plan_: Plan, state: State, window: Window) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
    """The notice and the unrecorded time where the plan reads slices archived before
    the archive kept health (`State.health_from`): a gap, for health."""
    start, end = max(plan_.start, state.first_slice), min(plan_.end, state.health_from)
    if start >= end:
        return (), ()
    return (HEALTH_FROM_NOTICE.format(start=_shown(start, window), end=_shown(end, window)),), ((start, end),)


def _health_statement(plan_: Plan, scope: Scope, models: Sequence[str] | None, edges: Sequence[datetime],
                      processing: bool) -> Any:
    """The plan's archived health in the health statement's form (`health.COLUMNS`),
    for what `scope` may see: slice rows summed per the statement's keys (bucketed by
    the window's `edges`, each slice in the bucket its start is in), then summed the
    statement's ways (`health.summed_parts`); None when the scope sees nothing."""
    table = schema.slice_health
    conditions = _reach_conditions(table, scope, models)
    if conditions is None:
        return None
    in_plan = (table.c.slice >= plan_.start, table.c.slice < plan_.end)
    bounds = [literal(int(epoch(edge)), BigInteger()) for edge in edges]
    keys = {
        "model": cast(null(), String) if models else table.c.model,
        "position": health.model_position(table.c.model, [literal(name) for name in models]) if models
        else literal(0, Integer()),
        "status": health.status_part(table.c.status_code),
        "zero": table.c.zero_tokens,
        "bin": case((table.c.latency_bin.is_(None), 0), else_=table.c.latency_bin + 1),
        "bucket": bucket_index(table.c.slice, bounds, 0, len(bounds)),
        "completion": table.c.completion,
        "embedding": table.c.embedding,
    }
    groups = (
        select(*(value.label(name) for name, value in keys.items()),
               func.sum(table.c.requests).label("n"), func.min(table.c.oldest_in_flight).label("oldest"))
        .where(*in_plan, *conditions)
        .group_by(*keys.values())
        .cte("archived_health")
    )
    parts = health.summed_parts({name: groups.c[name] for name in keys}, groups.c.n, groups.c.oldest, BigInteger())
    if processing:
        overhead = schema.slice_processing
        values = {"bin": overhead.c.processing_bin + 1, "completion": overhead.c.completion,
                  "embedding": overhead.c.embedding}
        parts.append(
            health.part_select(health.PROCESSING, values, func.sum(overhead.c.requests),
                               cast(null(), BigInteger), BigInteger())
            .where(overhead.c.slice >= plan_.start, overhead.c.slice < plan_.end,
                   *_reach_conditions(overhead, scope, models))
            .group_by(*values.values())
        )
    return union_all(*parts)


@dataclass
class Archive:
    """An archive opened for reading (`open_archive`).

    A refresh reads the state row, then the window's sums: what only a sync changes
    (gaps, the catalogue as last seen) is read again only when the state row changed.
    """

    store: Store
    _known: tuple[State, list[tuple[int, int]], list[Mapping[str, Any]]] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.store.url

    def _current(self, conn) -> tuple[State | None, list[tuple[int, int]], list[Mapping[str, Any]]]:
        """The state row, the gaps and the last-seen catalogue rows (None: no sync yet)."""
        row = conn.execute(select(schema.state).where(schema.state.c.id == 1)).mappings().first()
        if row is None:
            return None, [], []
        state = State(**{key: value for key, value in row.items() if key != "id"})
        if self._known is None or self._known[0] != state:
            gaps = [tuple(gap) for gap in conn.execute(select(schema.gap.c.start, schema.gap.c.end))]
            orgs = [{"kind": "org", "id": org.id, "name": org.name} for org in conn.execute(select(schema.seen_org))]
            tokens = [{"kind": "token", **{k: v for k, v in token._mapping.items() if k != "last_seen"}}
                      for token in conn.execute(select(schema.seen_token))]
            self._known = (state, gaps, [*orgs, *tokens])
        return self._known

    def last_seen(self) -> list[Mapping[str, Any]]:
        with self.store.engine.connect() as conn:
            return self._current(conn)[2]

    def settled(self, scope: Scope, window: Window, cuts: Sequence[datetime], models: Sequence[str] | None,
                by_user_id: bool) -> Settled:
        with self.store.engine.connect() as conn:
            state, gaps, _seen = self._current(conn)
            if state is None:
                return Settled.empty(len(cuts), window_ranges(window), notices=(EMPTY_NOTICE,))
            chosen = plan(window, state, gaps, cuts)
            if chosen is None:
                return Settled.empty(len(cuts), window_ranges(window))
            zone = window.start.tzinfo
            return dataclasses.replace(
                _sums(conn, chosen, scope, cuts, models, by_user_id), notices=chosen.notices,
                unrecorded=tuple((instant(a).astimezone(zone), instant(b).astimezone(zone))
                                 for a, b in chosen.unrecorded if a < b))

    def settled_health(self, scope: Scope, window: Window, models: Sequence[str] | None,
                       processing: bool) -> SettledHealth:
        with self.store.engine.connect() as conn:
            state, gaps, _seen = self._current(conn)
            if state is None:
                return SettledHealth(rows=(), gateway_ranges=window_ranges(window), notices=(EMPTY_NOTICE,))
            if state.health_from is None:
                # No health kept (no sync with health yet): the gateway alone, as without
                # an archive.
                return SettledHealth(rows=(), gateway_ranges=window_ranges(window))
            chosen = plan(window, state, gaps, window.edges)
            if chosen is None:
                return SettledHealth(rows=(), gateway_ranges=window_ranges(window))
            statement = _health_statement(chosen, scope, models, window.edges, processing)
            rows = () if statement is None else tuple(conn.execute(statement).all())
        last = health.COLUMNS.index("oldest")
        notices, unrecorded = _health_gap(chosen, state, window)
        zone = window.start.tzinfo
        held_from = math.inf if state.gateway_oldest is None else state.gateway_oldest
        return SettledHealth(
            rows=tuple((*row[:last], None if row[last] is None else from_micros(row[last])) for row in rows),
            gateway_ranges=chosen.gateway_ranges, notices=(*chosen.notices, *notices),
            unrecorded=tuple((instant(a).astimezone(zone), instant(b).astimezone(zone))
                             for a, b in (*chosen.unrecorded, *unrecorded) if a < b),
            beyond_gateway=epoch(window.start) < held_from and state.first_slice < held_from)

    def close(self) -> None:
        self.store.close()


def open_archive(url: str) -> Archive:
    """Open the archive at `url` (SQLAlchemy URL or SQLite path) for reading, or raise
    `UsageError` (missing, not migrated, unreachable)."""
    return Archive(open_store(url, writable=False))
