"""Build the FastAPI app: settings in, everything wired, loops started in the lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from sentinel.alerting.external import AmWebhook
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
from sentinel.runtime.context import AppContext, build_context
from sentinel.runtime.leader import LeaderElector
from sentinel.runtime.loops import leader_loops
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
