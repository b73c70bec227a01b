"""Health per slice (`slice_health`, `slice_processing`) and where it starts.

Health is opt-in (`sync --health`): `archive_state.health_from` is NULL (no health
kept) until a sync with health sets it to the watermark it starts from (a new
archive's first slice); from then on every sync writes health. Archives synced by
revision 0001 keep their slices and start without health.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _keys() -> list[sa.Column]:
    return [
        sa.Column("slice", sa.BigInteger, nullable=False),
        sa.Column("token_id", sa.Integer, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text),
    ]


def _kinds() -> list[sa.Column]:
    return [sa.Column(name, sa.SmallInteger, nullable=False) for name in ("completion", "embedding")]


def upgrade() -> None:
    op.create_table(
        "slice_health",
        *_keys(),
        sa.Column("status_code", sa.Integer),
        *_kinds(),
        sa.Column("zero_tokens", sa.SmallInteger, nullable=False),
        sa.Column("latency_bin", sa.SmallInteger),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("oldest_in_flight", sa.BigInteger),
    )
    op.create_table(
        "slice_processing",
        *_keys(),
        *_kinds(),
        sa.Column("processing_bin", sa.SmallInteger, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
    )
    for name in ("slice_health", "slice_processing"):
        op.create_index(f"{name}_slice", name, ["slice"])
        op.create_index(f"{name}_token", name, ["token_id", "slice"])
    op.add_column("archive_state", sa.Column("health_from", sa.BigInteger))
