"""The jobs heartbeats made known, summed up: ranks and hosts reporting, steps, the durable
checkpoint, the code version, how long a start and a checkpoint take, and the checkpoint cadence
that loses least (what the API and the dashboard list)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.checkpoints import code_versions, durable_checkpoint, job_timings
from sentinel.db.models import Incident, Job, JobRank
from sentinel.reports.cadence import advise


def job_summary(job: Job, ranks: list[JobRank]) -> dict[str, Any]:
    steps = [r.step for r in ranks]
    durable = durable_checkpoint(r.checkpoint_step for r in ranks)
    versions = code_versions(ranks)
    timings = job_timings(ranks)
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
        "startup_s": timings.startup_s,
        "checkpoint_save_s": timings.checkpoint_save_s,
        "checkpoint_write_s": timings.checkpoint_write_s,
    }


async def job_summaries(session: AsyncSession) -> list[dict[str, Any]]:
    """Every job, the one seen last first."""
    jobs = (await session.scalars(select(Job).order_by(Job.last_seen.desc()))).all()
    ranks: dict[str, list[JobRank]] = defaultdict(list)
    for r in (await session.scalars(select(JobRank))).all():
        ranks[r.job_id].append(r)
    return [job_summary(j, ranks[j.id]) for j in jobs]


async def incident_counts(session: AsyncSession, job_id: str | None = None) -> dict[str, int]:
    """Interruptions seen per job (each incident is one): the job's measured MTTF's divisor."""
    query = select(Incident.job_id, func.count()).where(Incident.job_id.is_not(None))
    if job_id is not None:
        query = query.where(Incident.job_id == job_id)
    rows = await session.execute(query.group_by(Incident.job_id))
    return {job: int(n) for job, n in rows.all() if job is not None}


async def measured_times(session: AsyncSession, job: Job) -> dict[str, Any]:
    """What job_cadence reads of a job, without loading its ranks: the advice is polled by
    every host's launcher, and a 16,384-rank job has as many rows (the slowest rank's times,
    as checkpoints.job_timings takes them, as one aggregate)."""
    row = (
        await session.execute(
            select(
                func.max(JobRank.startup_s),
                func.max(JobRank.checkpoint_save_s),
                func.max(JobRank.checkpoint_write_s),
            ).where(JobRank.job_id == job.id)
        )
    ).one()
    return {
        "first_seen": job.first_seen,
        "startup_s": row[0],
        "checkpoint_save_s": row[1],
        "checkpoint_write_s": row[2],
    }


def job_cadence(
    summary: dict[str, Any],
    incidents: int,
    now: datetime,
    *,
    save_s: float | None = None,
    restart_s: float | None = None,
    interval_s: float | None = None,
    write_s: float | None = None,
) -> tuple[dict[str, Any] | None, str | None]:
    """The checkpoint interval that loses least (Daly) for this job, from its measured MTTF (its
    age over its interruptions) and its ranks' measured save, write and startup times (the
    job's summary, or measured_times), each of which the caller (a launcher) may give instead:
    (the advice, None) or (None, why not)."""
    given = {"save_s": save_s, "restart_s": restart_s, "write_s": write_s}
    measured = {
        "save_s": summary.get("checkpoint_save_s"),
        "restart_s": summary.get("startup_s"),
        "write_s": summary.get("checkpoint_write_s"),
    }
    used = {k: given[k] if given[k] is not None else measured[k] for k in given}
    save, restart = used["save_s"], used["restart_s"]
    if save is None or restart is None:
        return None, (
            "no checkpoint save or startup time yet: the heartbeat client reports them "
            "(beat(..., checkpoint_save_s=...)), or give save_s and restart_s"
        )
    age_s = (now - summary["first_seen"]) / timedelta(seconds=1)
    if incidents == 0 or age_s <= 0:
        return None, "no interruption seen yet: the job's MTTF is not measured"
    mttf_s = age_s / incidents
    # The client reports to 0.1 ms: a save that blocked less counts as that much.
    a = advise(max(save, 1e-4), restart, mttf_s, interval_s, used["write_s"] or None)
    return {
        "interval_s": a.interval_s,
        "young_interval_s": a.young_interval_s,
        "expected_ettr": a.ettr,
        "current_interval_s": a.current_interval_s,
        "current_ettr": a.current_ettr,
        "mttf_s": mttf_s,
        "save_s": save,
        "restart_s": restart,
        "write_s": a.write_s,
        "write_bound": a.write_bound,
        # Which inputs the launcher gave and which the ranks measured.
        "measured": sorted(k for k in given if given[k] is None and measured[k] is not None),
        "reason": a.reason(),
    }, None
