"""GPU serial: the board serial NVML reports (what an RMA asks for), beside index, bus id, UUID.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 08:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: agents before wire v1's GpuSample.serial, and GPUs without an inforom, send none.
    with op.batch_alter_table("gpus", schema=None) as batch_op:
        batch_op.add_column(sa.Column("serial", sa.String(length=512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gpus", schema=None) as batch_op:
        batch_op.drop_column("serial")
