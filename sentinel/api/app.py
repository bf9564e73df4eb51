"""Build the FastAPI app: settings in, everything wired, loops started in the lifespan."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from sentinel.alerting.external import AmWebhook
from sentinel.alerting.wiring import add_flush_job
from sentinel.api.admission import install_admission
from sentinel.api.deps import known_query
from sentinel.api.errors import document_errors, install_error_handlers
from sentinel.api.routes import (
    alerts,
    decisions,
    dumps,
    events,
    hosts,
    incidents,
    jobs,
    ops,
    reports,
    swaps,
)
from sentinel.clock import Clock, SystemClock
from sentinel.db import migrate
from sentinel.db.engine import unit_of_work
from sentinel.incidents.scheduler_view import SchedulerView
from sentinel.incidents.service import IncidentChange
from sentinel.runtime.context import AppContext, build_context
from sentinel.runtime.leader import LeaderElector
from sentinel.runtime.retention import prune
from sentinel.settings import Settings
from sentinel.web import routes as web
from sentinel.wire import WIRE_VERSION, Batch
from sentinel.wire.v1 import FIELDS_ADDED, KINDS_ADDED, LOG_SOURCES_ADDED

log = logging.getLogger(__name__)


class SchemaOutOfDate(RuntimeError):
    pass


async def _ensure_schema(ctx: AppContext) -> None:
    status = await migrate.schema_status(ctx.engine)
    if status.up_to_date:
        return
    if not ctx.settings.auto_migrate:
        raise SchemaOutOfDate(status.advice())
    log.warning("migrating database schema from %s to %s", status.current, status.head)

    await asyncio.to_thread(migrate.upgrade, ctx.settings.database_url())


def _scheduler(ctx: AppContext) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="UTC")

    async def retention() -> None:
        async with unit_of_work(ctx.sessions) as session:
            removed = await prune(session, ctx.clock, ctx.settings.retention, ctx.metrics)
        if any(removed.values()):
            log.info("retention removed %s", removed)

    async def watchdog() -> None:
        async with unit_of_work(ctx.sessions) as session:
            resolved = await ctx.watchdog.run_once(session)
        await ctx.stages.run(resolved)

    async def flight_recorder() -> None:
        async with unit_of_work(ctx.sessions) as session:
            await ctx.flight_recorder.run_once(session)

    async def remediation() -> None:
        await ctx.stages.run(await ctx.remediation.run_due(ctx.sessions))

    view = SchedulerView(ctx.clock)

    async def scheduler_view() -> None:
        await view.run_once(ctx.sessions, ctx.remediation.scheduler)

    add_flush_job(scheduler, ctx.dispatcher, ctx.clock, ctx.settings.alerting.flush_interval_s)
    for job, seconds in (
        (retention, ctx.settings.retention.interval_s),
        (remediation, 1.0),
        (flight_recorder, 5.0),
        (watchdog, ctx.settings.triage.heartbeat_interval_s / 4),
        (scheduler_view, ctx.settings.scheduler.poll_nodes_s),
    ):
        scheduler.add_job(
            job, "interval", seconds=seconds, id=job.__name__, max_instances=1, coalesce=True
        )
    return scheduler


async def _triage_loop(ctx: AppContext, stop: asyncio.Event) -> None:
    """Triage runs back to back on the leader (not an interval job that could be skipped)."""

    async def after(changes: list[IncidentChange]) -> None:
        await ctx.stages.run(changes)
        # A decision on an incident opened in this pass is carried out at once: detection to
        # restart is not one remediation interval longer than it needs to be.
        if changes:
            await ctx.stages.run(await ctx.remediation.run_due(ctx.sessions))

    await ctx.triage_worker.run_forever(stop, after)


def create_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    ctx = build_context(settings, clock or SystemClock())
    if len(ctx.tokens) == 0:
        log.warning("no tokens configured: every authenticated route will answer 401")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _ensure_schema(ctx)
        # The start-up objects (modules, models, compiled statements) never die: keep them out
        # of the cyclic collector, and collect the young generation less often. Full
        # collections over them were the tail of the ingest latency.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        await ctx.ingest.start()
        elector = (
            LeaderElector(
                ctx.sessions,
                ctx.clock,
                lambda: _scheduler(ctx),
                ttl_s=settings.leader_ttl_s,
                loops=[functools.partial(_triage_loop, ctx)],
            )
            if settings.run_loops
            else None
        )
        app.state.elector = elector
        if elector is not None:
            await elector.start()
        try:
            yield
        finally:
            if elector is not None:
                await elector.stop()
            await ctx.ingest.stop()
            await ctx.alert_http.aclose()
            await ctx.engine.dispose()

    app = FastAPI(
        title="Sentinel",
        version="0.1.0",
        summary="Failure triage and remediation for very large GPU training jobs",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    # Added before admission, so that it runs after it (the last added runs first).
    app.add_middleware(reports.ReportsFastPath, ctx=ctx)
    install_admission(app)
    # decisions before hosts: its /hosts/excluded must win over /hosts/{host_id}.
    for module in (reports, decisions, hosts, jobs, swaps, dumps, incidents, events, alerts):
        app.include_router(module.router, dependencies=[Depends(known_query)])
    for module in (ops, web):
        app.include_router(module.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            # The bodies that routes parse themselves (after a size check), not FastAPI.
            for model in (Batch, AmWebhook):
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
            document_errors(schema)
            schema["info"]["x-wire-version"] = WIRE_VERSION
            # What version 1 has gained since it was first published (see sentinel/wire/v1.py).
            schema["info"]["x-wire-additions"] = {
                "LogRecord.source": sorted(LOG_SOURCES_ADDED),
                "fields": sorted(FIELDS_ADDED),
                "kinds": sorted(KINDS_ADDED),
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def app_from_environment() -> FastAPI:
    """The app from SENTINEL_* settings: the factory each uvicorn worker process calls."""
    from sentinel.settings import load_settings

    return create_app(load_settings())
