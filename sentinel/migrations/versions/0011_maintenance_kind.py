"""Maintenance kinds: hosts going down ("maintenance") or only the job's processes restarting
("restart", an operator's planned restart in place), which explains far less.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 17:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every window announced before this one took hosts down: "maintenance", as they were read.
    with op.batch_alter_table("maintenance", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), server_default="maintenance", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("maintenance", schema=None) as batch_op:
        batch_op.drop_column("kind")
