"""The archive's tables (docs/history.md). Alembic migrations (`migrations/`) create and
change them; this module is what the code reads and writes, and must match the head.

Times are integers: seconds since the epoch (UTC). A slice is 15 minutes aligned to UTC
(`SLICE`); `hour_token` and `day_token` hold whole UTC hours and days under the same
column name `slice`.
Nothing is NULL-keyed except what the gateway itself leaves NULL (user_id, status code).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, SmallInteger, String, Table, Text

SLICE = 15 * 60
HOUR = 60 * 60
DAY = 24 * HOUR

metadata = MetaData()

#: One row: every slice before `watermark` is complete (the only slices a reader reads).
state = Table(
    "archive_state",
    metadata,
    Column("id", Integer, primary_key=True),
    #: The first slice the archive holds (history starts here).
    Column("first_slice", BigInteger, nullable=False),
    Column("watermark", BigInteger, nullable=False),
    #: The gateway's oldest request at the last sync (None: it held none).
    Column("gateway_oldest", BigInteger),
    Column("settle_seconds", Integer, nullable=False),
    Column("synced_at", BigInteger, nullable=False),
    #: The first slice with health records (`slice_health`); NULL: the archive keeps no
    #: health (no sync with `health` yet). Slices synced before it have none.
    Column("health_from", BigInteger),
)

#: Slices the archive cannot hold: the gateway deleted their requests before a sync.
gap = Table(
    "archive_gap",
    metadata,
    Column("start", BigInteger, primary_key=True),
    Column("end", BigInteger, nullable=False),
)


def _measures(failed: bool) -> list[Column]:
    columns = [Column("requests", BigInteger, nullable=False)]
    if failed:
        columns.append(Column("failed", BigInteger, nullable=False))
    return columns + [
        Column("input_tokens", BigInteger, nullable=False),
        Column("output_tokens", BigInteger, nullable=False),
        #: Response-time sums and counts of completion / embedding paths (SPEC §3's
        #: case-insensitive LIKE, applied at sync: a request's path never changes).
        Column("completion_ms_sum", BigInteger, nullable=False),
        Column("completion_n", BigInteger, nullable=False),
        Column("embedding_ms_sum", BigInteger, nullable=False),
        Column("embedding_n", BigInteger, nullable=False),
    ]


#: The finest grain: per slice, token, model, user_id and status code.
slice_detail = Table(
    "slice_detail",
    metadata,
    Column("slice", BigInteger, nullable=False),
    Column("token_id", Integer, nullable=False),
    #: The gateway's model, '' for NULL (as the figures count it).
    Column("model", Text, nullable=False),
    Column("user_id", Text),
    Column("status_code", Integer),
    *_measures(failed=False),
    Index("slice_detail_slice", "slice"),
    Index("slice_detail_token", "token_id", "slice"),
    Index("slice_detail_user_id", "user_id", "slice"),
)

#: Health (core/health.py) per slice, token, model, user_id, status code, path kind,
#: whether both token counts are 0 and latency bin (`core.latency`; NULL: no response
#: time): the health statement's grain plus what the viewer's reach needs.
slice_health = Table(
    "slice_health",
    metadata,
    Column("slice", BigInteger, nullable=False),
    Column("token_id", Integer, nullable=False),
    Column("model", Text, nullable=False),
    Column("user_id", Text),
    Column("status_code", Integer),
    #: 1 when the path is a completion (embedding) by SPEC's rule, else 0.
    Column("completion", SmallInteger, nullable=False),
    Column("embedding", SmallInteger, nullable=False),
    Column("zero_tokens", SmallInteger, nullable=False),
    Column("latency_bin", SmallInteger),
    Column("requests", BigInteger, nullable=False),
    #: Requests still without a status when their slice settled: the earliest one's
    #: timestamp, microseconds since the epoch (NULL for every other status).
    Column("oldest_in_flight", BigInteger),
    Index("slice_health_slice", "slice"),
    Index("slice_health_token", "token_id", "slice"),
)

#: Gateway overhead: requests with a `processing_time_ms` per slice, token, model,
#: user_id, path kind and its latency bin (none when the gateway does not log it).
slice_processing = Table(
    "slice_processing",
    metadata,
    Column("slice", BigInteger, nullable=False),
    Column("token_id", Integer, nullable=False),
    Column("model", Text, nullable=False),
    Column("user_id", Text),
    Column("completion", SmallInteger, nullable=False),
    Column("embedding", SmallInteger, nullable=False),
    Column("processing_bin", SmallInteger, nullable=False),
    Column("requests", BigInteger, nullable=False),
    Index("slice_processing_slice", "slice"),
    Index("slice_processing_token", "token_id", "slice"),
)


def _token_table(name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("slice", BigInteger, primary_key=True),
        Column("token_id", Integer, primary_key=True),
        Column("model", Text, primary_key=True),
        *_measures(failed=True),
        Index(f"{name}_token", "token_id", "slice"),
        # SQLite: rows stored in key order, so a range of slices is read in one sweep.
        sqlite_with_rowid=False,
    )


#: Per slice, token and model: what every refresh without a user_id reads; and the same
#: summed per whole UTC hour and per UTC day (`slice` is the hour's or day's start).
slice_token = _token_table("slice_token")
hour_token = _token_table("hour_token")
day_token = _token_table("day_token")

#: The token tables by the length of their rows' time, coarsest first.
TOKEN_TABLES = {DAY: day_token, HOUR: hour_token, SLICE: slice_token}

#: The gateway's catalogue as last seen: a token deleted since keeps its last org.
seen_org = Table(
    "seen_org",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False),
    Column("last_seen", BigInteger, nullable=False),
)

seen_token = Table(
    "seen_token",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False),
    Column("owner_id", Integer),
    Column("owner_email", String),
    Column("owner_org_id", Integer),
    Column("sa_id", Integer),
    Column("sa_name", String),
    Column("sa_team_id", Integer),
    Column("sa_org_id", Integer),
    Column("last_seen", BigInteger, nullable=False),
)

MEASURES = [column.name for column in slice_token.columns if column.name not in ("slice", "token_id", "model")]
DETAIL_MEASURES = [name for name in MEASURES if name != "failed"]
