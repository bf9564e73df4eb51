"""The jobs heartbeats made known, summed up: ranks and hosts reporting, steps, the durable
checkpoint, the code version (what the API and the dashboard list)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.checkpoints import code_versions, durable_checkpoint
from sentinel.db.models import Job, JobRank


def job_summary(job: Job, ranks: list[JobRank]) -> dict[str, Any]:
    steps = [r.step for r in ranks]
    durable = durable_checkpoint(r.checkpoint_step for r in ranks)
    versions = code_versions(ranks)
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
        "code_version": versions.current,
        "trained_version": versions.trained,
    }


async def job_summaries(session: AsyncSession) -> list[dict[str, Any]]:
    """Every job, the one seen last first."""
    jobs = (await session.scalars(select(Job).order_by(Job.last_seen.desc()))).all()
    ranks: dict[str, list[JobRank]] = defaultdict(list)
    for r in (await session.scalars(select(JobRank))).all():
        ranks[r.job_id].append(r)
    return [job_summary(j, ranks[j.id]) for j in jobs]
