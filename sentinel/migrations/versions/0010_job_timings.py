"""Job timings: how long each rank took to start and to save and write its last checkpoint.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 14:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("startup_s", "checkpoint_save_s", "checkpoint_write_s")


def upgrade() -> None:
    # Nullable: older agents and heartbeat clients report none of them.
    with op.batch_alter_table("job_ranks", schema=None) as batch_op:
        for name in _COLUMNS:
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_ranks", schema=None) as batch_op:
        for name in reversed(_COLUMNS):
            batch_op.drop_column(name)
