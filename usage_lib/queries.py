"""SQL for one refresh: three statements, built from a scope, never from widgets.

1. `viewer_statement`: the viewer's user row with groups, profile org and teams.
2. `catalogue_statement`: every org and every token with owner, owner's org and service
   account (small tables), plus the distinct models of the request table when no router
   configuration is given.
3. `usage_statement`: one pass over the request window, grouped by (bucket, model, key),
   from which `report` derives every figure.
"""

from __future__ import annotations

from typing import Sequence

from sqlalchemy import (
    Integer,
    Select,
    String,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)

from usage_lib.access import Reach, Scope
from usage_lib.db import Database
from usage_lib.schema import (
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
from usage_lib.timebuckets import Window

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


def catalogue_statement(with_table_models: bool) -> Select:
    """Orgs (kind 'org'), tokens (kind 'token') and, if asked, table models (kind 'model')."""
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
    parts = [orgs, tokens]
    if with_table_models:
        models = known_models_cte()
        parts.append(
            select(
                literal("model").label("kind"),
                _null(Integer).label("id"),
                models.c.model.label("name"),
                *(_null(t).label(n) for n, t in (
                    ("owner_id", Integer), ("owner_email", String), ("owner_org_id", Integer),
                    ("sa_id", Integer), ("sa_name", String), ("sa_team_id", Integer),
                    ("sa_org_id", Integer),
                )),
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


def bucket_expression(db: Database, window: Window):
    """Index of the chart bucket a row falls in; NULL after the last one (clock skew)."""
    return case(
        *(
            (request.c.timestamp < db.timestamp_bound(edge), index)
            for index, edge in enumerate(window.edges)
        ),
        else_=null(),
    )


def usage_statement(
    db: Database,
    scope: Scope,
    window: Window,
    models: Sequence[str] | None,
) -> Select:
    """One pass over the window: counts and sums per (bucket, model, key).

    The key is the token id, or the `user_id` when a token is selected below an org.
    `models` restricts to the configured models; None counts every request.
    """
    by_user_id = scope.top_kind == "user_id" and db.has_user_id
    key = request.c.user_id if by_user_id else request.c.token_id
    model = request.c.model if models is not None else func.coalesce(request.c.model, "")
    completion = request.c.path.ilike(COMPLETION_PATH)
    embedding = request.c.path.ilike(EMBEDDING_PATH)

    conditions = [request.c.timestamp >= db.timestamp_bound(window.start)]
    if models is not None:
        conditions.append(request.c.model.in_(list(models)) if models else false())
    reach = reach_condition(scope.reach)
    if reach is not None:
        conditions.append(reach)
    if scope.token is not None:
        conditions.append(request.c.token_id == scope.token.id)

    rows = (
        select(
            bucket_expression(db, window).label("bucket"),
            model.label("model"),
            key.label("key"),
            case((request.c.status_code >= 400, 1), else_=0).label("failed"),
            func.coalesce(request.c.input_tokens, 0).label("input_tokens"),
            func.coalesce(request.c.output_tokens, 0).label("output_tokens"),
            case((completion, request.c.response_time_ms), else_=null()).label("completion_ms"),
            case((embedding, request.c.response_time_ms), else_=null()).label("embedding_ms"),
        )
        .where(*conditions)
        .subquery("window_rows")
    )
    # Grouping by the columns of a subquery keeps PostgreSQL from comparing the CASE
    # with its bound parameters twice.
    return select(
        rows.c.bucket,
        rows.c.model,
        rows.c.key,
        func.count().label("requests"),
        func.sum(rows.c.failed).label("failed"),
        func.sum(rows.c.input_tokens).label("input_tokens"),
        func.sum(rows.c.output_tokens).label("output_tokens"),
        func.sum(rows.c.completion_ms).label("completion_ms_sum"),
        func.count(rows.c.completion_ms).label("completion_n"),
        func.sum(rows.c.embedding_ms).label("embedding_ms_sum"),
        func.count(rows.c.embedding_ms).label("embedding_n"),
    ).group_by(rows.c.bucket, rows.c.model, rows.c.key)
