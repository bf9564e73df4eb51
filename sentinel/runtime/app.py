"""The application factory: settings in, the service composed, its loops run on the leader."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from sentinel.api.routes import include_routes
from sentinel.clock import Clock, SystemClock
from sentinel.db import migrate
from sentinel.runtime.context import AppContext, build_context
from sentinel.runtime.leader import LeaderElector
from sentinel.runtime.loops import leader_loops
from sentinel.settings import Settings
from sentinel.web import routes as web

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


def _tune_gc() -> None:
    # The start-up objects (modules, models, compiled statements) never die: keep them out
    # of the cyclic collector, and collect the young generation less often. Full
    # collections over them were the tail of the ingest latency.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def create_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    ctx = build_context(settings, clock or SystemClock())
    if len(ctx.tokens) == 0:
        log.warning("no tokens configured: every authenticated route will answer 401")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _ensure_schema(ctx)
        _tune_gc()
        await ctx.ingest.start()
        elector = (
            LeaderElector(
                ctx.sessions, ctx.clock, ttl_s=settings.leader_ttl_s, loops=leader_loops(ctx)
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
        # FastAPI's own OpenTelemetry instrumentation off: Sentinel exports its figures to
        # Prometheus and installs no OpenTelemetry SDK, so it never had anything to report,
        # yet asking the global providers whether it had cost ~4 us on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.ctx = ctx
    include_routes(app, ctx)
    app.include_router(web.router)
    return app


def app_from_environment() -> FastAPI:
    """The app from SENTINEL_* settings: the factory each uvicorn worker process calls."""
    from sentinel.settings import load_settings

    return create_app(load_settings())
