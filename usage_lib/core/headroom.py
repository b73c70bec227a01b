"""Rate-limit headroom (issue 15, item 5): each token's busiest minute of the window
against its effective per-minute limits, for org admins and global admins.

The gateway (0.1.18) limits requests, input tokens and output tokens per minute. Per
limit field separately, a service-account token takes its team's value, else the team's
org's; any other token its owner's profile's value, else the profile's org's; NULL at
both levels is no limit. It counts the last 60 seconds per token: the sums of input and
output tokens, and a weighted request count in which a request counts
1/`request_limit_multiplier` of its model (router config, default 1) and a request
without a model not at all.

We count per token and calendar minute of the window: the busiest calendar minute is a
lower bound of the busiest sliding 60 seconds the gateway saw (a burst straddling a
minute boundary is split in two). Minutes are UTC minutes; every real time zone is a
whole number of quarter hours off UTC, so they are the viewer's minutes too. The
requests are those of the usage statement (reach, configured models, selected token),
so a model outside the router config does not count here even though the gateway
counts it towards the limits.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from sqlalchemy import Float, Select, String, bindparam, case, func, literal, select

from usage_lib.core import queries
from usage_lib.core.access import Scope
from usage_lib.core.spans import Window
from usage_lib.gateway.db import Database
from usage_lib.gateway.schema import (
    management_org as org,
    management_request as request,
    management_serviceaccount as service_account,
    management_team as team,
    management_token as token,
    management_userprofile as profile,
)

#: A token within this share of one of its limits in its busiest minute is near it.
NEAR_LIMIT = 0.8

#: Per measure: the busiest minute's column, the effective limit's column, and the limit
#: column on orgs, teams and profiles (`schema.LIMIT_COLUMNS`).
MEASURES = (
    ("busiest_requests", "requests_limit", "requests_per_minute"),
    ("busiest_input_tokens", "input_limit", "input_tokens_per_minute"),
    ("busiest_output_tokens", "output_limit", "output_tokens_per_minute"),
)

COLUMNS = ("token_id", *(name for busiest, limit, _ in MEASURES for name in (busiest, limit)), "peak_share")


def read_headroom(conn, db: Database, scope: Scope, win: Window, models: Sequence[str] | None,
                  multipliers: Mapping[str, float]) -> pd.DataFrame | None:
    """Per token with requests in `win` within the viewer's reach: the busiest minute's
    weighted requests, input tokens and output tokens (each measure its own busiest
    minute), the token's effective limits, and `peak_share`, the largest busiest/limit
    over the limits it has (NaN: no limit at all). One statement.

    None when the gateway has no limit columns or the viewer is a standard user.
    `multipliers` are the router config's (`routerconfig.parse_request_multipliers`).
    """
    if not db.has_limits or scope.viewer.role == "user":
        return None
    shape, params = queries.statement_inputs(db, scope, models, queries.window_ranges(win), cuts=())
    weighted = sorted(multipliers.items())
    for index, (model, multiplier) in enumerate(weighted):
        params[f"weight_model_{index}"] = model
        params[f"weight_{index}"] = 1.0 / multiplier
    rows = conn.execute(_headroom_template(shape, len(weighted)), params).all()
    return _frame(rows)


def _frame(rows: Sequence[Sequence]) -> pd.DataFrame:
    """The result frame from the statement's rows (token id, then per measure the busiest
    minute and the limit), with `peak_share`."""
    raw = pd.DataFrame([tuple(row) for row in rows], columns=list(COLUMNS[:-1]))
    frame = pd.DataFrame({"token_id": raw["token_id"].astype("int64")})
    shares = {}
    for busiest, limit, _ in MEASURES:
        frame[busiest] = raw[busiest].astype("float64" if busiest == "busiest_requests" else "int64")
        frame[limit] = raw[limit].astype("Int64")
        limits = frame[limit].to_numpy(dtype=float, na_value=np.nan)
        shares[limit] = _share(frame[busiest].to_numpy(dtype=float), limits)
    frame["peak_share"] = pd.DataFrame(shares, index=frame.index).max(axis=1, skipna=True).astype("float64")
    return frame


def _share(busiest: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """busiest/limit; NaN without a limit; a limit of 0 is full (inf) once used."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isnan(limit), np.nan, busiest / limit)


def near_limit(frame: pd.DataFrame, threshold: float = NEAR_LIMIT) -> pd.DataFrame:
    """The tokens whose busiest minute reached `threshold` of a limit, largest share first
    (ties in token order)."""
    near = frame[frame["peak_share"] >= threshold]
    return near.sort_values("peak_share", ascending=False, kind="stable").reset_index(drop=True)


def _minute(dialect: str):
    """The request's UTC minute: naive-UTC text cut after the minutes on SQLite; on
    PostgreSQL (sessions pinned to UTC, `db.PG_SESSION_OPTIONS`) date_trunc."""
    if dialect == "sqlite":
        return func.substr(request.c.timestamp, 1, 16)
    return func.date_trunc("minute", request.c.timestamp)


def _weight(shape: queries.Shape, weighted: int):
    """What a request counts towards the request limit: 1/multiplier of its model, 1 by
    default, 0 without a model."""
    model = queries.model_expression(shape)
    # Named: an anonymous bind compared with the model would be called `model_<n>`, as
    # are the configured models' positions that `statement_inputs` binds.
    empty = bindparam("empty_model", "", type_=String())
    return case(
        (model == empty, literal(0.0, Float())),
        *((model == bindparam(f"weight_model_{index}", type_=String()), bindparam(f"weight_{index}", type_=Float()))
          for index in range(weighted)),
        else_=literal(1.0, Float()),
    )


def _effective_limit(column: str, sa_team, team_org, owner_profile, profile_org):
    """The gateway's limit rule for one field: a service-account token's team's value,
    else that team's org's; any other token's owner's profile's value, else its org's."""
    return case(
        (token.c.service_account_id.is_not(None), func.coalesce(sa_team.c[column], team_org.c[column])),
        else_=func.coalesce(owner_profile.c[column], profile_org.c[column]),
    )


@lru_cache(maxsize=256)
def _headroom_template(shape: queries.Shape, weighted: int) -> Select:
    """Three levels: per (token, minute) the window's sums, per token their maxima, then
    the token's effective limits from the small tables."""
    # On SQLite `+token_id`: grouped by the column itself, the planner reads the window
    # through the (token, timestamp) index for its order, a skip-scan that fetches the
    # table's rows token by token, out of order; the timestamp index reads them in
    # order (the global admin's week at 1M: 40% less time, alternated in one process).
    token_id = queries.no_affinity(request.c.token_id) if shape.dialect == "sqlite" else request.c.token_id
    rows = queries.grouping_fence(
        select(
            token_id.label("token_id"),
            _minute(shape.dialect).label("minute"),
            _weight(shape, weighted).label("weight"),
            request.c.input_tokens,
            request.c.output_tokens,
        ).where(*queries.window_conditions(shape)),
        shape.dialect,
    ).subquery("headroom_rows")
    per_minute = (
        select(
            rows.c.token_id,
            func.sum(rows.c.weight).label("requests"),
            func.sum(rows.c.input_tokens).label("input_tokens"),
            func.sum(rows.c.output_tokens).label("output_tokens"),
        )
        .group_by(rows.c.token_id, rows.c.minute)
        .subquery("per_minute")
    )
    busiest = (
        select(
            per_minute.c.token_id,
            func.max(per_minute.c.requests).label("requests"),
            func.max(per_minute.c.input_tokens).label("input_tokens"),
            func.max(per_minute.c.output_tokens).label("output_tokens"),
        )
        .group_by(per_minute.c.token_id)
        .subquery("busiest")
    )
    sa_team, team_org = team.alias("sa_team"), org.alias("team_org")
    owner_profile, profile_org = profile.alias("owner_profile"), org.alias("profile_org")
    limits = [_effective_limit(column, sa_team, team_org, owner_profile, profile_org) for _, _, column in MEASURES]
    return (
        select(
            busiest.c.token_id,
            busiest.c.requests, limits[0].label("requests_limit"),
            busiest.c.input_tokens, limits[1].label("input_limit"),
            busiest.c.output_tokens, limits[2].label("output_limit"),
        )
        .select_from(busiest)
        .outerjoin(token, token.c.id == busiest.c.token_id)
        .outerjoin(service_account, service_account.c.id == token.c.service_account_id)
        .outerjoin(sa_team, sa_team.c.id == service_account.c.team_id)
        .outerjoin(team_org, team_org.c.id == sa_team.c.org_id)
        .outerjoin(owner_profile, owner_profile.c.user_id == token.c.user_id)
        .outerjoin(profile_org, profile_org.c.id == owner_profile.c.org_id)
        .order_by(busiest.c.token_id)
    )
