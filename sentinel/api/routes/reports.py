"""POST /api/v1/reports: agent batches in, 202 with what was accepted."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import ValidationError

from sentinel.api.body import read_body
from sentinel.api.deps import Agent, Ctx
from sentinel.api.errors import describe_validation_error, error_responses
from sentinel.ingest.service import BatchRefused, HostForbidden, IngestUnavailable, SeqConflict
from sentinel.wire import BatchAck

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
