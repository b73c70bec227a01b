"""Health per slice (`slice_health`, `slice_processing`) and where it starts.

Archives synced by revision 0001 keep their slices; those have no health records, so
`archive_state.health_from` starts at their watermark (the first slice a sync of this
revision writes). A new archive's starts at its first slice.

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
    op.execute("UPDATE archive_state SET health_from = watermark")
    with op.batch_alter_table("archive_state") as batch:
        batch.alter_column("health_from", existing_type=sa.BigInteger, nullable=False)
