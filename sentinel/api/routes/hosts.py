"""Read API for hosts, their GPUs and their recent observations."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy import select

from sentinel.api.deps import Ctx, Session, Viewer
from sentinel.api.errors import error_responses
from sentinel.api.schemas import GpuOut, HostDetail, HostOut, ObservationOut
from sentinel.db.models import Batch, Event, Gpu, Host
from sentinel.health import host_health
from sentinel.inputs import NO_NUL, TimeBound
from sentinel.wire.v1 import Name

router = APIRouter(prefix="/api/v1/hosts", tags=["hosts"])


def _host_out(ctx: Ctx, host: Host, gpus: list[Gpu]) -> dict[str, Any]:
    health = host_health(host, gpus, ctx.clock.now(), ctx.settings.health)
    return {
        "id": host.id,
        "agent_id": host.agent_id,
        "first_seen": host.first_seen,
        "last_seen": host.last_seen,
        "last_seq": host.last_seq,
        "health": health.state.value,
        "health_reason": health.reason,
        "drain_state": host.drain_state,
        "gpus": len(gpus),
    }


@router.get("", response_model=list[HostOut], summary="Hosts with last-seen time and health")
async def list_hosts(
    ctx: Ctx,
    session: Session,
    _: Viewer,
    health: Annotated[str | None, Query(description="Only hosts in this health state")] = None,
) -> list[dict[str, Any]]:
    hosts = (await session.scalars(select(Host).order_by(Host.id))).all()
    by_host: dict[str, list[Gpu]] = defaultdict(list)
    for gpu in (await session.scalars(select(Gpu))).all():
        by_host[gpu.host_id].append(gpu)
    out = [_host_out(ctx, h, by_host[h.id]) for h in hosts]
    return [h for h in out if health is None or h["health"] == health]


async def _get_host(session: Session, host_id: str) -> Host:
    host = await session.get(Host, host_id)
    if host is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no host {host_id!r}")
    return host


@router.get(
    "/{host_id}",
    response_model=HostDetail,
    summary="One host and its GPUs",
    responses=error_responses(404),
)
async def get_host(ctx: Ctx, session: Session, _: Viewer, host_id: Name) -> dict[str, Any]:
    host = await _get_host(session, host_id)
    gpus = list(
        (
            await session.scalars(select(Gpu).where(Gpu.host_id == host_id).order_by(Gpu.gpu_index))
        ).all()
    )
    out = _host_out(ctx, host, gpus)
    out["gpu_list"] = [
        GpuOut(
            gpu_index=g.gpu_index,
            uuid=g.uuid,
            pci_bus_id=g.pci_bus_id,
            serial=g.serial,
            lost=g.lost,
            remap_failure=g.remap_failure,
            temperature_c=g.temperature_c,
            updated_at=g.updated_at,
            sample=json.loads(g.sample),
        )
        for g in gpus
    ]
    out["last_critical_at"] = host.last_critical_at
    out["last_critical"] = host.last_critical
    return out


@router.get(
    "/{host_id}/observations",
    response_model=list[ObservationOut],
    summary="One host's recent observations, newest first",
    responses=error_responses(404),
)
async def host_observations(
    session: Session,
    _: Viewer,
    host_id: Name,
    kind: Annotated[str | None, Query(max_length=32, pattern=NO_NUL)] = None,
    since: TimeBound | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
) -> list[ObservationOut]:
    await _get_host(session, host_id)
    out: list[ObservationOut] = []
    q = select(Event).where(Event.host_id == host_id)
    if kind:
        q = q.where(Event.kind == kind)
    if since:
        q = q.where(Event.observed_at >= since)
    for ev in (await session.scalars(q.order_by(Event.observed_at.desc()).limit(limit))).all():
        out.append(
            ObservationOut(
                id=str(ev.id), kind=ev.kind, observed_at=ev.observed_at, seq=ev.seq, data=ev.payload
            )
        )
    if kind is None or kind in ("gpu_sample", "heartbeat", "agent_status"):
        bq = select(Batch).where(Batch.host_id == host_id)
        if since:
            bq = bq.where(Batch.received_at >= since)
        for b in (await session.scalars(bq.order_by(Batch.seq.desc()).limit(limit))).all():
            for s in json.loads(b.samples):
                if kind is None or s.get("kind") == kind:
                    out.append(
                        ObservationOut(
                            id=str(s["id"]),
                            kind=s["kind"],
                            observed_at=datetime.fromisoformat(s["observed_at"]),
                            seq=b.seq,
                            data=s,
                        )
                    )
    out.sort(key=lambda o: o.observed_at, reverse=True)
    return out[:limit]
