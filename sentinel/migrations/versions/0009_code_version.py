"""Code versions: each rank's current code version and the one its checkpoint advanced under.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: agents before wire v1's HeartbeatSummary.code_version, and jobs whose heartbeat
    # client is given no version, send none.
    with op.batch_alter_table("job_ranks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code_version", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("checkpoint_version", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_ranks", schema=None) as batch_op:
        batch_op.drop_column("checkpoint_version")
        batch_op.drop_column("code_version")
