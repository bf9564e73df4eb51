"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import contextlib
from collections import Counter

from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from sentinel.api.deps import Ctx
from sentinel.db.engine import unit_of_work
from sentinel.db.migrate import schema_status
from sentinel.db.models import Decision, Gpu, Host, Incident, Job
from sentinel.health import HealthState, host_health
from sentinel.incidents.accountability import count_unaccounted
from sentinel.incidents.state import OPEN_STATES, IncidentState
from sentinel.remediation.spares import pool_metrics
from sentinel.reports.frames import load_job_history
from sentinel.reports.tables import ReportParams, job_ettr
from sentinel.triage.taxonomy import Category

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database reachable and schema current",
    responses={
        503: {
            "description": "Database unreachable or schema out of date",
            "content": {
                "application/json": {
                    "schema": {"type": "object", "additionalProperties": {"type": "string"}}
                }
            },
        }
    },
)
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
    with contextlib.suppress(SQLAlchemyError):
        await pool_metrics(ctx.metrics.registry).refresh(ctx.sessions, ctx.remediation.swaps.pool)
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _refresh_gauges(ctx: Ctx) -> None:
    """Gauges that describe the database are read at scrape time, never kept in memory."""
    try:
        async with unit_of_work(ctx.sessions) as session:
            hosts = (await session.scalars(select(Host))).all()
            gpus: dict[str, list[Gpu]] = {}
            for g in (await session.scalars(select(Gpu))).all():
                gpus.setdefault(g.host_id, []).append(g)
            # Aggregates only: a handful of rows however many incidents and decisions exist.
            incidents = (
                await session.execute(
                    select(Incident.category, Incident.state, func.count()).group_by(
                        Incident.category, Incident.state
                    )
                )
            ).all()
            oldest = (
                await session.execute(
                    select(Incident.category, func.min(Incident.opened_at))
                    .where(Incident.state.in_(OPEN_STATES))
                    .group_by(Incident.category)
                )
            ).all()
            decisions = (
                await session.execute(
                    select(Decision.action, Decision.status, func.count()).group_by(
                        Decision.action, Decision.status
                    )
                )
            ).all()
            running = (await session.scalars(select(Job.id).where(Job.state == "running"))).all()
            unaccounted = await count_unaccounted(
                session, ctx.clock.now(), ctx.settings.triage.accountable_s
            )
            history = await load_job_history(session, running) if running else None
    except SQLAlchemyError:
        return
    now = ctx.clock.now()
    m = ctx.metrics
    counts = Counter(
        host_health(h, gpus.get(h.id, []), now, ctx.settings.health).state for h in hosts
    )
    for state in HealthState:
        m.hosts.labels(state.value).set(counts.get(state, 0))
    # No await from here on: a concurrent scrape never sees a gauge half cleared.
    m.incidents.clear()
    for known in Category:
        for state_ in IncidentState:
            m.incidents.labels(known.value, state_.value).set(0)
    for category, incident_state, n in incidents:
        m.incidents.labels(category, incident_state).set(n)
    m.incident_oldest_open.clear()
    for category, opened_at in oldest:
        m.incident_oldest_open.labels(category).set(max(0.0, (now - opened_at).total_seconds()))
    m.unaccounted.set(unaccounted)
    m.decisions.clear()
    for action, status_, n in decisions:
        m.decisions.labels(action, status_).set(n)
    m.job_ettr.clear()
    if history is not None:
        ettr = job_ettr(history, ReportParams(), now.timestamp())
        for job, pct in ettr.select("job_id", "ettr_pct").iter_rows():
            m.job_ettr.labels(job).set(pct / 100)
