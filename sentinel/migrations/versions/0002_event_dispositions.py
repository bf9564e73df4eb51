"""Event dispositions: what became of each hard-fault event (linked to an incident or dismissed).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 01:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sentinel.db.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_dispositions",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("host_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("observed_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("seen_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("incident_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_at", sentinel.db.types.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_event_dispositions_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_event_dispositions_incident_id_incidents"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_event_dispositions")),
    )
    with op.batch_alter_table("event_dispositions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_event_dispositions_incident_id"), ["incident_id"], unique=False
        )
        batch_op.create_index("ix_event_dispositions_role_seen", ["role", "seen_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("event_dispositions", schema=None) as batch_op:
        batch_op.drop_index("ix_event_dispositions_role_seen")
        batch_op.drop_index(batch_op.f("ix_event_dispositions_incident_id"))
    op.drop_table("event_dispositions")
