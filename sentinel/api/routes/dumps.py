"""The flight recorder: agents upload dumps (gzip; stored, never unpickled here); viewers read
what the analyses of each job's dumps concluded, or why they could not."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from sentinel.api.body import inflate
from sentinel.api.deps import Agent, Ctx, Session, Viewer
from sentinel.api.errors import error_responses
from sentinel.api.schemas import FlightRecorderAnalysisOut, FlightRecorderUploadOut
from sentinel.db.models import FlightRecorderUpload
from sentinel.incidents.flightrec import analyses
from sentinel.inputs import NO_NUL
from sentinel.wire.v1 import Name

router = APIRouter(prefix="/api/v1/flight-recorder", tags=["flight recorder"])


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(path)


@router.post(
    "/dumps",
    status_code=status.HTTP_201_CREATED,
    response_model=FlightRecorderUploadOut,
    summary="Upload one rank's flight-recorder dump, gzip-compressed",
    openapi_extra={"requestBody": {"required": True, "content": {"application/gzip": {}}}},
    responses={
        200: {"model": FlightRecorderUploadOut, "description": "Already stored (a resend)"},
        **error_responses(400, 403, 413, 429, **{"403": "The token may not speak for this host"}),
    },
)
async def upload_dump(
    request: Request,
    response: Response,
    ctx: Ctx,
    session: Session,
    agent: Agent,
    host_id: Annotated[str, Query(pattern=Name.__metadata__[0].pattern)],
    rank: Annotated[int, Query(ge=0, le=10_000_000)],
    file_name: Annotated[str, Query(min_length=1, max_length=255, pattern=NO_NUL)],
    job_id: Annotated[str | None, Query(pattern=Name.__metadata__[0].pattern)] = None,
) -> FlightRecorderUploadOut:
    if not agent.may_speak_for(host_id):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"token {agent.name!r} may not post for host {host_id!r}"
        )
    limit = ctx.settings.server.max_dump_bytes
    compressed = bytearray()
    async for chunk in request.stream():
        compressed += chunk
        if len(compressed) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"dump exceeds {limit} bytes")
    data = inflate(bytes(compressed), limit)
    sha = hashlib.sha256(data).hexdigest()
    if await session.get(FlightRecorderUpload, sha) is not None:
        response.status_code = status.HTTP_200_OK
        return FlightRecorderUploadOut(upload_id=sha, size_bytes=len(data), duplicate=True)
    # Stored compressed and content-addressed: the name cannot escape the folder.
    path = ctx.settings.data_dir / "dumps" / sha[:2] / f"{sha}.gz"
    await asyncio.to_thread(_write, path, bytes(compressed))
    session.add(
        FlightRecorderUpload(
            sha256=sha,
            host_id=host_id,
            job_id=job_id,
            rank=rank,
            file_name=file_name,
            size_bytes=len(data),
            path=str(path),
            received_at=ctx.clock.now(),
        )
    )
    await session.flush()
    return FlightRecorderUploadOut(upload_id=sha, size_bytes=len(data), duplicate=False)


@router.get(
    "/analyses",
    response_model=list[FlightRecorderAnalysisOut],
    summary="The analyses of jobs' dumps, newest first: each verdict, or why there is none",
    description="One per distinct set of a job's dumps (a new upload makes a new set): "
    "fr_verdict with the verdict, or fr_error with the failure's reason and how many dumps "
    "were tried. A job with none (or unknown): an empty list.",
)
async def list_analyses(
    session: Session,
    _: Viewer,
    job_id: Annotated[str | None, Query(max_length=128, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[FlightRecorderAnalysisOut]:
    return [
        FlightRecorderAnalysisOut.model_validate(
            {
                "event_id": str(ev.id),
                "job_id": ev.job_id,
                "kind": ev.kind,
                "observed_at": ev.observed_at,
                "summary": ev.payload.get("text", ""),
                "verdict": ev.payload.get("verdict"),
                "reason": ev.payload.get("reason"),
                "dumps": ev.payload.get("dumps"),
            }
        )
        for ev in await analyses(session, job_id, limit)
    ]
