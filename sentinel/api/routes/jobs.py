"""Read API for training jobs and their rank → host maps."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel import auth
from sentinel.api.deps import Ctx, Session, Viewer, require
from sentinel.api.errors import error_responses
from sentinel.api.schemas import JobDetail, JobOut, RankOut
from sentinel.auth import Principal
from sentinel.db.models import Decision, Incident, Job, JobRank
from sentinel.incidents.state import IncidentState
from sentinel.ingest.jobs import (
    incident_counts,
    job_cadence,
    job_summaries,
    job_summary,
    measured_times,
)
from sentinel.remediation.decisions import (
    CHANGED_RESTARTS,
    IN_PLACE,
    IN_THE_JOB,
    DecisionStatus,
    done_by_a_launcher,
)
from sentinel.remediation.planned import waiting_for_checkpoint
from sentinel.remediation.swap import swap_in_the_job
from sentinel.wire.v1 import Name

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


@router.get("", response_model=list[JobOut], summary="Training jobs seen through heartbeats")
async def list_jobs(session: Session, _: Viewer) -> list[dict[str, Any]]:
    return await job_summaries(session)


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
    out = job_summary(job, ranks)
    out["ranks"] = [RankOut.model_validate(r, from_attributes=True) for r in ranks]
    return out


Seconds = Annotated[float | None, Query(gt=0, le=10 * 365 * 86400)]
# The agents ask too, to pass the advice on to the ranks in their heartbeat replies.
AdviceReader = Annotated[Principal, Depends(require(auth.READ | auth.REPORT))]


@router.get(
    "/{job_id}/advice",
    summary="What the job's launcher should do now: checkpoint, and how often",
    description="checkpoint_now is true while a proactive swap waits for the job's next "
    "durable checkpoint (swap names the host leaving and the spare taking its place), or an "
    "operator's restart in place at the next checkpoint does (reason: its decision's); agents "
    "may ask, to pass it on in their heartbeat replies. cadence: "
    "the checkpoint interval that minimises expected lost time (Daly) from the job's measured "
    "MTTF (its age over its incidents) and its ranks' measured checkpoint save (the blocking "
    "part), background write and startup times (the heartbeat client reports them), or the "
    "save_s, write_s and restart_s a launcher gives instead; never shorter than one "
    "checkpoint's background write; null with cadence_why when a time is missing. "
    "restart_in_place: the ranks are to be restarted on the same allocation "
    "(restart_decision: once per decision), from when the decision is published until the "
    "launcher acknowledges it (POST /api/v1/decisions/{id}/ack) or it "
    "falls back to a requeue (remediation.in_place_ack_s), while its incident is open; "
    "restart_code_version: for a roll_back (or an operator's planned version change), the "
    "code version to restart on. code_version: the version the job's latest decision rolled "
    "it back or changed it to, once carried out (a job script "
    "started by a requeue checks it out), else null. restart_skip_steps: for a skip_data, the "
    "first and last step (inclusive) whose data batches the restarted job skips "
    "(SENTINEL_SKIP_STEPS). skip_steps: the same for the job's latest decision once carried "
    "out (a job script started by a requeue skips them), else null. restart_exclude_hosts and "
    "restart_standby_host: an exclusion carried out in the job (remediation.in_place, a "
    "standby host in the job's allocation): the excluded hosts' launchers stop their command, "
    "the others and the standby's restart it without them (SENTINEL_EXCLUDED_HOSTS, "
    "SENTINEL_STANDBY_HOST); published until the job's incident resolves (restart_in_place "
    "false once acknowledged, for the launchers that have not acted yet); else [] and null. "
    "A proactive swap carried out in the job onto a standby host is named the same way "
    "(restart_decision: the swap's id, acknowledged at the same route; restart_exclude_hosts: "
    "the degraded host), until the job trains on the standby (once acknowledged, at most "
    "remediation.in_place_ack_s).",
    responses=error_responses(404),
)
async def job_advice(
    ctx: Ctx,
    session: Session,
    _: AdviceReader,
    job_id: Name,
    save_s: Seconds = None,
    restart_s: Seconds = None,
    interval_s: Seconds = None,
    write_s: Seconds = None,
) -> dict[str, Any]:
    job = await session.get(Job, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}")
    out = await ctx.remediation.swaps.advice(session, job_id)
    held = await waiting_for_checkpoint(session, job_id)
    if held is not None:
        out["checkpoint_now"], out["reason"] = True, held.reason
    incidents = (await incident_counts(session, job_id)).get(job_id, 0)
    out["cadence"], out["cadence_why"] = job_cadence(
        await measured_times(session, job),
        incidents,
        ctx.clock.now(),
        save_s=save_s,
        restart_s=restart_s,
        interval_s=interval_s,
        write_s=write_s,
    )
    # The latest restart the job's launchers carry out (in place, a rollback, a data skip, an
    # exclusion onto a standby) while its incident is open: each launcher acts once per
    # decision (restart_decision says which). Published from when the executor ran its step;
    # once the first launcher acknowledged it, still named (with restart_in_place false: the
    # restarted ranks, told through the heartbeat replies, are not asked again) until the job
    # trains again, for the other hosts' launchers that have not polled since: a multi-host
    # job has one launcher per host.
    candidates = (
        await session.execute(
            select(
                Decision.id,
                Decision.reason,
                Decision.outcome,
                Decision.exclude_hosts,
                Decision.status,
                Decision.created_at,
            )
            .join(Incident, Incident.id == Decision.incident_id)
            .where(
                Decision.job_id == job_id,
                Decision.action.in_(IN_PLACE | IN_THE_JOB),
                Decision.status.in_((DecisionStatus.awaiting_ack, DecisionStatus.done)),
                Incident.state != IncidentState.resolved,
            )
            .order_by(Decision.created_at.desc())
            .limit(1)
        )
    ).all()
    # (id, reason, outcome, hosts leaving, awaiting its first acknowledgment, created_at)
    in_place = next(
        (
            (row[0], row[1], row[2], list(row[3]), row[4] == DecisionStatus.awaiting_ack, row[5])
            for row in candidates
            if row[4] == DecisionStatus.awaiting_ack or done_by_a_launcher(row[2])
        ),
        None,
    )
    # A proactive swap carried out in the job is a Swap row (one per degraded finding, with its
    # own caps, lease and outcome), not a Decision (one per incident; a swap has none). The
    # launchers need the same thing from both (hosts leaving, the standby, an id to act on once
    # and acknowledge), so the swap is named in the same fields, restart_decision its id, and
    # acknowledged through the same route (POST /api/v1/decisions/{id}/ack takes a swap's id
    # too): one way to publish a replacement in the job, which deployed launchers follow as is.
    acknowledged_since = ctx.clock.now() - timedelta(
        seconds=ctx.settings.remediation.in_place_ack_s
    )
    swap = await swap_in_the_job(session, job_id, acknowledged_since)
    if swap is not None and (in_place is None or swap.created_at > in_place[5]):
        pending = swap.status == "awaiting_ack"
        in_place = (swap.id, swap.reason, swap.outcome, [swap.host_id], pending, swap.created_at)
    out["restart_in_place"] = in_place is not None and in_place[4]
    out["restart_decision"] = str(in_place[0]) if in_place is not None else None
    out["restart_reason"] = in_place[1] if in_place is not None else None
    # A rollback: the launcher restarts the ranks on this version (SENTINEL_CODE_VERSION).
    out["restart_code_version"] = in_place[2].get("code_version") if in_place is not None else None
    # A data skip: the launcher restarts the ranks skipping these steps' batches.
    out["restart_skip_steps"] = in_place[2].get("skip_steps") if in_place is not None else None
    # A replacement in the job: the launchers restart without these hosts, with the standby.
    standby = in_place[2].get("standby_host") if in_place is not None else None
    out["restart_exclude_hosts"] = in_place[3] if in_place is not None and standby else []
    out["restart_standby_host"] = standby
    changed = await _changed_by(session, job_id)
    version, skip = changed.get("code_version"), changed.get("skip_steps")
    out["code_version"] = version if isinstance(version, str) else None
    out["skip_steps"] = skip if isinstance(skip, list) else None
    return out


async def _changed_by(session: AsyncSession, job_id: str) -> dict[str, Any]:
    """The outcome of the job's latest decision if it changed what the job runs (a rollback,
    a data skip, an operator's planned version change, also once it fell back to a requeue)
    and was carried out (published to its launcher, or requeued): the version a
    job script without a launcher checks out, the steps whose data it skips, when it starts
    (docs/launcher.md). Empty once a later decision was made for the job."""
    latest = (
        await session.execute(
            select(Decision.action, Decision.status, Decision.outcome)
            .where(Decision.job_id == job_id)
            .order_by(Decision.created_at.desc())
            .limit(1)
        )
    ).first()
    if latest is None or (latest[0] not in CHANGED_RESTARTS and not latest[2].get("code_version")):
        return {}
    carried_out = latest[1] in (DecisionStatus.awaiting_ack, DecisionStatus.done)
    return dict(latest[2]) if carried_out else {}
