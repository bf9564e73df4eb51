"""Standby hosts: nodes a job holds in its allocation but runs no rank on (``sbatch -N 2050``
for a 2,048-host job, the launcher waiting on the extra two). An exclusion with in-place
restarts on is carried out in the job onto one of them: no requeue, no new allocation
(docs/launcher.md, NVIDIA Resiliency Extension's in-job restart with hot spares); so is a
proactive swap at its checkpoint. Both publish it the one way this module holds: the hosts
leaving drained, an ``in_place`` step naming the standby that the job's advice turns into
``restart_exclude_hosts`` and ``restart_standby_host`` for the launchers.

A standby is an allocated host with no rank of the job (heartbeats, job_ranks), healthy by the
agent's account: the same test the hot-spare pool applies (SparePool.healthy: reported
recently, not drained, no lost GPU, no recent critical event, no open degraded finding).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.db.engine import unit_of_work
from sentinel.db.models import Decision, Job, JobRank, Swap
from sentinel.schedulers.base import OpResult, SchedulerAdapter

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
    them, not in ``exclude``, not promised to a replacement published and not yet
    acknowledged (its standby has no rank until it joins), healthy."""
    ranked = set(
        (await session.scalars(select(JobRank.host_id).where(JobRank.job_id == job_id))).all()
    )
    for model in (Decision, Swap):
        promised = await session.scalars(
            select(model.outcome).where(model.job_id == job_id, model.status == "awaiting_ack")
        )
        ranked |= {o["standby_host"] for o in promised if isinstance(o.get("standby_host"), str)}
    out: list[str] = []
    for host in allocated:
        if host in ranked or host in exclude or host in out:
            continue
        if await healthy(session, host) is None:
            out.append(host)
    return out


async def job_standbys(
    sessions: async_sessionmaker[AsyncSession],
    scheduler: SchedulerAdapter,
    job: Job,
    healthy: HealthTest,
    exclude: Sequence[str],
) -> list[str]:
    """The job's standby hosts (allocated, no rank, healthy), asked of the scheduler
    between transactions; none when it does not say which nodes the job holds."""
    state = await scheduler.job_state(job.scheduler_job_id or job.id)
    if not state.ok or state.job is None or state.job.state != "running":
        return []
    async with unit_of_work(sessions) as session:
        return await standby_hosts(session, job.id, state.job.nodes, healthy, exclude)


async def replace_in_the_job(
    scheduler: SchedulerAdapter, hosts: Sequence[str], drain_reason: str, standby: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """Drain the hosts leaving (no job lands on them again) and publish, as an ``in_place``
    step naming the standby, that the job's launchers restart the ranks without them and
    with the standby: the job keeps its allocation and its size. Their steps and the hosts
    drained; the caller records them and waits for a launcher's acknowledgment."""
    steps: list[dict[str, Any]] = []
    drained: list[str] = []
    for host in hosts:
        res = await scheduler.drain(host, drain_reason)
        steps.append(op_step(res))
        if res.ok:
            drained.append(host)
    if all(s["ok"] for s in steps):
        steps.append(
            {
                "op": "in_place",
                "ok": True,
                "standby": standby,
                "output": "the job's launchers are told (advice restart_exclude_hosts "
                f"{', '.join(hosts)}, restart_standby_host {standby}) to restart the ranks in "
                "the same allocation without the excluded hosts, with the standby",
            }
        )
    return steps, drained


def op_step(res: OpResult) -> dict[str, Any]:
    """A scheduler step as a decision's or a swap's outcome records it."""
    return {
        "op": res.op,
        "adapter": res.adapter,
        "ok": res.ok,
        "commands": list(res.commands),
        "output": res.output[-2000:],
        "error": res.error,
        "retryable": res.retryable,
    }
