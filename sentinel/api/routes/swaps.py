"""Proactive swaps (issue 17): degraded findings on hosts, swap decisions, the hot-spare pool."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from sentinel.api.deps import Ctx, Session, Viewer
from sentinel.db.models import DegradedFinding, Swap
from sentinel.inputs import NO_NUL
from sentinel.remediation.swap import swap_out

router = APIRouter(prefix="/api/v1", tags=["remediation"])

Filter = Annotated[str | None, Query(max_length=128, pattern=NO_NUL)]


class FindingOut(BaseModel):
    id: uuid.UUID
    host_id: str
    gpu: str | None
    indicator: str
    rule: str
    reason: str
    evidence: list[dict[str, Any]]
    state: str
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None


class SwapOut(BaseModel):
    id: str
    finding_id: str
    job_id: str | None
    host: str
    spare_host: str | None = Field(
        description="The host that took the degraded host's place: a spare of the pool, or "
        "the standby host of the job's allocation (standby_host)."
    )
    standby_host: str | None = Field(
        None,
        description="Carried out in the job (remediation.in_place): the standby host of the "
        "job's allocation that took the host's place, no requeue.",
    )
    action: str
    status: str
    rule: str
    reason: str
    decided_step: int | None
    checkpoint_step: int | None
    planned: bool
    outcome: dict[str, Any]
    error: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime


class PoolAdviceOut(BaseModel):
    """The pool size the fleet's record recommends, with its rule, reason and inputs."""

    recommended: int
    rule: str
    reason: str
    drains_per_day: float
    repair_s: float
    repair_measured: bool
    hosts_out: float
    quantile: float
    window_s: float


class SparesOut(BaseModel):
    reservation: str
    target: int
    ready: list[str]
    used: list[str]
    unhealthy: list[str]
    advice: PoolAdviceOut


@router.get(
    "/findings",
    response_model=list[FindingOut],
    summary="Degraded findings: hosts whose parts warn before they fail (not incidents)",
)
async def list_findings(
    session: Session,
    _: Viewer,
    host_id: Filter = None,
    state: Annotated[Literal["open", "resolved"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[FindingOut]:
    q = select(DegradedFinding).order_by(DegradedFinding.opened_at.desc()).limit(limit)
    if host_id is not None:
        q = q.where(DegradedFinding.host_id == host_id)
    if state is not None:
        q = q.where(DegradedFinding.state == state)
    rows = (await session.scalars(q)).all()
    return [FindingOut.model_validate(r, from_attributes=True) for r in rows]


@router.get(
    "/swaps",
    response_model=list[SwapOut],
    summary="Proactive swap decisions, each with its rule, reason and outcome (planned)",
)
async def list_swaps(
    session: Session,
    _: Viewer,
    job_id: Filter = None,
    host_id: Filter = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[dict[str, Any]]:
    q = select(Swap).order_by(Swap.created_at.desc()).limit(limit)
    if job_id is not None:
        q = q.where(Swap.job_id == job_id)
    if host_id is not None:
        q = q.where(Swap.host_id == host_id)
    return [swap_out(s) for s in (await session.scalars(q)).all()]


@router.get(
    "/spares",
    response_model=SparesOut,
    summary="The hot-spare pool: its size, health and use, and the size the fleet's "
    "record recommends",
)
async def get_spares(ctx: Ctx, _: Viewer) -> SparesOut:
    swaps = ctx.remediation.swaps
    pool = await swaps.pool.state(ctx.sessions)
    return SparesOut(
        reservation=ctx.settings.remediation.swap.reservation,
        target=pool.target,
        ready=list(pool.ready),
        used=list(pool.used),
        unhealthy=list(pool.unhealthy),
        advice=PoolAdviceOut.model_validate(pool.advice, from_attributes=True),
    )
