"""BENCHMARK-ONLY CODE: a straightforward per-figure implementation, for comparison.

This is what a simple port of the gateway's own usage page would do (think of a Django
view with one ORM query per figure): look the viewer up piece by piece, then send one
SQL statement per figure, each repeating the scope joins
(request -> token -> owner's profile -> org, token -> service account -> team) and
filters. Every statement reads the window's rows again.

It exists so that `benchmarks/refresh.py` can time the same figures computed the simple
way on the same data, and check that `usage_lib.core.usage.compute_usage` gives the same
numbers. It is not used by the dashboard and is not a reference for the access rules
(it only handles what the benchmark asks: no fallbacks, no URL parsing, UTC buckets).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

import pandas as pd
from sqlalchemy import and_, func, or_, select

from usage_lib.gateway.db import Database
from usage_lib.gateway.schema import (
    auth_group,
    auth_user,
    auth_user_groups,
    management_org as org_t,
    management_request as r,
    management_serviceaccount as sa_t,
    management_team as team_t,
    management_teammembership as membership_t,
    management_token as token_t,
    management_userprofile as profile_t,
)
from usage_lib.core.spans import SPANS, window as make_window, zone


@dataclass
class NaiveFigures:
    metrics: dict
    timeseries: list[int]
    models: dict[str, int]
    top_kind: str
    top: dict  # id -> (requests, input_tokens, output_tokens)


def _bucket_key(db: Database, unit: str):
    """The bucket a row falls in, truncated in UTC (the gateway's Trunc* functions)."""
    if db.dialect == "postgresql":
        return func.date_trunc(unit, r.c.timestamp)
    fmt = {"minute": "%Y-%m-%d %H:%M:00", "hour": "%Y-%m-%d %H:00:00", "day": "%Y-%m-%d 00:00:00"}[unit]
    return func.strftime(fmt, r.c.timestamp)


def naive_usage(
    db: Database,
    viewer: str,
    *,
    org: object = None,
    span: str = "1d",
    token: int | None = None,
    top: int = 100,
    now: datetime,
    models: Sequence[str] | None,
) -> NaiveFigures:
    """The dashboard's figures, one query per figure. UTC only."""
    win = make_window(span, now, zone("UTC"))
    with db.connect() as conn:
        # --- who is looking: one query per piece, as an ORM would load them
        user = conn.execute(
            select(auth_user.c.id, auth_user.c.email).where(
                or_(auth_user.c.email == viewer, auth_user.c.username == viewer)
            )
        ).one()
        groups = set(conn.execute(
            select(auth_group.c.name)
            .join(auth_user_groups, auth_user_groups.c.group_id == auth_group.c.id)
            .where(auth_user_groups.c.user_id == user.id)
        ).scalars())
        profile = conn.execute(
            select(profile_t.c.id, profile_t.c.org_id).where(profile_t.c.user_id == user.id)
        ).one()
        team_ids = list(conn.execute(
            select(membership_t.c.team_id).where(membership_t.c.user_profile_id == profile.id)
        ).scalars())
        orgs = {row.id: row.name for row in conn.execute(select(org_t.c.id, org_t.c.name))}
        role = "admin" if "admin" in groups else "org-admin" if "org-admin" in groups else "user"
        if role != "admin" or org is None:
            org_id = profile.org_id
        elif org == "all":
            org_id = None
        else:
            org_id = int(org)

        # --- the scope, as joins and filters repeated in every figure's query
        owner_profile = profile_t.alias("owner_profile")
        owner_org = org_t.alias("owner_org")
        sa_team = team_t.alias("sa_team")
        joined = (
            r.join(token_t, token_t.c.id == r.c.token_id)
            .join(auth_user, auth_user.c.id == token_t.c.user_id)
            .outerjoin(owner_profile, owner_profile.c.user_id == token_t.c.user_id)
            .outerjoin(owner_org, owner_org.c.id == owner_profile.c.org_id)
            .outerjoin(sa_t, sa_t.c.id == token_t.c.service_account_id)
            .outerjoin(sa_team, sa_team.c.id == sa_t.c.team_id)
        )
        where = [r.c.timestamp >= db.timestamp_bound(win.start)]
        if models is not None:
            where.append(r.c.model.in_(list(models)))
        if role == "admin" and org_id is None:
            pass
        elif role in ("admin", "org-admin"):
            where.append(or_(owner_profile.c.org_id == org_id, sa_team.c.org_id == org_id))
        else:
            reach = [token_t.c.user_id == user.id]
            if team_ids:
                reach.append(sa_t.c.team_id.in_(team_ids))
            if user.email and db.has_user_id:
                reach.append(and_(r.c.user_id == user.email, owner_profile.c.org_id == profile.org_id))
            where.append(or_(*reach))
        if token is not None:
            where.append(r.c.token_id == token)

        def scoped(*columns):
            return select(*columns).select_from(joined).where(*where)

        # --- one query per figure
        total = conn.execute(scoped(func.count())).scalar_one()
        failed = conn.execute(scoped(func.count()).where(r.c.status_code >= 400)).scalar_one()
        avg_completion = conn.execute(
            scoped(func.avg(r.c.response_time_ms)).where(r.c.path.ilike("%completion%"))
        ).scalar_one()
        avg_embedding = conn.execute(
            scoped(func.avg(r.c.response_time_ms)).where(r.c.path.ilike("%embedding%"))
        ).scalar_one()
        sums = conn.execute(scoped(func.sum(r.c.input_tokens), func.sum(r.c.output_tokens))).one()

        bucket = _bucket_key(db, SPANS[span].bucket_unit).label("bucket")
        per_bucket = dict(conn.execute(scoped(bucket, func.count()).group_by(bucket)).all())
        starts = [s.astimezone(timezone.utc) for s in win.starts]
        series = []
        for start in starts:
            key = start if db.dialect == "postgresql" else start.strftime("%Y-%m-%d %H:%M:%S")
            series.append(int(per_bucket.get(key, 0)))

        model_col = r.c.model if models is not None else func.coalesce(r.c.model, "")
        per_model = {
            (name if name is not None else ""): int(count)
            for name, count in conn.execute(
                scoped(model_col.label("model"), func.count()).group_by(model_col)
            ).all()
        }
        for name in models or ():
            per_model.setdefault(name, 0)

        if org_id is None:
            kind, key_cols = "org", (owner_org.c.id, owner_org.c.name)
        elif token is None:
            kind, key_cols = "token", (token_t.c.id, token_t.c.name, auth_user.c.email, sa_t.c.name)
        else:
            kind, key_cols = "user_id", (r.c.user_id,)
        count = func.count().label("requests")
        rows = conn.execute(
            scoped(*key_cols, count, func.sum(r.c.input_tokens), func.sum(r.c.output_tokens))
            .group_by(*key_cols)
            .order_by(count.desc())
            .limit(top)
        ).all()
        table = {row[0]: (int(row[-3]), int(row[-2]), int(row[-1])) for row in rows}

    return NaiveFigures(
        metrics={
            "total_requests": int(total),
            "failed_requests": int(failed),
            "avg_response_ms_completion": float(avg_completion or 0.0),
            "avg_response_ms_embedding": float(avg_embedding or 0.0),
            "input_tokens": int(sums[0] or 0),
            "output_tokens": int(sums[1] or 0),
        },
        timeseries=series,
        models=per_model,
        top_kind=kind,
        top=table,
    )


def differences(ours, naive: NaiveFigures) -> list[str]:
    """What differs between `compute_usage`'s Usage and the naive figures (empty: same)."""
    problems = []
    mine = ours.metrics.as_dict()
    for name, value in naive.metrics.items():
        theirs = mine[name]
        same = abs(theirs - value) <= 1e-6 * max(1.0, abs(value)) if isinstance(value, float) else theirs == value
        if not same:
            problems.append(f"metric {name}: ours {theirs} naive {value}")
    series = [int(v) for v in ours.timeseries["requests"]]
    if series != naive.timeseries:
        problems.append(f"timeseries: ours {series} naive {naive.timeseries}")
    models = dict(zip(ours.models["model"], (int(v) for v in ours.models["requests"])))
    # Known models without requests: ours lists them at 0; the naive count only has the
    # configured ones (it does not look up the table's models without a configuration).
    models = {name: count for name, count in models.items() if count or name in naive.models}
    if models != naive.models:
        problems.append(f"models: ours {models} naive {naive.models}")
    if ours.top_kind != naive.top_kind:
        problems.append(f"top kind: ours {ours.top_kind} naive {naive.top_kind}")
    def key(value):
        if ours.top_kind == "user_id":
            return value
        return None if pd.isna(value) else int(value)

    table = {
        key(row["id"]): (int(row["requests"]), int(row["input_tokens"]), int(row["output_tokens"]))
        for row in ours.top.to_dict("records")
    }
    if table != naive.top:
        problems.append(f"top table: ours {table} naive {naive.top}")
    return problems
