"""Accountability of hard faults: the events triage owes an answer (incident or dismissal)."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from sentinel.api.deps import Ctx, Session, Viewer
from sentinel.incidents.accountability import unaccounted

router = APIRouter(prefix="/api/v1/events", tags=["events"])


class UnaccountedEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_id: uuid.UUID
    host_id: str
    kind: str
    summary: str
    observed_at: datetime
    seen_at: datetime


@router.get(
    "/unaccounted",
    response_model=list[UnaccountedEventOut],
    summary="Hard-fault events neither linked to an incident nor dismissed within the bound",
)
async def list_unaccounted(
    ctx: Ctx,
    session: Session,
    _: Viewer,
    older_than_s: float | None = Query(
        None, ge=0, le=86_400 * 30, description="Default: the triage.accountable_s setting."
    ),
    limit: int = Query(500, ge=1, le=5000),
) -> list[UnaccountedEventOut]:
    bound = ctx.settings.triage.accountable_s if older_than_s is None else older_than_s
    rows = await unaccounted(session, ctx.clock.now(), bound, limit)
    return [UnaccountedEventOut.model_validate(r) for r in rows]
