"""Proactive swap (issue 17): degraded findings, swap decisions, the hot-spare pool.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 08:10:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import sentinel.db.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> Any:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "degraded_findings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("host_id", sa.String(length=128), nullable=False),
        sa.Column("gpu", sa.String(length=64), nullable=True),
        sa.Column("indicator", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", _json(), nullable=False),
        sa.Column("open_key", sa.String(length=256), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("opened_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("resolved_at", sentinel.db.types.UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_degraded_findings")),
        sa.UniqueConstraint("open_key", name=op.f("uq_degraded_findings_open_key")),
    )
    with op.batch_alter_table("degraded_findings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_degraded_findings_host_id"), ["host_id"], unique=False)
    op.create_table(
        "swaps",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("finding_id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.String(length=128), nullable=True),
        sa.Column("host_id", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_step", sa.BigInteger(), nullable=True),
        sa.Column("checkpoint_step", sa.BigInteger(), nullable=True),
        sa.Column("spare_host", sa.String(length=128), nullable=True),
        sa.Column("outcome", _json(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("lease_until", sentinel.db.types.UtcDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["finding_id"],
            ["degraded_findings.id"],
            name=op.f("fk_swaps_finding_id_degraded_findings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_swaps")),
        sa.UniqueConstraint("finding_id", name=op.f("uq_swaps_finding_id")),
    )
    with op.batch_alter_table("swaps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_swaps_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_swaps_status"), ["status"], unique=False)
    op.create_table(
        "spares",
        sa.Column("host_id", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("added_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("host_id", name=op.f("pk_spares")),
    )


def downgrade() -> None:
    op.drop_table("spares")
    with op.batch_alter_table("swaps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_swaps_status"))
        batch_op.drop_index(batch_op.f("ix_swaps_job_id"))
    op.drop_table("swaps")
    with op.batch_alter_table("degraded_findings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_degraded_findings_host_id"))
    op.drop_table("degraded_findings")
