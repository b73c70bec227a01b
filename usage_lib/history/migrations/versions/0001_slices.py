"""The first archive: 15-minute slices, hourly and daily roll-ups, catalogue as last seen.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _measures(failed: bool) -> list[sa.Column]:
    names = ["requests", *(["failed"] if failed else []), "input_tokens", "output_tokens",
             "completion_ms_sum", "completion_n", "embedding_ms_sum", "embedding_n"]
    return [sa.Column(name, sa.BigInteger, nullable=False) for name in names]


def upgrade() -> None:
    op.create_table(
        "archive_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("first_slice", sa.BigInteger, nullable=False),
        sa.Column("watermark", sa.BigInteger, nullable=False),
        sa.Column("gateway_oldest", sa.BigInteger),
        sa.Column("settle_seconds", sa.Integer, nullable=False),
        sa.Column("synced_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "archive_gap",
        sa.Column("start", sa.BigInteger, primary_key=True),
        sa.Column("end", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "slice_detail",
        sa.Column("slice", sa.BigInteger, nullable=False),
        sa.Column("token_id", sa.Integer, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text),
        sa.Column("status_code", sa.Integer),
        *_measures(failed=False),
    )
    op.create_index("slice_detail_slice", "slice_detail", ["slice"])
    op.create_index("slice_detail_token", "slice_detail", ["token_id", "slice"])
    op.create_index("slice_detail_user_id", "slice_detail", ["user_id", "slice"])
    for name in ("slice_token", "hour_token", "day_token"):
        op.create_table(
            name,
            sa.Column("slice", sa.BigInteger, primary_key=True),
            sa.Column("token_id", sa.Integer, primary_key=True),
            sa.Column("model", sa.Text, primary_key=True),
            *_measures(failed=True),
            sqlite_with_rowid=False,
        )
        op.create_index(f"{name}_token", name, ["token_id", "slice"])
    op.create_table(
        "seen_org",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("last_seen", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "seen_token",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("owner_id", sa.Integer),
        sa.Column("owner_email", sa.String),
        sa.Column("owner_org_id", sa.Integer),
        sa.Column("sa_id", sa.Integer),
        sa.Column("sa_name", sa.String),
        sa.Column("sa_team_id", sa.Integer),
        sa.Column("sa_org_id", sa.Integer),
        sa.Column("last_seen", sa.BigInteger, nullable=False),
    )
