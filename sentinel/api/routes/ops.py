"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from sentinel.api.deps import Ctx
from sentinel.db.engine import unit_of_work
from sentinel.db.migrate import schema_status
from sentinel.db.models import Gpu, Host
from sentinel.health import HealthState, host_health

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable and schema current")
async def readyz(ctx: Ctx, response: Response) -> dict[str, str]:
    try:
        schema = await schema_status(ctx.engine)
    except (SQLAlchemyError, OSError) as exc:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "database unreachable", "error": type(exc).__name__}
    if not schema.up_to_date:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "schema out of date", "detail": schema.advice()}
    return {"status": "ready", "schema": schema.head}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(ctx: Ctx) -> Response:
    await _refresh_gauges(ctx)
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _refresh_gauges(ctx: Ctx) -> None:
    """Gauges that describe the database are read at scrape time, never kept in memory."""
    try:
        async with unit_of_work(ctx.sessions) as session:
            hosts = (await session.scalars(select(Host))).all()
            gpus: dict[str, list[Gpu]] = {}
            for g in (await session.scalars(select(Gpu))).all():
                gpus.setdefault(g.host_id, []).append(g)
    except SQLAlchemyError:
        return
    now = ctx.clock.now()
    counts = Counter(
        host_health(h, gpus.get(h.id, []), now, ctx.settings.health).state for h in hosts
    )
    for state in HealthState:
        ctx.metrics.hosts.labels(state.value).set(counts.get(state, 0))
