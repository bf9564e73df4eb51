"""Decide once per incident, execute once per decision, record every step with its outcome.

Exactly once, also with several replicas on one PostgreSQL: a decision is inserted with
ON CONFLICT DO NOTHING on its unique incident_id, and an execution starts only by moving the
decision from 'approved' to 'executing' in one conditional UPDATE that a single process wins.
No scheduler command (sinfo, scontrol) runs inside a database transaction: the spare hosts are
asked for before the decision's transaction opens, and an execution is claim (committed) →
scheduler steps → outcome recorded in a new transaction.

The claim is a lease (claimed_by, lease_until, attempts): an execution that raises, or whose
process dies so that its lease runs out, is attempted again up to max_attempts when the
scheduler may repeat its steps (the adapter's idempotent_steps), else escalated; a decision
that fails or is escalated this way is handed to the incident stages so that people are told.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, Select, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.checkpoints import code_versions, durable_checkpoint
from sentinel.clock import Clock
from sentinel.db import audit
from sentinel.db.audit import SENTINEL, Actor
from sentinel.db.engine import unit_of_work
from sentinel.db.leases import process_identity
from sentinel.db.models import (
    AuditEntry,
    Decision,
    Event,
    EventDisposition,
    Host,
    Incident,
    Job,
    JobRank,
)
from sentinel.db.upsert import dialect_of, insert_for
from sentinel.incidents.service import IncidentChange, TriageService
from sentinel.incidents.state import IncidentState
from sentinel.incidents.verdicts import verdict_of
from sentinel.remediation import planned
from sentinel.remediation.decisions import (
    CHANGED_RESTARTS,
    REQUEUES,
    DecisionStatus,
    fall_back_to_requeue,
)
from sentinel.remediation.degraded import leading_indicator
from sentinel.remediation.lease import claim_lease
from sentinel.remediation.outstanding import Outstanding, outstanding
from sentinel.remediation.policy import (
    DEFAULT_POLICY,
    Action,
    PastDecision,
    Proposal,
    RemediationContext,
    RemediationPolicy,
    Repair,
    RepairProposal,
)
from sentinel.remediation.settings import RemediationSettings
from sentinel.remediation.standby import job_standbys, op_step, replace_in_the_job
from sentinel.remediation.swap import SwapService
from sentinel.schedulers.base import Operation, SchedulerAdapter
from sentinel.triage.signals import blank_numbers
from sentinel.triage.taxonomy import Category
from sentinel.triage.verdict import Verdict

log = logging.getLogger(__name__)

PROVISIONAL = frozenset({Category.NCCL_WATCHDOG_TIMEOUT, Category.UNKNOWN})

Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class Decided:
    """The decision recorded (None when one existed already) and the incident changes it made
    (a 'mitigating' transition when there is nothing to do), committed."""

    decision: Decision | None
    changes: list[IncidentChange] = field(default_factory=list)


class RemediationService:
    def __init__(
        self,
        clock: Clock,
        settings: RemediationSettings,
        scheduler: SchedulerAdapter,
        triage: TriageService,
        policy: RemediationPolicy = DEFAULT_POLICY,
    ) -> None:
        self._clock = clock
        self._settings = settings
        self._scheduler = scheduler
        self._triage = triage
        self._policy = policy
        # Who holds an execution lease: enough to find the process in the logs.
        self.executor_id = process_identity()
        # Proactive swaps of degraded hosts onto hot spares: their own decisions, same loop.
        self.swaps = SwapService(clock, settings, scheduler)

    @property
    def scheduler(self) -> SchedulerAdapter:
        return self._scheduler

    @scheduler.setter
    def scheduler(self, scheduler: SchedulerAdapter) -> None:
        """Swapping the adapter (tests, replays) swaps it for the proactive swaps too."""
        self._scheduler = scheduler
        self.swaps.scheduler = scheduler

    # ------------------------------------------------------------------ deciding

    async def on_incident_change(
        self, sessions: Sessions, change: IncidentChange
    ) -> list[IncidentChange]:
        """Incident stage: decide at once on a firm verdict; provisional ones wait to settle
        (run_due). Returns the changes the decision made."""
        if change.kind in ("opened", "reclassified") and not self._provisional(change.incident):
            return (await self.decide(sessions, change.incident.id)).changes
        return []

    def _provisional(self, incident: Incident) -> bool:
        return Category(incident.category) in PROVISIONAL and incident.culprit_host is None

    async def decide(self, sessions: Sessions, incident_id: uuid.UUID) -> Decided:
        """Record the decision for this incident, unless one exists."""
        async with unit_of_work(sessions) as session:
            incident = await session.get(Incident, incident_id)
            if incident is None or await self._decided(session, incident_id):
                return Decided(None)
            job = await session.get(Job, incident.job_id) if incident.job_id else None
        # sinfo runs here, between the transactions, never inside one.
        spare_hosts = await self._spare_hosts(incident.culprit_host)
        if self._settings.in_place and incident.culprit_host and job is not None:
            # A standby host the job holds takes the culprit's place in the job (no requeue).
            standbys = await self._standbys(sessions, job, (incident.culprit_host,))
            if standbys:
                spare_hosts = (spare_hosts or 0) + len(standbys)
        async with unit_of_work(sessions) as session:
            incident = await session.get(Incident, incident_id)
            if incident is None:
                return Decided(None)
            return await self._decide(session, incident, spare_hosts)

    async def _decided(self, session: AsyncSession, incident_id: uuid.UUID) -> bool:
        return (
            await session.scalar(select(Decision.id).where(Decision.incident_id == incident_id))
        ) is not None

    async def _decide(
        self, session: AsyncSession, incident: Incident, spare_hosts: int | None
    ) -> Decided:
        ctx = await self._context(session, incident, spare_hosts)
        proposal = self._policy.decide(ctx)
        now = self._clock.now()
        status = self._initial_status(proposal)
        decision_id = uuid.uuid4()
        steps_lost = (
            ctx.current_step - ctx.checkpoint_step
            if ctx.current_step is not None and ctx.checkpoint_step is not None
            else None
        )
        ins = insert_for(dialect_of(session), Decision)
        row: dict[str, Any] = {
            "id": decision_id,
            "incident_id": incident.id,
            "job_id": incident.job_id,
            "action": proposal.action.value,
            "status": status,
            "rule": proposal.rule,
            "reason": proposal.reason
            + (f"; {proposal.repair.rule}: {proposal.repair.reason}" if proposal.repair else ""),
            "exclude_hosts": list(proposal.exclude_hosts),
            "checkpoint_step": ctx.checkpoint_step,
            "steps_lost": steps_lost,
            "outcome": {
                "host_action": proposal.host_action,
                "steps": [],
                "category": incident.category,
                "repair": _repair_record(proposal.repair),
                **({"code_version": proposal.code_version} if proposal.code_version else {}),
                **({"skip_steps": list(proposal.skip_steps)} if proposal.skip_steps else {}),
                # Where the job was when it failed: the next failure is compared with it.
                **({"failed_at_step": ctx.current_step} if ctx.current_step is not None else {}),
            },
            "error": None,
            "created_at": now,
            "updated_at": now,
        }
        result = await session.execute(
            ins.on_conflict_do_nothing(index_elements=["incident_id"]).returning(ins.table.c.id),
            [row],
        )
        if not result.all():
            return Decided(None)  # another process (or an earlier call) decided first
        decision = await session.get(Decision, decision_id)
        assert decision is not None
        log.info("decision for incident %s: %s (%s)", incident.id, proposal.action, proposal.rule)
        if proposal.action != Action.none:
            return Decided(decision)
        # Nothing to do, but the interruption is not over until the job trains again: the
        # incident stays open (mitigating) so that the rest of the planned work joins it.
        change = await self._triage.transition(
            session,
            incident,
            IncidentState.mitigating,
            f"{proposal.rule}: {proposal.reason}",
            "remediation",
        )
        return Decided(decision, [change])

    def _initial_status(self, proposal: Proposal) -> DecisionStatus:
        if proposal.action == Action.none:
            return DecisionStatus.noop
        if proposal.action == Action.escalate:
            return DecisionStatus.escalated
        if self._settings.mode == "dry_run":
            return DecisionStatus.recorded
        if proposal.action == Action.hold:
            return DecisionStatus.held
        return (
            DecisionStatus.proposed if self._settings.mode == "approve" else self.approved_status()
        )

    async def restart_in_place(
        self,
        sessions: Sessions,
        who: Actor,
        job_id: str,
        reason: str,
        code_version: str | None,
        at_checkpoint: bool = True,
    ) -> planned.PlannedRestart:
        """An operator's restart in place for planned work (remediation/planned.py)."""
        return await planned.restart_in_place(
            sessions,
            self._clock,
            self._settings,
            self._triage,
            self.approved_status(),
            who,
            job_id,
            reason,
            code_version,
            at_checkpoint,
        )

    def approved_status(self) -> DecisionStatus:
        """What an approved decision waits as: for our executor, or for an outside puller."""
        return (
            DecisionStatus.pending if self._settings.executor == "pull" else DecisionStatus.approved
        )

    async def _context(
        self, session: AsyncSession, incident: Incident, spare_hosts: int | None
    ) -> RemediationContext:
        now = self._clock.now()
        window_start = now - timedelta(seconds=self._settings.restart_window_s)
        verdict = verdict_of(incident)
        xids = tuple(sorted({e.xid for e in verdict.evidence if e.xid is not None}))
        causes = [e for e in verdict.evidence if e.role == "cause"]
        past: list[PastDecision] = []
        ranks: Sequence[JobRank] = []
        if incident.job_id is not None:
            rows = (
                await session.execute(
                    select(Decision, Incident)
                    .join(Incident, Incident.id == Decision.incident_id)
                    .where(
                        Decision.job_id == incident.job_id,
                        Decision.created_at >= window_start,
                        Decision.incident_id != incident.id,
                    )
                )
            ).all()
            past = [
                PastDecision(
                    i.category,
                    d.action,
                    d.status,
                    d.created_at,
                    _signature(verdict_of(i)),
                    d.outcome.get("failed_at_step"),
                )
                for d, i in rows
            ]
            ranks = (
                await session.scalars(select(JobRank).where(JobRank.job_id == incident.job_id))
            ).all()
        durable = durable_checkpoint(r.checkpoint_step for r in ranks)
        versions = code_versions(ranks)
        drains, reboots, resets = [
            await self._audited_last_hour(session, action)
            for action in ("host.drain", REPAIR_AUDIT["reboot"], REPAIR_AUDIT["reset_gpu"])
        ]
        return RemediationContext(
            category=Category(incident.category),
            culprit_host=incident.culprit_host,
            culprit_gpu=incident.culprit_gpu,
            confidence=incident.confidence,
            xids=xids,
            signature=_signature(verdict),
            job_id=incident.job_id,
            job_hosts=len({r.host_id for r in ranks}),
            checkpoint_step=durable,
            current_step=max((r.step for r in ranks), default=None),
            past=tuple(past),
            drains_last_hour=drains,
            spare_hosts=spare_hosts,
            settings=self._settings,
            reboots_last_hour=reboots,
            gpu_resets_last_hour=resets,
            link_flapped=link_flapped(verdict),
            code_version=versions.current,
            trained_version=versions.trained,
            leading_only=bool(causes) and all(leading_indicator(e.text, e.xid) for e in causes),
        )

    async def _audited_last_hour(self, session: AsyncSession, action: str) -> int:
        since = self._clock.now() - timedelta(hours=1)
        count = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == action, AuditEntry.at >= since)
        )
        return int(count or 0)

    async def _spare_hosts(self, culprit_host: str | None) -> int | None:
        """Idle hosts the scheduler reports, when it reports any (a dry run does not); asked
        only when there is a host to replace."""
        if culprit_host is None:
            return None
        result = await self.scheduler.nodes()
        return result.counts().idle if result.ok and result.nodes else None

    async def _standbys(self, sessions: Sessions, job: Job, exclude: Sequence[str]) -> list[str]:
        return await job_standbys(sessions, self.scheduler, job, self.swaps.pool.healthy, exclude)

    def _in_the_job(self, decision: Decision) -> bool:
        """An exclusion that may be carried out in the job, onto a standby host of its
        allocation: in-place restarts on (a launcher follows the contract), not already
        published to the launchers (one that fell back is requeued)."""
        return (
            decision.action == Action.exclude_and_restart
            and self._settings.in_place
            and bool(decision.exclude_hosts)
            and not any(s.get("op") == "in_place" for s in decision.outcome.get("steps", []))
        )

    # ------------------------------------------------------------------ executing

    async def claim(self, session: AsyncSession, decision_id: uuid.UUID) -> bool:
        """Take the execution lease of an approved decision; one process wins."""
        now = self._clock.now()
        return await claim_lease(
            session, Decision, decision_id, self.executor_id, self._settings.lease_s, now
        )

    async def execute(self, sessions: Sessions, decision_id: uuid.UUID) -> list[IncidentChange]:
        """Carry out an approved decision if this process claims it: the claim commits, the
        scheduler steps run with no transaction open, and their results land in
        decision.outcome in a new one. An attempt that raises releases the decision for the
        next one, when there is one. Returns the incident changes made."""
        async with unit_of_work(sessions) as session:
            if not await self.claim(session, decision_id):
                return []
            decision = await session.get(Decision, decision_id)
            assert decision is not None
            job = await session.get(Job, decision.job_id) if decision.job_id else None
        try:
            steps, drained = await self._carry_out(decision, job, sessions)
        except Exception as exc:
            log.exception("executing decision %s raised", decision_id)
            async with unit_of_work(sessions) as session:
                decision = await session.get(Decision, decision_id)
                assert decision is not None
                return await self._attempt_failed(
                    session, decision, f"attempt {decision.attempts} raised {exc!r}"
                )
        async with unit_of_work(sessions) as session:
            return await self._record(session, decision_id, steps, drained)

    async def _attempt_failed(
        self, session: AsyncSession, decision: Decision, error: str
    ) -> list[IncidentChange]:
        """An attempt ended without a record of its steps (it raised, or its process died):
        release the decision for another attempt when its steps may run again, else stop."""
        decision.error = error
        decision.claimed_by = None
        decision.lease_until = None
        decision.updated_at = self._clock.now()
        repeated = self._steps(decision) - self.scheduler.idempotent_steps
        if decision.attempts >= self._settings.max_attempts:
            decision.status = DecisionStatus.failed
            decision.error = f"gave up after {decision.attempts} attempts; last: {error}"
        elif repeated:
            decision.status = DecisionStatus.escalated
            decision.error = (
                f"{error}; not retried: {', '.join(sorted(repeated))} on "
                f"{self.scheduler.name} may have run and is not idempotent"
            )
        else:
            decision.status = DecisionStatus.approved
            log.warning("decision %s released for another attempt: %s", decision.id, error)
            return []
        return await self._tell(session, decision)

    async def _tell(self, session: AsyncSession, decision: Decision) -> list[IncidentChange]:
        """The change that takes a failed or escalated execution through the incident stages
        (alerting announces it)."""
        log.error("decision %s %s: %s", decision.id, decision.status, decision.error)
        incident = await session.get(Incident, decision.incident_id)
        return [] if incident is None else [IncidentChange(incident, "decision_failed")]

    def _changed_in_place(self, decision: Decision) -> bool:
        """A rollback or a data skip is the launcher's where there is one (in-place restarts
        on), unless it already did not happen in place (no acknowledgment in time): then it is
        requeued, the version or the steps named in its reason and in the advice (code_version,
        skip_steps) for the job script."""
        return (
            decision.action in CHANGED_RESTARTS
            and self._settings.in_place
            and not any(s.get("op") == "in_place" for s in decision.outcome.get("steps", []))
        )

    @staticmethod
    def _steps(decision: Decision) -> frozenset[Operation]:
        """The scheduler steps carrying out this decision takes."""
        steps: set[Operation] = {"drain"} if decision.exclude_hosts else set()
        if decision.action in REQUEUES:
            steps.add("requeue")
        repair = _repair_step(decision)
        if repair is not None:
            steps.add(repair)
        return frozenset(steps)

    async def _carry_out(
        self, decision: Decision, job: Job | None, sessions: Sessions | None = None
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """The scheduler steps: drain the excluded hosts, requeue, then the drained hosts'
        repair (a reboot or a GPU reset, once the job has left them); the steps' results and
        the hosts drained."""
        steps: list[dict[str, Any]] = []
        drained: list[str] = []
        if decision.action == Action.restart_in_place or self._changed_in_place(decision):
            # Nothing for the scheduler: the launcher reads the advice and restarts the ranks.
            version = decision.outcome.get("code_version")
            skip = decision.outcome.get("skip_steps")
            steps.append(
                {
                    "op": "in_place",
                    "ok": True,
                    "output": "the job's launcher is told (advice restart_in_place) to restart "
                    "the ranks on the same allocation"
                    + (f", on code version {version} (SENTINEL_CODE_VERSION)" if version else "")
                    + (
                        f", skipping the batches of steps {skip[0]}-{skip[1]} (SENTINEL_SKIP_STEPS)"
                        if skip
                        else ""
                    ),
                }
            )
            return steps, drained
        if self._in_the_job(decision) and job is not None and sessions is not None:
            standbys = await self._standbys(sessions, job, decision.exclude_hosts)
            if standbys:
                # The drained hosts' repair waits for the job to leave them (a human's, or the
                # next exclusion that requeues).
                return await replace_in_the_job(
                    self.scheduler, decision.exclude_hosts, _drain_reason(decision), standbys[0]
                )
        for host in decision.exclude_hosts:
            res = await self.scheduler.drain(host, _drain_reason(decision))
            steps.append(op_step(res))
            if res.ok:
                drained.append(host)
        if all(s["ok"] for s in steps) and decision.action in REQUEUES:
            if job is None:
                steps.append({"op": "requeue", "ok": False, "error": "incident has no job"})
            else:
                if decision.exclude_hosts and sessions is not None:
                    # A hot spare, if the pool holds one, takes the excluded host's place.
                    spare = await self.swaps.take_spare(
                        sessions,
                        job.id,
                        f"given to job {job.id} for {', '.join(decision.exclude_hosts)} "
                        f"(decision {str(decision.id)[:8]})",
                    )
                    if spare is not None:
                        steps.append({"op": "reserve", "ok": True, "host": spare, "spare": True})
                res = await self.scheduler.requeue(
                    job.scheduler_job_id or job.id, decision.exclude_hosts
                )
                steps.append(op_step(res))
        repair = _repair_step(decision)
        if repair is not None and all(s["ok"] for s in steps):
            reason = _drain_reason(decision)
            gpu = decision.outcome["repair"].get("gpu") or ""
            for host in drained:
                res = await (
                    self.scheduler.reboot(host, reason)
                    if repair == "reboot"
                    else self.scheduler.reset_gpu(host, gpu, reason)
                )
                steps.append({**op_step(res), "host": host})
        return steps, drained

    async def _record(
        self,
        session: AsyncSession,
        decision_id: uuid.UUID,
        steps: list[dict[str, Any]],
        drained: list[str],
    ) -> list[IncidentChange]:
        decision = await session.get(Decision, decision_id)
        assert decision is not None
        for host in drained:
            await self._mark_drained(session, host, decision)
        for step in steps:
            if step["op"] in REPAIR_AUDIT and step["ok"]:
                await self._mark_repairing(session, step["host"], step["op"], decision)
        # A repair that failed leaves its host drained for a human, as before repairs were
        # automated: the job was restarted, so the decision itself is done.
        ok = all(s["ok"] for s in steps if s["op"] not in REPAIR_AUDIT)
        decision.outcome = {
            **decision.outcome,
            "steps": [*decision.outcome.get("steps", []), *steps],
        }
        standby = next((s["standby"] for s in steps if s.get("standby") and s["ok"]), None)
        if ok and standby is not None:
            decision.outcome = {**decision.outcome, "standby_host": standby}
            decision.reason += (
                f"; carried out in the job: standby host {standby} of its allocation takes "
                f"the place of {', '.join(decision.exclude_hosts)} (no requeue)"
            )
        decision.status = DecisionStatus.done if ok else DecisionStatus.failed
        if ok and any(s["op"] == "in_place" for s in steps):
            # Published in the advice; done when the launcher says it restarted the ranks.
            decision.status = DecisionStatus.awaiting_ack
        decision.error = (
            None if ok else next((s.get("error") for s in steps if not s["ok"]), "failed")
        )
        decision.claimed_by = None
        decision.lease_until = None
        decision.updated_at = self._clock.now()
        if not ok:
            return await self._tell(session, decision)
        incident = await session.get(Incident, decision.incident_id)
        if incident is None or incident.state != IncidentState.open:
            return []
        change = await self._triage.transition(
            session,
            incident,
            IncidentState.mitigating,
            f"decision {decision.action} carried out by {self.scheduler.name}",
            "remediation",
        )
        return [change]

    async def _mark_drained(self, session: AsyncSession, host_id: str, decision: Decision) -> None:
        host = await session.get(Host, host_id)
        if host is not None:
            host.drain_state = "drained"
            host.drain_reason = _drain_reason(decision)
        detail = {"decision": str(decision.id), "reason": decision.reason}
        audit.record(session, SENTINEL, "host.drain", f"host:{host_id}", detail, self._clock.now())

    async def _mark_repairing(
        self, session: AsyncSession, host_id: str, op: str, decision: Decision
    ) -> None:
        host = await session.get(Host, host_id)
        if host is not None:
            host.drain_state = "repairing"
        audit.record(
            session,
            SENTINEL,
            REPAIR_AUDIT[op],
            f"host:{host_id}",
            {"decision": str(decision.id), **decision.outcome.get("repair", {})},
            self._clock.now(),
        )

    async def follow_repairs(self, sessions: Sessions) -> list[str]:
        """Hosts being repaired (rebooted, a GPU reset) return to service by themselves once
        the scheduler has them back in service and their agent has reported since the repair
        with no hard fault; returns the hosts marked repaired. ``sinfo`` runs between the
        transactions."""
        async with unit_of_work(sessions) as session:
            waiting = (await session.scalars(_REPAIRING)).all()
        if not waiting:
            return []
        listing = await self.scheduler.nodes()
        if not listing.ok:
            return []
        repaired: list[str] = []
        async with unit_of_work(sessions) as session:
            for host_id in waiting:
                node = listing.node(host_id)
                if node is None or not node.schedulable or node.rebooting:
                    continue
                host = await session.get(Host, host_id)
                since = await session.scalar(
                    select(func.max(AuditEntry.at)).where(
                        AuditEntry.target == f"host:{host_id}",
                        AuditEntry.action.in_(REPAIR_AUDIT.values()),
                    )
                )
                if host is None or host.drain_state != "repairing" or since is None:
                    continue
                if host.last_seen <= since or await self._hard_fault_since(session, host_id, since):
                    continue
                host.drain_state = "none"
                host.drain_reason = None
                host.last_critical_at = None
                host.last_critical = None
                audit.record(
                    session,
                    SENTINEL,
                    "host.repaired",
                    f"host:{host_id}",
                    {
                        "node_state": node.raw_state,
                        "reason": "back in service after its repair; its agent reported "
                        "since with no hard fault",
                    },
                    self._clock.now(),
                )
                repaired.append(host_id)
        for host_id in repaired:
            log.info("host %s repaired: back in service, healthy", host_id)
        return repaired

    async def _hard_fault_since(self, session: AsyncSession, host_id: str, since: datetime) -> bool:
        fault = await session.scalar(
            select(EventDisposition.event_id)
            .where(EventDisposition.host_id == host_id, EventDisposition.observed_at > since)
            .limit(1)
        )
        return fault is not None

    async def run_due(self, sessions: Sessions) -> list[IncidentChange]:
        """Loop step: decide on incidents that have settled, take over executions whose lease
        ran out, release held restarts whose condition holds, execute approved decisions.
        Returns the incident changes made, for the incident stages.

        A step whose select would find no row is skipped (outstanding.py): most ticks have
        nothing to do. What is outstanding is read again after a step that wrote rows another
        step selects, so that the steps after it act on what it did in the same tick, as when
        each step selected its own rows (a decision made is executed at once)."""
        changes: list[IncidentChange] = []
        todo = await self._outstanding(sessions)
        settled: Sequence[uuid.UUID] = []
        expired: Sequence[uuid.UUID] = []
        if todo & {Outstanding.settled_incidents, Outstanding.expired_decisions}:
            async with unit_of_work(sessions) as session:
                if Outstanding.settled_incidents in todo:
                    settled = (await session.scalars(self._settled_incidents())).all()
                if Outstanding.expired_decisions in todo:
                    expired = (await session.scalars(self._expired())).all()
        for incident_id in settled:
            changes += (await self.decide(sessions, incident_id)).changes
        for decision_id in expired:
            changes += await self._take_over(sessions, decision_id)
        if settled or expired:
            todo = await self._outstanding(sessions)
        due: Sequence[uuid.UUID] = []
        in_flight = {
            Outstanding.held_decisions,
            Outstanding.unacknowledged_decisions,
            Outstanding.approved_decisions,
        }
        if todo & in_flight:
            async with unit_of_work(sessions) as session:
                if Outstanding.held_decisions in todo:
                    await self._release_held(session)
                if Outstanding.unacknowledged_decisions in todo:
                    await self._expire_in_place(session)
                # After the two above: what they approved is due in this same pass.
                due = (await session.scalars(_APPROVED.order_by(Decision.created_at))).all()
        for decision_id in due:
            changes += await self.execute(sessions, decision_id)
        if due:
            todo = await self._outstanding(sessions)  # an execution may start a repair
        if Outstanding.repairing_hosts in todo:
            await self.follow_repairs(sessions)
        # The steps above write no finding and no swap: what is outstanding of those holds.
        await self.swaps.run(sessions, todo)
        return changes

    def selects(self) -> dict[Outstanding, Select[Any]]:
        """The rows each step of the tick selects, the swaps' included."""
        return {
            Outstanding.settled_incidents: self._settled_incidents(),
            Outstanding.expired_decisions: self._expired(),
            Outstanding.held_decisions: _HELD,
            Outstanding.unacknowledged_decisions: self._unacknowledged(),
            Outstanding.approved_decisions: _APPROVED,
            Outstanding.repairing_hosts: _REPAIRING,
            **self.swaps.selects(),
        }

    async def _outstanding(self, sessions: Sessions) -> frozenset[Outstanding]:
        async with unit_of_work(sessions) as session:
            return await outstanding(session, self.selects())

    def _lease_expired(self) -> ColumnElement[bool]:
        return and_(
            Decision.status == DecisionStatus.executing, Decision.lease_until < self._clock.now()
        )

    def _expired(self) -> Select[uuid.UUID]:
        return select(Decision.id).where(self._lease_expired())

    async def _take_over(self, sessions: Sessions, decision_id: uuid.UUID) -> list[IncidentChange]:
        """An execution whose lease ran out: its process died between the claim and the record.
        The row lock (and the condition read again under it) lets one process take it over."""
        async with unit_of_work(sessions) as session:
            decision = await session.scalar(
                select(Decision)
                .where(Decision.id == decision_id, self._lease_expired())
                .with_for_update()
            )
            if decision is None:
                return []
            error = (
                f"attempt {decision.attempts} by {decision.claimed_by} not recorded by "
                f"{decision.lease_until:%Y-%m-%dT%H:%M:%SZ} (lease expired)"
            )
            return await self._attempt_failed(session, decision, error)

    def _settled_incidents(self) -> Select[uuid.UUID]:
        """Open incidents without a decision detected at least settle_s ago: provisional ones
        waited for their cause; a firm one missed its stage."""
        cutoff = self._clock.now() - timedelta(seconds=self._settings.settle_s)
        return (
            select(Incident.id)
            .where(Incident.state == IncidentState.open, Incident.detected_at <= cutoff)
            .where(~select(Decision.id).where(Decision.incident_id == Incident.id).exists())
        )

    async def _release_held(self, session: AsyncSession) -> None:
        """Release held decisions whose hold is over, each kind by its own condition (keyed by
        the decision's rule): an operator's planned restart once the job checkpointed; the
        policy's hold once the fabric is quiet."""
        held = (await session.scalars(_HELD)).all()
        now = self._clock.now()
        for decision in held:
            if decision.rule == planned.OPERATOR_RESTART_RULE:
                other = await planned.overtaken_by(session, decision)
                if other is not None and not decision.outcome.get("code_version"):
                    await planned.fold_into(session, decision, other, now)
                    continue
                # A planned version change overtaken by another restart still needs its own,
                # at the checkpoint after that restart (the stop it caused does not count).
                went = await planned.checkpoint_wait_over(
                    session, decision, now, self._settings, stop_counts=other is None
                )
                if went is not None:
                    await planned.release(
                        session, decision, went, self.approved_status(), now, self._settings
                    )
            elif await self._fabric_quiet(session, decision):
                decision.status = (
                    DecisionStatus.proposed
                    if self._settings.mode == "approve"
                    else self.approved_status()
                )
                # The fabric is back and no host is to blame: with in-place restarts on, the
                # launcher restarts the ranks on the allocation the job holds (no requeue).
                in_place = self._settings.in_place and not decision.exclude_hosts
                decision.action = (Action.restart_in_place if in_place else Action.restart).value
                decision.reason += f"; fabric quiet for {self._settings.fabric_quiet_s:g} s: " + (
                    "restart in place (same allocation, no requeue)" if in_place else "restart"
                )
                decision.updated_at = self._clock.now()

    async def _fabric_quiet(self, session: AsyncSession, decision: Decision) -> bool:
        """A hold for the fabric is over: no link errors on the incident's hosts for
        fabric_quiet_s since it was decided."""
        quiet_since = self._clock.now() - timedelta(seconds=self._settings.fabric_quiet_s)
        incident = await session.get(Incident, decision.incident_id)
        evidence = verdict_of(incident).evidence if incident is not None else []
        hosts = {e.host for e in evidence if e.host}
        recent = await session.scalar(
            select(func.count())
            .select_from(Event)
            .where(
                Event.host_id.in_(hosts or {"-"}),
                Event.kind.in_(("log", "alertmanager")),
                Event.observed_at >= quiet_since,
            )
        )
        return recent == 0 and decision.created_at <= quiet_since

    async def _expire_in_place(self, session: AsyncSession) -> None:
        """A restart in place no launcher acknowledged within in_place_ack_s: the job takes
        the usual path (a requeue from its checkpoint), unless it trains again already (its
        incident resolved: a launcher restarted it without saying so), when nothing is left
        to do."""
        waiting = (await session.scalars(self._unacknowledged())).all()
        why = (
            f"no launcher acknowledged the restart in place in {self._settings.in_place_ack_s:g} s"
        )
        for decision in waiting:
            incident = await session.get(Incident, decision.incident_id)
            if incident is not None and incident.state == IncidentState.resolved:
                decision.status = DecisionStatus.done
                decision.reason += f"; {why}, but the job trains again: nothing to requeue"
                decision.updated_at = self._clock.now()
            else:
                fall_back_to_requeue(decision, why, self.approved_status(), self._clock.now())
        if waiting:
            await session.flush()  # the requeue is due in this same pass

    def _unacknowledged(self) -> Select[Decision]:
        """Restarts in place published more than in_place_ack_s ago and not acknowledged."""
        cutoff = self._clock.now() - timedelta(seconds=self._settings.in_place_ack_s)
        return select(Decision).where(
            Decision.status == DecisionStatus.awaiting_ack, Decision.updated_at <= cutoff
        )


# The steps' selects that do not read the clock, built once: the tick asks each of them every
# second (outstanding.py).
_HELD: Final = select(Decision).where(Decision.status == DecisionStatus.held)
_APPROVED: Final = select(Decision.id).where(Decision.status == DecisionStatus.approved)
_REPAIRING: Final = select(Host.id).where(Host.drain_state == "repairing")


# Actions the scheduler carries out with a requeue (a rollback or a data skip without a
# launcher is one).
# The audit action each repair step records; counted for the caps per hour.
REPAIR_AUDIT: dict[str, str] = {"reboot": "host.reboot", "reset_gpu": "host.gpu_reset"}


def _repair_record(repair: RepairProposal | None) -> dict[str, Any]:
    if repair is None:
        return {}
    return {"step": repair.step, "rule": repair.rule, "reason": repair.reason, "gpu": repair.gpu}


def _repair_step(decision: Decision) -> Repair | None:
    step = (decision.outcome.get("repair") or {}).get("step")
    return "reboot" if step == "reboot" else "reset_gpu" if step == "reset_gpu" else None


def _signature(verdict: Verdict) -> str | None:
    """The first cause line with numbers blanked: 'the same error' across ranks and runs."""
    text = next((e.text for e in verdict.evidence if e.role == "cause"), None)
    return blank_numbers(text) if text else None


def link_flapped(verdict: Verdict) -> bool:
    """Every cause is the agent's report of an InfiniBand link that went down and was ACTIVE
    again at its next poll ("link flapped"; a link still down says "link down")."""
    causes = [e for e in verdict.evidence if e.role == "cause"]
    return bool(causes) and all(
        e.pattern == "ib_sysfs_link_down" and ": link flapped:" in e.text for e in causes
    )


def _drain_reason(decision: Decision) -> str:
    what = decision.outcome.get("host_action") or "INSPECT"
    return (
        f"sentinel: {decision.outcome.get('category', '')} ({what}) decision {str(decision.id)[:8]}"
    )
