"""Standby hosts: nodes a job holds in its allocation but runs no rank on (``sbatch -N 2050``
for a 2,048-host job, the launcher waiting on the extra two). An exclusion with in-place
restarts on is carried out in the job onto one of them: no requeue, no new allocation
(docs/launcher.md, NVIDIA Resiliency Extension's in-job restart with hot spares).

A standby is an allocated host with no rank of the job (heartbeats, job_ranks), healthy by the
agent's account: the same test the hot-spare pool applies (SparePool.healthy: reported
recently, not drained, no lost GPU, no recent critical event, no open degraded finding).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.db.models import JobRank

# (session, host) -> None when the host is healthy, else why not (SparePool.healthy).
HealthTest = Callable[[AsyncSession, str], Awaitable[str | None]]


async def standby_hosts(
    session: AsyncSession,
    job_id: str,
    allocated: Sequence[str],
    healthy: HealthTest,
    exclude: Sequence[str] = (),
) -> list[str]:
    """The job's standby hosts, in the scheduler's order: allocated, no rank of the job on
    them, not in ``exclude``, healthy."""
    ranked = set(
        (await session.scalars(select(JobRank.host_id).where(JobRank.job_id == job_id))).all()
    )
    out: list[str] = []
    for host in allocated:
        if host in ranked or host in exclude or host in out:
            continue
        if await healthy(session, host) is None:
            out.append(host)
    return out
