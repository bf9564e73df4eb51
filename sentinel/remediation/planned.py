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

By default (``at_checkpoint``) the restart loses no work: the decision is held, the job's
advice asks the ranks to checkpoint now (as a proactive swap does), and it is released (then
published as above) once a durable checkpoint newer than the one at the request, and at or past
the step the job had reached, is reported; at once if the job's ranks stopped anyway (nothing
left to save); or after remediation.planned_checkpoint_wait_s, its reason saying that no
checkpoint came and how many steps are lost. The job trains while it waits.

Refused (409) where it cannot be carried out as asked: in a dry run (nothing is carried out),
with remediation.in_place off (no launcher is known to follow the advice), for a job that is
not running, or while the job has an incident open (its own decision restarts the job).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.checkpoints import checkpoint_since, durable_checkpoint
from sentinel.clock import Clock
from sentinel.db import audit
from sentinel.db.audit import Actor
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Decision, Event, Incident, Job, JobRank, Maintenance
from sentinel.incidents.service import IncidentChange, TriageService
from sentinel.incidents.state import OPEN_STATES
from sentinel.remediation.decisions import RESTARTS, DecisionStatus
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
    at_checkpoint: bool = True,
) -> PlannedRestart:
    """Announce the planned stop, open its incident and record the restart in place, in one
    unit of work; ``approved``: what an approved decision waits as (our executor, a puller);
    ``at_checkpoint``: held until the job's next durable checkpoint (see the module)."""
    async with unit_of_work(sessions) as session:
        job = await session.get(Job, job_id)
        if job is None:
            raise UnknownJob(f"no job {job_id!r}")
        await _refuse_unless_possible(session, settings, job)
        ranks = (await session.scalars(select(JobRank).where(JobRank.job_id == job_id))).all()
        now = clock.now()
        why = operator_reason(who.name, reason, code_version)
        version = f" on code version {code_version}" if code_version else ""
        durable = durable_checkpoint(r.checkpoint_step for r in ranks)
        current = max((r.step for r in ranks), default=None)
        # Nothing to wait for when the job has no step past its durable checkpoint.
        wait = at_checkpoint and current is not None and (durable is None or current > durable)
        wait_s = settings.planned_checkpoint_wait_s if wait else 0.0
        maintenance = Maintenance(
            id=uuid.uuid4(),
            hosts=sorted({r.host_id for r in ranks}),
            job_id=job_id,
            # From the request, not the release: the planned incident (which carries the
            # decision) is opened from it now, and a hang while the job waits is this planned
            # work (its ranks stopped: the restart is released at once and restarts them). Until
            # the restart is acknowledged or falls back to a requeue, at the latest; the release
            # shortens it to in_place_ack_s from then, so that a job-level fault after the
            # restart is not read as planned.
            starts_at=now,
            ends_at=now + timedelta(seconds=wait_s + settings.in_place_ack_s),
            # Read as "announced maintenance by <operator>: planned restart in place: <why>".
            reason=f"planned restart in place{version}: {reason}",
            author=who.name,
            created_at=now,
            # Only the job's processes restart: a hardware fault meanwhile is still a fault.
            kind="restart",
        )
        session.add(maintenance)
        change = await triage.open_planned(session, maintenance)
        after = f"after step {durable}, " if durable is not None else ""
        since = (
            f"; held for the job's next durable checkpoint ({after}at or past step {current}): "
            f"the ranks are asked to save one now, at most {settings.planned_checkpoint_wait_s:g} s"
            if wait
            else f", from checkpoint step {durable}"
            if durable is not None
            else ""
        )
        decision = Decision(
            id=uuid.uuid4(),
            incident_id=change.incident.id,
            job_id=job_id,
            action=Action.restart_in_place.value,
            # The operator asked: no approval to wait for, only the checkpoint.
            status=DecisionStatus.held if wait else approved,
            rule=OPERATOR_RESTART_RULE,
            reason=why + since,
            exclude_hosts=[],
            checkpoint_step=durable,
            steps_lost=None if wait else _lost(current, durable),
            outcome={
                "host_action": None,
                "steps": [],
                "category": Category.PLANNED.value,
                "repair": {},
                "maintenance": str(maintenance.id),
                **({"code_version": code_version} if code_version else {}),
                # The step a checkpoint must reach for the held restart to lose no work.
                **({"checkpoint_at_step": current} if wait else {}),
            },
            error=None,
            created_at=now,
            updated_at=now,
        )
        session.add(decision)
        detail = {
            "reason": reason,
            "code_version": code_version,
            "at_checkpoint": wait,
            "decision": str(decision.id),
            "incident": str(change.incident.id),
            "maintenance": str(maintenance.id),
        }
        audit.record(session, who, "job.restart_in_place", f"job:{job_id}", detail, now)
    return PlannedRestart(decision, [change])


@dataclass(frozen=True)
class Release:
    """Why a held planned restart goes now, and from which checkpoint."""

    reason: str
    checkpoint_step: int | None
    steps_lost: int | None


# A later decision that restarts the job's ranks (decisions.RESTARTS) overtakes a held
# planned restart, unless it ended without being carried out.
_NOT_CARRIED_OUT: Final = frozenset(
    {
        DecisionStatus.cancelled,
        DecisionStatus.escalated,
        DecisionStatus.noop,
        DecisionStatus.recorded,
        DecisionStatus.failed,
    }
)


async def overtaken_by(session: AsyncSession, decision: Decision) -> Decision | None:
    """Another incident's decision, made while this planned restart waits, that restarts the
    job itself (an XID on one of its hosts: exclude_and_restart): the ranks start again
    through it, so this one must not restart them a second time."""
    return await session.scalar(
        select(Decision)
        .where(
            Decision.job_id == decision.job_id,
            Decision.id != decision.id,
            Decision.created_at >= decision.created_at,
            Decision.action.in_(RESTARTS),
            Decision.status.not_in(_NOT_CARRIED_OUT),
        )
        .order_by(Decision.created_at)
        .limit(1)
    )


async def fold_into(
    session: AsyncSession, decision: Decision, other: Decision, now: datetime
) -> None:
    """A planned restart overtaken by another decision's restart ends without one of its own:
    that restart starts the ranks again, which is all this one would have done (a new
    configuration or dataset is read as the ranks start). Its announcement ends now, so the
    other restart's stop is read on its own."""
    decision.status = DecisionStatus.noop
    decision.reason += (
        f"; not carried out: decision {str(other.id)[:8]} ({other.rule}, {other.action}) "
        "restarts the job meanwhile, starting its ranks again as this restart would"
    )
    decision.updated_at = now
    maintenance = decision.outcome.get("maintenance")
    row = await session.get(Maintenance, uuid.UUID(maintenance)) if maintenance else None
    if row is not None:
        row.ends_at = min(row.ends_at, now)


async def checkpoint_wait_over(
    session: AsyncSession,
    decision: Decision,
    now: datetime,
    settings: RemediationSettings,
    stop_counts: bool = True,
) -> Release | None:
    """The hold of an operator's restart at the next checkpoint: over once a durable
    checkpoint since the request is reported, the job's ranks stopped anyway (the watchdog
    saw them stalled, or the job ended: nothing left to save; not when ``stop_counts`` is
    false: another decision restarts them), or the wait ran out; None while it lasts."""
    ranks = (await session.scalars(select(JobRank).where(JobRank.job_id == decision.job_id))).all()
    durable = durable_checkpoint(r.checkpoint_step for r in ranks)
    current = max((r.step for r in ranks), default=None)
    reached = decision.outcome.get("checkpoint_at_step")
    if checkpoint_since(durable, decision.checkpoint_step, reached):
        return Release(
            f"checkpoint step {durable} durable: restart now", durable, _lost(current, durable)
        )
    since = f"from checkpoint step {durable}" if durable is not None else "from the start"
    lost = _lost(current, durable)
    losing = f", losing the {lost} steps since" if lost is not None else ""
    if stop_counts and await _stopped_since(session, decision.job_id, decision.created_at):
        return Release(
            f"the job's ranks stopped before a checkpoint (nothing left to save): restart now "
            f"{since}",
            durable,
            lost,
        )
    wait_s = settings.planned_checkpoint_wait_s
    if now >= decision.created_at + timedelta(seconds=wait_s):
        return Release(
            f"no durable checkpoint came in {wait_s:g} s: restart now {since}{losing}",
            durable,
            lost,
        )
    return None


async def release(
    session: AsyncSession,
    decision: Decision,
    went: Release,
    approved: DecisionStatus,
    now: datetime,
    settings: RemediationSettings,
) -> None:
    """Let a held planned restart go (published by the executor as any restart in place);
    its announcement now lasts until the launcher's acknowledgment is due."""
    decision.status = approved
    decision.reason += f"; {went.reason}"
    decision.checkpoint_step = went.checkpoint_step
    decision.steps_lost = went.steps_lost
    decision.updated_at = now
    maintenance = decision.outcome.get("maintenance")
    row = await session.get(Maintenance, uuid.UUID(maintenance)) if maintenance else None
    if row is not None:
        row.ends_at = now + timedelta(seconds=settings.in_place_ack_s)
    await session.flush()  # published in this same pass


async def waiting_for_checkpoint(session: AsyncSession, job_id: str) -> Decision | None:
    """The job's operator restart held for its next checkpoint, if any: the advice asks the
    ranks to checkpoint now while it waits."""
    return await session.scalar(
        select(Decision)
        .where(
            Decision.job_id == job_id,
            Decision.status == DecisionStatus.held,
            Decision.rule == OPERATOR_RESTART_RULE,
        )
        .order_by(Decision.created_at.desc())
        .limit(1)
    )


async def _stopped_since(session: AsyncSession, job_id: str | None, since: datetime) -> bool:
    job = await session.get(Job, job_id) if job_id is not None else None
    if job is None or job.state != "running":
        return True
    stall = await session.scalar(
        select(Event.id)
        .where(
            Event.kind == "heartbeat_stall",
            Event.job_id == job_id,
            Event.observed_at >= since,
        )
        .limit(1)
    )
    return stall is not None


def _lost(current: int | None, durable: int | None) -> int | None:
    return current - durable if current is not None and durable is not None else None


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
