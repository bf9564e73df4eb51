"""The execution lease shared by decisions and swaps: one process claims an approved row."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession


async def claim_lease(
    session: AsyncSession,
    model: Any,
    row_id: uuid.UUID,
    executor_id: str,
    lease_s: float,
    now: datetime,
) -> bool:
    """Move an approved row to executing under this executor's lease, counting the attempt.
    One conditional UPDATE, so of several replicas racing for it exactly one wins."""
    result = await session.execute(
        update(model)
        .where(model.id == row_id, model.status == "approved")
        .values(
            status="executing",
            claimed_by=executor_id,
            lease_until=now + timedelta(seconds=lease_s),
            attempts=model.attempts + 1,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
