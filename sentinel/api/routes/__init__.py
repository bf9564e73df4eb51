"""Route modules, one per resource; ``include_routes`` mounts them, the JSON API, on the app."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

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
    planned,
    reports,
    swaps,
)
from sentinel.ingest.alertmanager import AmWebhook
from sentinel.runtime.context import AppContext
from sentinel.wire import WIRE_VERSION, Batch
from sentinel.wire.v1 import FIELDS_ADDED, KINDS_ADDED, LOG_SOURCES_ADDED


def include_routes(app: FastAPI, ctx: AppContext) -> None:
    """The JSON API on ``app``: its error answers, admission, the routers, and an OpenAPI
    schema that shows the bodies routes parse themselves and the wire contract's version."""
    install_error_handlers(app)
    # Added before admission, so that it runs after it (the last added runs first).
    app.add_middleware(reports.ReportsFastPath, ctx=ctx)
    install_admission(app)
    # decisions before hosts: its /hosts/excluded must win over /hosts/{host_id}.
    for module in (
        reports,
        decisions,
        hosts,
        jobs,
        planned,
        swaps,
        dumps,
        incidents,
        events,
        alerts,
    ):
        app.include_router(module.router, dependencies=[Depends(known_query)])
    app.include_router(ops.router)

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
