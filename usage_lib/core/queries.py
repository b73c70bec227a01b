"""SQL for one refresh: three statements, built from a scope, never from widgets.

1. `viewer_statement`: the viewer's user row with groups, profile org and teams.
2. `catalogue_statement`: every org and every token with owner, owner's org and service
   account (small tables), plus the distinct models of the request table when no router
   configuration is given.
3. `usage_query`: one pass over the request window, grouped by (model, key) with
   running totals at each cut (the chart's bucket edges and the instants prices change),
   from which `usage.compute_usage` derives every figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Sequence

from sqlalchemy import (
    DateTime,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    cast,
    false,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    union_all,
)

from sqlalchemy.sql import operators
from sqlalchemy.sql.expression import UnaryExpression

from usage_lib.core.access import Reach, Scope
from usage_lib.gateway.db import Database
from usage_lib.gateway.schema import (
    auth_group,
    auth_user,
    auth_user_groups,
    management_org as org,
    management_request as request,
    management_serviceaccount as service_account,
    management_team as team,
    management_teammembership as membership,
    management_token as token,
    management_userprofile as profile,
)
from usage_lib.core.spans import Window

COMPLETION_PATH = "%completion%"
EMBEDDING_PATH = "%embedding%"


def viewer_statement(who: str) -> Select:
    """Every (group, profile org, team) combination of the users named `who`."""
    return (
        select(
            auth_user.c.id.label("user_id"),
            auth_user.c.username,
            auth_user.c.email,
            auth_user.c.is_active,
            auth_group.c.name.label("group_name"),
            profile.c.org_id,
            membership.c.team_id,
        )
        .select_from(auth_user)
        .outerjoin(auth_user_groups, auth_user_groups.c.user_id == auth_user.c.id)
        .outerjoin(auth_group, auth_group.c.id == auth_user_groups.c.group_id)
        .outerjoin(profile, profile.c.user_id == auth_user.c.id)
        .outerjoin(membership, membership.c.user_profile_id == profile.c.id)
        .where(or_(auth_user.c.email == who, auth_user.c.username == who))
    )


def _null(type_) -> object:
    # PostgreSQL needs typed NULLs to line up the columns of a UNION.
    return cast(null(), type_)


def known_models_cte():
    """Distinct non-empty models, found by hopping along the (model, timestamp) index.

    A plain DISTINCT reads the whole table; this reads one index entry per model.
    """
    hop = request.alias("hop")
    seed = select(func.min(request.c.model).label("model")).where(request.c.model > "")
    models = seed.cte("known_models", recursive=True)
    step = select(
        select(func.min(hop.c.model)).where(hop.c.model > models.c.model).scalar_subquery()
    ).where(models.c.model.is_not(None))
    return models.union_all(step)


#: The catalogue's columns after kind, id and name (NULL in rows other than tokens).
CATALOGUE_EXTRA = (
    ("owner_id", Integer), ("owner_email", String), ("owner_org_id", Integer),
    ("sa_id", Integer), ("sa_name", String), ("sa_team_id", Integer), ("sa_org_id", Integer),
)


def catalogue_statement(with_table_models: bool) -> Select:
    """Orgs (kind 'org'), tokens (kind 'token'), the oldest request's timestamp as text
    in `name` (kind 'oldest': where the gateway's memory begins) and, if asked, table
    models (kind 'model')."""
    owner_profile = profile.alias("owner_profile")
    sa_team = team.alias("sa_team")
    orgs = select(
        literal("org").label("kind"),
        org.c.id,
        org.c.name,
        _null(Integer).label("owner_id"),
        _null(String).label("owner_email"),
        _null(Integer).label("owner_org_id"),
        _null(Integer).label("sa_id"),
        _null(String).label("sa_name"),
        _null(Integer).label("sa_team_id"),
        _null(Integer).label("sa_org_id"),
    )
    tokens = (
        select(
            literal("token").label("kind"),
            token.c.id,
            token.c.name,
            token.c.user_id.label("owner_id"),
            auth_user.c.email.label("owner_email"),
            owner_profile.c.org_id.label("owner_org_id"),
            service_account.c.id.label("sa_id"),
            service_account.c.name.label("sa_name"),
            sa_team.c.id.label("sa_team_id"),
            sa_team.c.org_id.label("sa_org_id"),
        )
        .select_from(token)
        .outerjoin(auth_user, auth_user.c.id == token.c.user_id)
        .outerjoin(owner_profile, owner_profile.c.user_id == token.c.user_id)
        .outerjoin(service_account, service_account.c.id == token.c.service_account_id)
        .outerjoin(sa_team, sa_team.c.id == service_account.c.team_id)
    )
    oldest = select(
        literal("oldest").label("kind"),
        _null(Integer).label("id"),
        cast(select(func.min(request.c.timestamp)).scalar_subquery(), String).label("name"),
        *(_null(t).label(n) for n, t in CATALOGUE_EXTRA),
    )
    parts = [orgs, tokens, oldest]
    if with_table_models:
        models = known_models_cte()
        parts.append(
            select(
                literal("model").label("kind"),
                _null(Integer).label("id"),
                models.c.model.label("name"),
                *(_null(t).label(n) for n, t in CATALOGUE_EXTRA),
            ).where(models.c.model.is_not(None))
        )
    return union_all(*parts)


def reach_condition(reach: Reach):
    """The WHERE condition for the requests in a viewer's reach (None: no condition)."""
    if reach.everything:
        return None
    conditions = []
    if reach.token_ids:
        conditions.append(request.c.token_id.in_(sorted(reach.token_ids)))
    if reach.email and reach.email_token_ids:
        conditions.append(
            and_(
                request.c.user_id == reach.email,
                request.c.token_id.in_(sorted(reach.email_token_ids)),
            )
        )
    if not conditions:
        return false()
    return or_(*conditions)


def bucket_index(timestamp, bounds: Sequence, low: int, high: int):
    """The number of `bounds` at or before `timestamp`, as a balanced tree of CASEs.

    About log2(len(bounds)) comparisons per row instead of up to len(bounds).
    """
    if low == high:
        return literal(low, Integer())
    middle = (low + high) // 2
    return case(
        (timestamp < bounds[middle], bucket_index(timestamp, bounds, low, middle)),
        else_=bucket_index(timestamp, bounds, middle + 1, high),
    )


def no_affinity(column):
    """`+column` (SQLite): the same value, without the column's type affinity, and a
    condition on it cannot use an index."""
    return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)


def grouping_fence(rows: Select, dialect: str) -> Select:
    """`rows` kept a subquery of its own (OFFSET 0) on PostgreSQL, for a statement that
    groups them by computed columns. Grouping the table by expressions of its columns,
    the planner multiplies those columns' distinct counts and expects about one group per
    row, so it sorts (spilling to disk) where hashing a few thousand groups would do; over
    a subquery's computed columns it assumes its default of 200 distinct values each and
    hashes. SQLite flattens the subquery as it was."""
    return rows.offset(literal_column("0")) if dialect == "postgresql" else rows


@dataclass(frozen=True)
class Shape:
    """Everything the usage statement's SQL text depends on; values are bound separately."""

    dialect: str
    cuts: int
    models: int | None  # None: no router configuration; else how many configured models
    by_user_id: bool
    reach_tokens: bool  # requests of listed tokens
    reach_email: bool  # requests of listed tokens whose user_id is the viewer's email
    everything: bool
    token: bool  # one token selected
    #: One entry per timestamp range read (`Reading.ranges`): whether it has an end.
    bounded: tuple[bool, ...]
    #: Names the bound values of the ranges and cuts (`period_<i>_`), so that several
    #: periods can share one statement.
    prefix: str = ""


Range = tuple[datetime, datetime | None]


def window_ranges(window: Window) -> tuple[Range, ...]:
    """The whole window as one timestamp range: `timestamp >= start`, and for a custom
    range also `timestamp < end` (`window.until`)."""
    return ((window.start, window.until),)


#: The running totals `usage_query` takes at each cut, in this order (`<name>_before_<i>`).
CUMULATIVE = ("requests", "input_tokens", "output_tokens")


def usage_query(
    db: Database,
    scope: Scope,
    models: Sequence[str] | None,
    periods: Sequence[tuple[Sequence[Range], Sequence[datetime]]],
) -> tuple[Select, dict[str, object]]:
    """The usage statement and its parameters: for each of the `periods` (a window and
    the period before it, compared with), one pass over its timestamp ranges
    (`[start, end)`, end None: no upper bound; the whole window, `window_ranges`, or
    with an archive only the parts the archive does not hold: a head and a tail), counts
    and sums per (model, key), and running totals at its cuts (ascending instants: the
    bucket edges and the instants prices change). The periods' parts are one statement
    (UNION ALL): one round trip, one statement in the refresh's budget.

    The key is the token id, or the `user_id` when a token is selected below an org.
    `models` restricts to the configured models; None counts every request.

    Result columns: period (its index in `periods`), model, key, requests, failed,
    input_tokens, output_tokens, completion_ms_sum, completion_n, embedding_ms_sum,
    embedding_n, then for each of `CUMULATIVE` one column `<name>_before_<i>` per cut
    (as many as the period with the most cuts; 0 past a period's own): the group's
    requests (input tokens, output tokens) stamped before cut i, so the time between
    cuts i-1 and i holds `requests_before_<i> - requests_before_<i-1>`.

    Two levels, for speed at millions of rows:

    - the inner level reads each row of the window once and groups by plain columns
      (model, key and the raw `path`): cheap to hash or sort, and PostgreSQL's
      estimate of the number of groups comes from column statistics, so it plans a
      small (and parallel) hash aggregate. Grouping by a CASE over the timestamp made
      it expect one group per row and sort on disk.
    - the outer level works on those few groups only: it classifies paths with the
      same case-insensitive LIKE as before (once per group, not per row) and sums up.

    PostgreSQL takes the running totals with one `count(*) FILTER (WHERE timestamp <
    cut)` (and `sum(...) FILTER`) per cut; SQLite (no hash aggregation: it sorts) puts a
    cut index (a balanced CASE tree over the cuts) into a small integer sort key with
    the model's position in the configuration, and the outer level turns cut indexes
    into those totals.

    The statement depends only on the shape of the request (dialect, number of buckets
    and models, kind of reach) and is built once per shape: building and hashing a new
    SQLAlchemy statement on every refresh cost several milliseconds.
    """
    width = max(len(cuts) for _ranges, cuts in periods)
    parts, params = [], {}
    for index, (ranges, cuts) in enumerate(periods):
        shape, values = statement_inputs(db, scope, models, ranges, cuts, prefix=f"period_{index}_")
        parts.append(_period_part(_usage_template(shape), index, len(cuts), width))
        params.update(values)
    return (parts[0] if len(parts) == 1 else union_all(*parts)), params


def _period_part(template: Select, index: int, cuts: int, width: int) -> Select:
    """One period's statement with its index first and its running totals padded with 0
    to `width` cuts per measure."""
    rows = template.subquery(f"period_{index}")
    before = [rows.c[f"{name}_before_{cut}"] if cut < cuts else literal(0).label(f"{name}_before_{cut}")
              for name in CUMULATIVE for cut in range(width)]
    fixed = [column for column in rows.c if "_before_" not in column.name]
    return select(literal(index).label("period"), *fixed, *before)


def statement_inputs(
    db: Database, scope: Scope, models: Sequence[str] | None, ranges: Sequence[Range], cuts: Sequence[datetime],
    prefix: str = "",
) -> tuple[Shape, dict[str, object]]:
    """The shape of a statement over the request table for `scope` (what its SQL text
    depends on) and the values bound into it: the timestamp `ranges`, the `cuts`, the
    configured `models`, the reach and the selected token (`window_conditions`)."""
    reach = scope.reach
    ranges, cuts = tuple(ranges), tuple(cuts)
    shape = Shape(
        dialect=db.dialect,
        cuts=len(cuts),
        models=None if models is None else len(models),
        by_user_id=scope.top_kind == "user_id" and db.has_user_id,
        reach_tokens=not reach.everything and bool(reach.token_ids),
        reach_email=not reach.everything and bool(reach.email and reach.email_token_ids),
        everything=reach.everything,
        token=scope.token is not None,
        bounded=tuple(end is not None for _start, end in ranges),
        prefix=prefix,
    )
    params: dict[str, object] = {}
    for index, (start, end) in enumerate(ranges):
        params[f"{prefix}start_{index}"] = db.timestamp_bound(start).value
        if end is not None:
            params[f"{prefix}end_{index}"] = db.timestamp_bound(end).value
    for index, cut in enumerate(cuts):
        params[f"{prefix}cut_{index}"] = db.timestamp_bound(cut).value
    if models:
        params["models"] = list(models)
        for index, name in enumerate(models):
            params[f"model_{index}"] = name
    if shape.reach_tokens:
        params["reach_tokens"] = sorted(reach.token_ids)
    if shape.reach_email:
        params["email"] = reach.email
        params["email_tokens"] = sorted(reach.email_token_ids)
    if shape.token:
        params["token"] = scope.token.id
    return shape, params


def _timestamp_type(dialect: str):
    return String() if dialect == "sqlite" else DateTime(timezone=True)


@lru_cache(maxsize=256)
def _usage_template(shape: Shape) -> Select:
    stamp = _timestamp_type(shape.dialect)
    key = request.c.user_id if shape.by_user_id else request.c.token_id
    cuts = [bindparam(f"{shape.prefix}cut_{index}", type_=stamp) for index in range(shape.cuts)]

    conditions = window_conditions(shape)
    model = model_expression(shape)
    if shape.dialect == "sqlite":
        return _usage_sqlite(key, model, cuts, shape.models, conditions)

    before = [
        measure.filter(request.c.timestamp < cut).label(f"{name}_before_{index}")
        for name, measure in zip(CUMULATIVE, (func.count(), func.sum(request.c.input_tokens),
                                              func.sum(request.c.output_tokens)))
        for index, cut in enumerate(cuts)
    ]
    failed = func.count().filter(request.c.status_code >= 400)
    rows = (
        select(model.label("model"), key.label("key"), request.c.path, *_inner_sums(failed), *before)
        .where(*conditions)
        .group_by(model, key, request.c.path)
        .subquery("window_groups")
    )
    return select(
        rows.c.model,
        rows.c.key,
        *_summary_columns(rows, rows.c.path),
        *(func.sum(rows.c[column.name]).label(column.name) for column in before),
    ).group_by(rows.c.model, rows.c.key)


def model_expression(shape: Shape):
    """The request's model as counted: empty for NULL when every request counts (no
    router configuration), as the configured models never match NULL."""
    return request.c.model if shape.models is not None else func.coalesce(request.c.model, "")


def window_conditions(shape: Shape) -> list:
    """The WHERE conditions of a statement of `shape` (`statement_inputs`): the
    timestamp ranges, the configured models, the viewer's reach, the selected token."""
    # On SQLite, `+column` keeps a condition from choosing an index: the model filter
    # would otherwise pick the (model, timestamp) index, whose per-model ranges read the
    # table out of order (slower than the timestamp index), and the email match the
    # user_id index, which covers all of history rather than the window. The time
    # window (timestamp or (token, timestamp) index) always bounds what is read.
    sqlite = shape.dialect == "sqlite"
    model_column = no_affinity(request.c.model) if sqlite else request.c.model
    user_id_column = no_affinity(request.c.user_id) if sqlite else request.c.user_id
    stamp = _timestamp_type(shape.dialect)
    conditions = [_time_condition(shape.bounded, stamp, shape.prefix)]
    if shape.models is not None:
        conditions.append(
            model_column.in_(bindparam("models", expanding=True, type_=String())) if shape.models else false()
        )
    if not shape.everything:
        reach = []
        # Both kinds of reach on SQLite: no index for the OR (a "multi-index OR" collects
        # every matching rowid in memory: memory would grow with the rows); it filters
        # the window read through the timestamp index instead.
        token_column = no_affinity(request.c.token_id) if sqlite and shape.reach_email else request.c.token_id
        if shape.reach_tokens:
            reach.append(token_column.in_(bindparam("reach_tokens", expanding=True, type_=Integer())))
        if shape.reach_email:
            reach.append(and_(
                user_id_column == bindparam("email", type_=String()),
                token_column.in_(bindparam("email_tokens", expanding=True, type_=Integer())),
            ))
        conditions.append(or_(*reach) if reach else false())
    if shape.token:
        conditions.append(request.c.token_id == bindparam("token", type_=Integer()))
    return conditions


def _time_condition(bounded: tuple[bool, ...], stamp, prefix: str):
    """`start_i <= timestamp [< end_i]` for each range, OR-ed: each is an index range scan
    (presets have no upper bound, as on the gateway's page)."""
    ranges = []
    for index, has_end in enumerate(bounded):
        parts = [request.c.timestamp >= bindparam(f"{prefix}start_{index}", type_=stamp)]
        if has_end:
            parts.append(request.c.timestamp < bindparam(f"{prefix}end_{index}", type_=stamp))
        ranges.append(and_(*parts))
    if not ranges:
        return false()
    return ranges[0] if len(ranges) == 1 else or_(*ranges)


def _summary_columns(rows, ilike_source):
    """The outer level's sums over the inner groups; avg inputs split by path (ILIKE)."""
    completion = ilike_source.ilike(COMPLETION_PATH)
    embedding = ilike_source.ilike(EMBEDDING_PATH)
    return [
        func.sum(rows.c.requests).label("requests"),
        func.sum(rows.c.failed).label("failed"),
        func.sum(rows.c.input_tokens).label("input_tokens"),
        func.sum(rows.c.output_tokens).label("output_tokens"),
        func.sum(case((completion, rows.c.ms_sum), else_=null())).label("completion_ms_sum"),
        func.sum(case((completion, rows.c.ms_n), else_=0)).label("completion_n"),
        func.sum(case((embedding, rows.c.ms_sum), else_=null())).label("embedding_ms_sum"),
        func.sum(case((embedding, rows.c.ms_n), else_=0)).label("embedding_n"),
    ]


def _inner_sums(failed):
    return [
        func.count().label("requests"),
        failed.label("failed"),
        func.sum(request.c.input_tokens).label("input_tokens"),
        func.sum(request.c.output_tokens).label("output_tokens"),
        func.sum(request.c.response_time_ms).label("ms_sum"),
        func.count(request.c.response_time_ms).label("ms_n"),
    ]


def _usage_sqlite(key, model, cuts, models: int | None, conditions) -> Select:
    # `+timestamp` has no type affinity: compared with the text bounds as text, as the
    # column itself is (its NUMERIC affinity made SQLite try to read every bound as a
    # number on every comparison), and it keeps the CASE off the index.
    bucket = bucket_index(no_affinity(request.c.timestamp), cuts, 0, len(cuts))
    failed = func.sum(case((request.c.status_code >= 400, 1), else_=0))
    if models:
        # One small integer sort key: bucket and the model's position in the
        # configuration (the WHERE keeps only configured models).
        names = [bindparam(f"model_{index}", type_=String()) for index in range(models)]
        positions = case(*((model == name, index) for index, name in enumerate(names)), else_=-1)
        slot = (bucket * models + positions).label("slot")
        rows = (
            select(slot, key.label("key"), request.c.path, *_inner_sums(failed))
            .where(*conditions)
            .group_by(literal_column("slot"), key, request.c.path)
            .subquery("window_groups")
        )
        model_out = case(*(((rows.c.slot % models) == index, name) for index, name in enumerate(names)),
                         else_=null())
        model_group = rows.c.slot % models
        bucket_out = rows.c.slot // models
    else:
        rows = (
            select(bucket.label("bucket"), model.label("model"), key.label("key"), request.c.path,
                   *_inner_sums(failed))
            .where(*conditions)
            .group_by(literal_column("bucket"), model, key, request.c.path)
            .subquery("window_groups")
        )
        model_out = rows.c.model
        model_group = rows.c.model
        bucket_out = rows.c.bucket
    before = [
        func.sum(case((bucket_out <= index, rows.c[name]), else_=0)).label(f"{name}_before_{index}")
        for name in CUMULATIVE
        for index in range(len(cuts))
    ]
    return select(
        model_out.label("model"),
        rows.c.key,
        *_summary_columns(rows, rows.c.path),
        *before,
    ).group_by(model_group, rows.c.key)
