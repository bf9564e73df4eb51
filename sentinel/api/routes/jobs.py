"""Read API for training jobs and their rank → host maps."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select

from sentinel.api.deps import Session, Viewer
from sentinel.api.errors import error_responses
from sentinel.api.schemas import JobDetail, JobOut, RankOut
from sentinel.checkpoints import durable_checkpoint
from sentinel.db.models import Job, JobRank
from sentinel.wire.v1 import Name

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


def _job_out(job: Job, ranks: list[JobRank]) -> dict[str, Any]:
    steps = [r.step for r in ranks]
    durable = durable_checkpoint(r.checkpoint_step for r in ranks)
    return {
        "id": job.id,
        "state": job.state,
        "first_seen": job.first_seen,
        "last_seen": job.last_seen,
        "world_size": job.world_size,
        "ranks_reporting": len(ranks),
        "hosts": len({r.host_id for r in ranks}),
        "min_step": min(steps) if steps else None,
        "max_step": max(steps) if steps else None,
        "durable_checkpoint_step": durable,
    }


@router.get("", response_model=list[JobOut], summary="Training jobs seen through heartbeats")
async def list_jobs(session: Session, _: Viewer) -> list[dict[str, Any]]:
    jobs = (await session.scalars(select(Job).order_by(Job.last_seen.desc()))).all()
    ranks: dict[str, list[JobRank]] = defaultdict(list)
    for r in (await session.scalars(select(JobRank))).all():
        ranks[r.job_id].append(r)
    return [_job_out(j, ranks[j.id]) for j in jobs]


@router.get(
    "/{job_id}",
    response_model=JobDetail,
    summary="One job with its rank map",
    responses=error_responses(404),
)
async def get_job(session: Session, _: Viewer, job_id: Name) -> dict[str, Any]:
    job = await session.get(Job, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}")
    ranks = list(
        (
            await session.scalars(
                select(JobRank).where(JobRank.job_id == job_id).order_by(JobRank.rank)
            )
        ).all()
    )
    out = _job_out(job, ranks)
    out["ranks"] = [RankOut.model_validate(r, from_attributes=True) for r in ranks]
    return out
