"""POST /api/v1/reports: agent batches in, 202 with what was accepted.

The route is declared to FastAPI (the OpenAPI schema, and any request the fast path does not
take), but batches are answered by `ReportsFastPath`, a plain ASGI layer behind admission:
FastAPI's routing and dependency solving cost more CPU per batch than storing it. Both call
`answer` after the same checks in the same order, so they give the same answers.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from sentinel import auth
from sentinel.api.admission import admitted_principal
from sentinel.api.body import read_body
from sentinel.api.deps import Agent, Ctx, authenticate, check_role
from sentinel.api.errors import describe_validation_error, error_responses, http_error_response
from sentinel.auth import Principal
from sentinel.ingest.service import BatchRefused, HostForbidden, IngestUnavailable, SeqConflict
from sentinel.runtime.context import AppContext
from sentinel.wire import BatchAck

PATH = "/api/v1/reports"

router = APIRouter(prefix="/api/v1", tags=["ingest"])


@router.post(
    "/reports",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchAck,
    summary="Post a batch of observations (wire contract v1)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Batch"}}},
        }
    },
    responses=error_responses(
        400,
        403,
        409,
        413,
        415,
        422,
        429,
        503,
        **{
            "403": "The token may not speak for the batch's host",
            "409": "The batch's (host, seq) was used for another batch",
            "422": "Schema error, or a value the database cannot store; named",
        },
    ),
)
async def post_report(request: Request, ctx: Ctx, principal: Agent) -> Response:
    return await answer(ctx, principal, request)


async def answer(ctx: AppContext, principal: Principal, request: Request) -> Response:
    # Parsed by the ingest service, not by FastAPI: validating straight from JSON keeps strict
    # mode meaningful (ISO datetimes allowed, `false` still not an int) and is the fastest path
    # in pydantic; a resend is recognised by its bytes before any parsing.
    body = await read_body(request, ctx.settings.server.max_body_bytes)
    try:
        ack = await ctx.ingest.receive(body, principal.may_speak_for)
    except ValidationError as exc:
        code, message = describe_validation_error(exc)
        ctx.metrics.rejected.labels("invalid").inc()
        raise HTTPException(code, message) from None
    except HostForbidden as exc:
        ctx.metrics.rejected.labels("forbidden_host").inc()
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"token {principal.name!r} may not post for host {exc.host_id!r}",
        ) from None
    except SeqConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except BatchRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except IngestUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers={"Retry-After": "5"}
        ) from None
    # Serialised here, in pydantic's core: re-validating the answer costs more than the answer.
    return Response(ack.model_dump_json(), status_code=202, media_type="application/json")


class ReportsFastPath:
    """Answers ``POST /api/v1/reports`` without FastAPI's router; anything else passes on.

    A request with a query string passes on too: the route's dependencies refuse unknown
    query parameters, and that answer stays theirs.
    """

    def __init__(self, app: ASGIApp, *, ctx: AppContext) -> None:
        self.app = app
        self._ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope.get("query_string")
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            # Admission, in front, authenticated the caller already; without it, here.
            principal = admitted_principal(scope) or authenticate(
                self._ctx.tokens, request.headers.get("authorization")
            )
            check_role(principal, auth.REPORT)
            response = await answer(self._ctx, principal, request)
        except HTTPException as exc:
            response = http_error_response(exc)
        await response(scope, receive, send)
