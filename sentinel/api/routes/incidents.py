"""Incidents, announced maintenance and ad-hoc classification."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.api.deps import Ctx, Operator, Session, Viewer
from sentinel.api.errors import error_responses, refusals
from sentinel.db import audit
from sentinel.db.models import Gpu, Incident, IncidentTransition, Maintenance
from sentinel.incidents.schemas import ResolveIn
from sentinel.incidents.verdicts import verdict_of
from sentinel.inputs import NO_NUL, Reason, Time
from sentinel.triage.classify import classify_all
from sentinel.triage.verdict import Verdict
from sentinel.wire.identity import GpuIdentity
from sentinel.wire.v1 import Name

router = APIRouter(prefix="/api/v1", tags=["incidents"])


class TransitionOut(BaseModel):
    from_state: str | None
    to_state: str
    reason: str
    actor: str
    at: datetime


class IncidentOut(BaseModel):
    id: uuid.UUID
    job_id: str | None
    state: str
    category: str
    confidence: float
    culprit_host: str | None
    culprit_gpu: str | None
    culprit_rank: int | None
    rule: str
    reason: str
    opened_at: datetime
    detected_at: datetime
    updated_at: datetime
    resolved_at: datetime | None


class GpuIdentityOut(BaseModel):
    """The culprit GPU by every name it goes by; the serial is what an RMA asks for."""

    index: int
    pci_bus_id: str | None
    uuid: str | None
    serial: str | None


class IncidentDetail(IncidentOut):
    verdict: Verdict
    transitions: list[TransitionOut]
    culprit_gpu_identity: GpuIdentityOut | None = Field(
        None,
        description="The culprit GPU (named by index, PCI address, UUID or serial) as the "
        "culprit host's agent last reported it; none when the host never reported that GPU.",
    )


async def _culprit_identity(session: AsyncSession, incident: Incident) -> GpuIdentityOut | None:
    if not (incident.culprit_host and incident.culprit_gpu):
        return None
    gpus = (await session.scalars(select(Gpu).where(Gpu.host_id == incident.culprit_host))).all()
    for g in gpus:
        identity = GpuIdentity(g.gpu_index, g.pci_bus_id, g.uuid, g.serial)
        if identity.is_named_by(incident.culprit_gpu):
            return GpuIdentityOut(
                index=identity.index,
                pci_bus_id=identity.pci_bus_id,
                uuid=identity.uuid,
                serial=identity.serial,
            )
    return None


def _out(i: Incident) -> IncidentOut:
    return IncidentOut.model_validate(i, from_attributes=True)


@router.get("/incidents", response_model=list[IncidentOut], summary="Incidents, newest first")
async def list_incidents(
    session: Session,
    _: Viewer,
    state: Annotated[str | None, Query(pattern="^(open|mitigating|resolved)$")] = None,
    job_id: Annotated[str | None, Query(max_length=128, pattern=NO_NUL)] = None,
    category: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[IncidentOut]:
    q = select(Incident)
    if state:
        q = q.where(Incident.state == state)
    if job_id:
        q = q.where(Incident.job_id == job_id)
    if category:
        q = q.where(Incident.category == category)
    rows = (await session.scalars(q.order_by(Incident.opened_at.desc()).limit(limit))).all()
    return [_out(i) for i in rows]


async def _incident(session: AsyncSession, incident_id: uuid.UUID) -> Incident:
    incident = await session.get(Incident, incident_id)
    if incident is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no incident {incident_id}")
    return incident


@router.get(
    "/incidents/{incident_id}",
    response_model=IncidentDetail,
    summary="One incident with its verdict, evidence and transitions",
    responses=error_responses(404),
)
async def get_incident(session: Session, _: Viewer, incident_id: uuid.UUID) -> IncidentDetail:
    incident = await _incident(session, incident_id)
    transitions = (
        await session.scalars(
            select(IncidentTransition)
            .where(IncidentTransition.incident_id == incident_id)
            .order_by(IncidentTransition.at, IncidentTransition.id)
        )
    ).all()
    return IncidentDetail(
        **_out(incident).model_dump(),
        verdict=verdict_of(incident),
        transitions=[TransitionOut.model_validate(t, from_attributes=True) for t in transitions],
        culprit_gpu_identity=await _culprit_identity(session, incident),
    )


@router.post(
    "/incidents/{incident_id}/resolve",
    response_model=IncidentOut,
    summary="Resolve an incident by hand (operator)",
    responses=error_responses(404, 409),
)
async def resolve_incident(
    ctx: Ctx, who: Operator, incident_id: uuid.UUID, body: ResolveIn
) -> IncidentOut:
    with refusals():
        change = await ctx.triage.resolve_by_hand(ctx.sessions, who, incident_id, body.reason)
    await ctx.stages.run([change])
    return _out(change.incident)


class MaintenanceIn(BaseModel):
    hosts: list[Name] = Field(default_factory=list, max_length=20_000)
    job_id: Name | None = None
    starts_at: Time
    ends_at: Time
    reason: Reason

    @model_validator(mode="after")
    def _window(self) -> MaintenanceIn:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class MaintenanceOut(MaintenanceIn):
    id: uuid.UUID
    author: str
    created_at: datetime


@router.post(
    "/maintenance",
    response_model=MaintenanceOut,
    status_code=status.HTTP_201_CREATED,
    summary="Announce maintenance: interruptions it covers are 'planned'",
)
async def announce_maintenance(
    ctx: Ctx, session: Session, who: Operator, body: MaintenanceIn
) -> MaintenanceOut:
    row = Maintenance(
        hosts=list(body.hosts),
        job_id=body.job_id,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        reason=body.reason,
        author=who.name,
        created_at=ctx.clock.now(),
    )
    session.add(row)
    audit.record(
        session,
        who,
        "maintenance.announce",
        f"job:{body.job_id}" if body.job_id else "hosts",
        body.model_dump(mode="json"),
        ctx.clock.now(),
    )
    await session.flush()
    return MaintenanceOut.model_validate(row, from_attributes=True)


@router.get(
    "/maintenance",
    response_model=list[MaintenanceOut],
    summary="Maintenance windows that have not ended",
)
async def list_maintenance(ctx: Ctx, session: Session, _: Viewer) -> list[MaintenanceOut]:
    rows = (
        await session.scalars(
            select(Maintenance)
            .where(Maintenance.ends_at >= ctx.clock.now())
            .order_by(Maintenance.starts_at)
        )
    ).all()
    return [MaintenanceOut.model_validate(m, from_attributes=True) for m in rows]


class ClassifyIn(BaseModel):
    text: str = Field(min_length=1, max_length=2_000_000, description="A pasted log excerpt.")


class ClassifyOut(Verdict):
    secondary: list[Verdict] = Field(default_factory=list)


@router.post(
    "/classify",
    response_model=ClassifyOut,
    summary="Classify a raw log excerpt with the same rules and knowledge as triage",
)
async def classify(_: Viewer, body: ClassifyIn) -> ClassifyOut:
    import asyncio

    verdicts = await asyncio.to_thread(classify_all, body.text)
    return ClassifyOut(**verdicts[0].model_dump(), secondary=verdicts[1:])
