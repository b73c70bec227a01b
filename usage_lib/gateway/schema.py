"""The Aqueduct gateway tables this project reads (SPEC §1), as SQLAlchemy Core tables.

Only the tables and columns the dashboard uses are declared; a real gateway has more,
and they are ignored. The demo generator creates exactly these tables and the gateway's
indexes from this metadata.

`management_request.timestamp` is declared as text-compatible on purpose: on SQLite
Django stores naive-UTC text in two forms, and the window filters compare that text
with bounds formatted by `usage_lib.gateway.db.Database.timestamp_bound`.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

auth_user = Table(
    "auth_user",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(150), nullable=False, unique=True),
    Column("email", String(254), nullable=False, default=""),
    Column("is_active", Boolean, nullable=False, default=True),
)

auth_group = Table(
    "auth_group",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(150), nullable=False, unique=True),
)

auth_user_groups = Table(
    "auth_user_groups",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("auth_user.id"), nullable=False),
    Column("group_id", Integer, ForeignKey("auth_group.id"), nullable=False),
)

#: Per-minute rate limits on orgs, teams and user profiles (NULL: no limit at that level).
LIMIT_COLUMNS = ("requests_per_minute", "input_tokens_per_minute", "output_tokens_per_minute")


def _limit_columns() -> list[Column]:
    return [Column(name, Integer, nullable=True) for name in LIMIT_COLUMNS]


management_org = Table(
    "management_org",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    *_limit_columns(),
)

management_team = Table(
    "management_team",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("org_id", Integer, ForeignKey("management_org.id"), nullable=False),
    *_limit_columns(),
)

management_userprofile = Table(
    "management_userprofile",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("auth_user.id"), nullable=False, unique=True),
    Column("org_id", Integer, ForeignKey("management_org.id"), nullable=False),
    *_limit_columns(),
)

management_teammembership = Table(
    "management_teammembership",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_profile_id", Integer, ForeignKey("management_userprofile.id"), nullable=False),
    Column("team_id", Integer, ForeignKey("management_team.id"), nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
)

management_serviceaccount = Table(
    "management_serviceaccount",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("team_id", Integer, ForeignKey("management_team.id"), nullable=False),
)

management_token = Table(
    "management_token",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("user_id", Integer, ForeignKey("auth_user.id"), nullable=False),
    Column(
        "service_account_id",
        Integer,
        ForeignKey("management_serviceaccount.id"),
        nullable=True,
    ),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
)

management_request = Table(
    "management_request",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_id", Integer, ForeignKey("management_token.id"), nullable=False),
    Column("timestamp", DateTime(timezone=True), nullable=False),
    Column("method", String(10), nullable=False, default="POST"),
    Column("path", String(255), nullable=False),
    Column("user_agent", Text, nullable=False, default=""),
    Column("ip_address", String(39), nullable=True),
    Column("model", String(255), nullable=True),
    Column("status_code", Integer, nullable=True),
    Column("response_time_ms", Integer, nullable=True),
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("user_id", String(255), nullable=False, default=""),
    # Upcoming gateways: time spent in the gateway before the upstream call.
    Column("processing_time_ms", Integer, nullable=True),
)

Index("management_request_timestamp_idx", management_request.c.timestamp)
Index(
    "management_request_token_ts_idx",
    management_request.c.token_id,
    management_request.c.timestamp,
)
Index(
    "management_request_model_ts_idx",
    management_request.c.model,
    management_request.c.timestamp,
)
Index("management_request_user_id_idx", management_request.c.user_id)

#: Tables the dashboard cannot work without, and the columns it reads from each.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "auth_user": ("id", "username", "email", "is_active"),
    "auth_group": ("id", "name"),
    "auth_user_groups": ("user_id", "group_id"),
    "management_org": ("id", "name"),
    "management_team": ("id", "name", "org_id"),
    "management_userprofile": ("id", "user_id", "org_id"),
    "management_teammembership": ("user_profile_id", "team_id", "is_admin"),
    "management_serviceaccount": ("id", "name", "team_id"),
    "management_token": ("id", "name", "user_id", "service_account_id"),
    "management_request": (
        "id",
        "token_id",
        "timestamp",
        "model",
        "path",
        "status_code",
        "response_time_ms",
        "input_tokens",
        "output_tokens",
    ),
}

#: Present in recent gateways only; without it there is no user_id breakdown.
OPTIONAL_REQUEST_COLUMNS = ("user_id",)
#: Present in upcoming gateways only; without it the health view has no gateway overhead.
PROCESSING_TIME_COLUMN = "processing_time_ms"
#: The tables whose `LIMIT_COLUMNS` set a token's rate limits (all of them, or no limits).
LIMIT_TABLES = ("management_org", "management_team", "management_userprofile")
