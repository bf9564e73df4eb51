"""Read API for training jobs and their rank → host maps."""

from __future__ import annotations

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
from sentinel.ingest.jobs import incident_counts, job_cadence, job_summaries, job_summary
from sentinel.remediation.decisions import IN_PLACE, DecisionStatus
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
    "durable checkpoint (swap names the host leaving and the spare taking its place); agents "
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
    "restart_code_version: for a roll_back, the code version to restart on. code_version: "
    "the version the job's latest decision rolled it back to, once carried out (a job script "
    "started by a requeue checks it out), else null.",
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
    ranks = list((await session.scalars(select(JobRank).where(JobRank.job_id == job_id))).all())
    incidents = (await incident_counts(session, job_id)).get(job_id, 0)
    out["cadence"], out["cadence_why"] = job_cadence(
        job_summary(job, ranks),
        incidents,
        ctx.clock.now(),
        save_s=save_s,
        restart_s=restart_s,
        interval_s=interval_s,
        write_s=write_s,
    )
    # The latest in-place restart decided for the job while its incident is still open: the
    # launcher restarts the ranks once per decision (restart_decision says which).
    in_place = (
        await session.execute(
            select(Decision.id, Decision.reason, Decision.outcome)
            .join(Incident, Incident.id == Decision.incident_id)
            .where(
                Decision.job_id == job_id,
                Decision.action.in_(IN_PLACE),
                # Published (the executor ran its step) and not yet acknowledged.
                Decision.status == DecisionStatus.awaiting_ack,
                Incident.state != IncidentState.resolved,
            )
            .order_by(Decision.created_at.desc())
            .limit(1)
        )
    ).first()
    out["restart_in_place"] = in_place is not None
    out["restart_decision"] = str(in_place[0]) if in_place is not None else None
    out["restart_reason"] = in_place[1] if in_place is not None else None
    # A rollback: the launcher restarts the ranks on this version (SENTINEL_CODE_VERSION).
    out["restart_code_version"] = in_place[2].get("code_version") if in_place is not None else None
    out["code_version"] = await _rolled_back_to(session, job_id)
    return out


async def _rolled_back_to(session: AsyncSession, job_id: str) -> str | None:
    """The version the job's latest decision rolled it back to, once carried out (published
    to its launcher, or requeued): what a job script without a launcher checks out when it
    starts (docs/launcher.md). None once a later decision was made for the job."""
    latest = (
        await session.execute(
            select(Decision.action, Decision.status, Decision.outcome)
            .where(Decision.job_id == job_id)
            .order_by(Decision.created_at.desc())
            .limit(1)
        )
    ).first()
    if latest is None or latest[0] != "roll_back":
        return None
    carried_out = latest[1] in (DecisionStatus.awaiting_ack, DecisionStatus.done)
    version = latest[2].get("code_version") if carried_out else None
    return version if isinstance(version, str) else None
