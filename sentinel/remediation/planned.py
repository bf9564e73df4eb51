"""An operator's restart in place for planned job-level work (a configuration or dataset update,
a planned code version change): the job's launchers restart its ranks on the allocation it
holds instead of a requeue (issue 17: Llama 3's planned interruptions, sec. 3.3.4).

A decision belongs to an incident (exactly one per incident), so the request opens the smallest
honest one: the job's planned incident, triage's own verdict on the maintenance the request
announces for the job's hosts (category planned, its evidence the announcement, which names the
operator and why). Its decision is a restart_in_place by OperatorRestartInPlace whose reason
says who asked and why. From there it is the policy's restart in place: the executor publishes
it in the job's advice (awaiting_ack), a launcher restarts the ranks and acknowledges it, or it
falls back to a requeue when none does in in_place_ack_s; the watchdog resolves the incident
once the restarted ranks advance. The announcement lasts until that fallback's deadline, so the
stop the restart causes reads as this planned work (it joins the incident) and no unexpected
interruption is opened for it. The announcement is a restart's (Maintenance.kind "restart"):
it explains what stopping the ranks causes, not a hardware, host or fabric fault on any of the
job's hosts meanwhile, which opens its own incident and decision (the host's exclusion).

Refused (409) where it cannot be carried out as asked: in a dry run (nothing is carried out),
with remediation.in_place off (no launcher is known to follow the advice), for a job that is
not running, or while the job has an incident open (its own decision restarts the job).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.checkpoints import durable_checkpoint
from sentinel.clock import Clock
from sentinel.db import audit
from sentinel.db.audit import Actor
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Decision, Incident, Job, JobRank, Maintenance
from sentinel.incidents.service import IncidentChange, TriageService
from sentinel.incidents.state import OPEN_STATES
from sentinel.remediation.decisions import DecisionStatus
from sentinel.remediation.policy import Action
from sentinel.remediation.settings import RemediationSettings
from sentinel.triage.taxonomy import Category

# The rule a planned restart's decision names: an operator's, not the policy's.
OPERATOR_RESTART_RULE: Final = "OperatorRestartInPlace"


class UnknownJob(LookupError):
    """HTTP 404."""


class PlannedRestartRefused(Exception):
    """The restart cannot be carried out as asked: HTTP 409."""


@dataclass(frozen=True)
class PlannedRestart:
    """The decision recorded and the incident change to hand to the stages, committed."""

    decision: Decision
    changes: list[IncidentChange]


def operator_reason(who: str, reason: str, code_version: str | None = None) -> str:
    """What the decision says: who asked for the restart, and why."""
    version = f" on code version {code_version} (SENTINEL_CODE_VERSION)" if code_version else ""
    return (
        f"restart in place asked by {who}: {reason}; planned work: the job's launchers restart "
        f"the ranks{version} on the allocation it holds (no requeue)"
    )


async def restart_in_place(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    settings: RemediationSettings,
    triage: TriageService,
    approved: DecisionStatus,
    who: Actor,
    job_id: str,
    reason: str,
    code_version: str | None = None,
) -> PlannedRestart:
    """Announce the planned stop, open its incident and record the restart in place, in one
    unit of work; ``approved``: what an approved decision waits as (our executor, a puller)."""
    async with unit_of_work(sessions) as session:
        job = await session.get(Job, job_id)
        if job is None:
            raise UnknownJob(f"no job {job_id!r}")
        await _refuse_unless_possible(session, settings, job)
        ranks = (await session.scalars(select(JobRank).where(JobRank.job_id == job_id))).all()
        now = clock.now()
        why = operator_reason(who.name, reason, code_version)
        version = f" on code version {code_version}" if code_version else ""
        maintenance = Maintenance(
            id=uuid.uuid4(),
            hosts=sorted({r.host_id for r in ranks}),
            job_id=job_id,
            starts_at=now,
            # Until the restart is acknowledged or falls back to a requeue.
            ends_at=now + timedelta(seconds=settings.in_place_ack_s),
            # Read as "announced maintenance by <operator>: planned restart in place: <why>".
            reason=f"planned restart in place{version}: {reason}",
            author=who.name,
            created_at=now,
            # Only the job's processes restart: a hardware fault meanwhile is still a fault.
            kind="restart",
        )
        session.add(maintenance)
        change = await triage.open_planned(session, maintenance)
        durable = durable_checkpoint(r.checkpoint_step for r in ranks)
        current = max((r.step for r in ranks), default=None)
        decision = Decision(
            id=uuid.uuid4(),
            incident_id=change.incident.id,
            job_id=job_id,
            action=Action.restart_in_place.value,
            # The operator asked: no approval to wait for.
            status=approved,
            rule=OPERATOR_RESTART_RULE,
            reason=why + (f", from checkpoint step {durable}" if durable is not None else ""),
            exclude_hosts=[],
            checkpoint_step=durable,
            steps_lost=current - durable if current is not None and durable is not None else None,
            outcome={
                "host_action": None,
                "steps": [],
                "category": Category.PLANNED.value,
                "repair": {},
                "maintenance": str(maintenance.id),
                **({"code_version": code_version} if code_version else {}),
            },
            error=None,
            created_at=now,
            updated_at=now,
        )
        session.add(decision)
        detail = {
            "reason": reason,
            "code_version": code_version,
            "decision": str(decision.id),
            "incident": str(change.incident.id),
            "maintenance": str(maintenance.id),
        }
        audit.record(session, who, "job.restart_in_place", f"job:{job_id}", detail, now)
    return PlannedRestart(decision, [change])


async def _refuse_unless_possible(
    session: AsyncSession, settings: RemediationSettings, job: Job
) -> None:
    if settings.mode == "dry_run":
        raise PlannedRestartRefused(
            "remediation.mode is dry_run: Sentinel records decisions and carries none out"
        )
    if not settings.in_place:
        raise PlannedRestartRefused(
            "remediation.in_place is off: no launcher is known to restart this job's ranks in "
            "place (docs/launcher.md); requeue the job through its scheduler instead"
        )
    if job.state != "running":
        raise PlannedRestartRefused(f"job {job.id} is {job.state}, not running: nothing to restart")
    incident = await session.scalar(
        select(Incident)
        .where(Incident.job_id == job.id, Incident.state.in_(OPEN_STATES))
        .order_by(Incident.opened_at)
        .limit(1)
    )
    if incident is not None:
        raise PlannedRestartRefused(
            f"job {job.id} has incident {incident.id} {incident.state} ({incident.category}): "
            "its decision restarts the job; wait for it to resolve, or resolve it first"
        )
