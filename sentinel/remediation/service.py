"""Decide once per incident, execute once per decision, record every step with its outcome.

Exactly once, also with several replicas on one PostgreSQL: a decision is inserted with
ON CONFLICT DO NOTHING on its unique incident_id, and an execution starts only by moving the
decision from 'approved' to 'executing' in one conditional UPDATE that a single process wins.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.checkpoints import durable_checkpoint
from sentinel.clock import Clock
from sentinel.db.models import AuditEntry, Decision, Event, Host, Incident, Job, JobRank
from sentinel.db.upsert import dialect_of, insert_for
from sentinel.incidents.service import IncidentChange, TriageService
from sentinel.remediation.policy import (
    DEFAULT_POLICY,
    Action,
    PastDecision,
    Proposal,
    RemediationContext,
    RemediationPolicy,
)
from sentinel.schedulers.base import OpResult, SchedulerAdapter
from sentinel.settings import RemediationSettings
from sentinel.triage.signals import blank_numbers
from sentinel.triage.taxonomy import Category

log = logging.getLogger(__name__)

PROVISIONAL = frozenset({Category.NCCL_WATCHDOG_TIMEOUT, Category.UNKNOWN})
# Statuses: proposed (awaiting an operator) → approved → executing → done | failed;
# with an outside executor, approved decisions wait as pending until it acknowledges them;
# held (waiting for a condition) → approved; escalated, cancelled, recorded (dry run) and
# noop are final without execution.
FINAL = frozenset({"done", "failed", "escalated", "cancelled", "recorded", "noop"})


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
        self.scheduler = scheduler
        self._triage = triage
        self._policy = policy

    # ------------------------------------------------------------------ deciding

    async def on_incident_change(self, session: AsyncSession, change: IncidentChange) -> None:
        """Triage listener: decide at once on a firm verdict; provisional ones wait to settle."""
        if change.kind in ("opened", "reclassified") and not self._provisional(change.incident):
            await self.decide(session, change.incident)

    def _provisional(self, incident: Incident) -> bool:
        return Category(incident.category) in PROVISIONAL and incident.culprit_host is None

    async def decide_settled(self, session: AsyncSession) -> list[Decision]:
        """Loop step: provisional incidents get their decision once they have settled."""
        cutoff = self._clock.now() - timedelta(seconds=self._settings.settle_s)
        waiting = (
            await session.scalars(
                select(Incident)
                .where(Incident.state == "open", Incident.detected_at <= cutoff)
                .where(~select(Decision.id).where(Decision.incident_id == Incident.id).exists())
            )
        ).all()
        out = []
        for incident in waiting:
            decision = await self.decide(session, incident)
            if decision is not None:
                out.append(decision)
        return out

    async def decide(self, session: AsyncSession, incident: Incident) -> Decision | None:
        """Record the decision for this incident, unless one exists (then return None)."""
        ctx = await self._context(session, incident)
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
            "reason": proposal.reason,
            "exclude_hosts": list(proposal.exclude_hosts),
            "checkpoint_step": ctx.checkpoint_step,
            "steps_lost": steps_lost,
            "outcome": {
                "host_action": proposal.host_action,
                "steps": [],
                "category": incident.category,
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
            return None  # another process (or an earlier call) decided first
        decision = await session.get(Decision, decision_id)
        assert decision is not None
        log.info("decision for incident %s: %s (%s)", incident.id, proposal.action, proposal.rule)
        if proposal.action == Action.none:
            # Nothing to do, but the interruption is not over until the job trains again: the
            # incident stays open (mitigating) so that the rest of the planned work joins it.
            await self._triage.transition(
                session,
                incident,
                "mitigating",
                f"{proposal.rule}: {proposal.reason}",
                "remediation",
            )
        return decision

    def _initial_status(self, proposal: Proposal) -> str:
        if proposal.action == Action.none:
            return "noop"
        if proposal.action == Action.escalate:
            return "escalated"
        if self._settings.mode == "dry_run":
            return "recorded"
        if proposal.action == Action.hold:
            return "held"
        return "proposed" if self._settings.mode == "approve" else self.approved_status()

    def approved_status(self) -> str:
        """What an approved decision waits as: for our executor, or for an outside puller."""
        return "pending" if self._settings.executor == "pull" else "approved"

    async def _context(self, session: AsyncSession, incident: Incident) -> RemediationContext:
        now = self._clock.now()
        window_start = now - timedelta(seconds=self._settings.restart_window_s)
        verdict = incident.verdict or {}
        evidence = verdict.get("evidence", [])
        xids = tuple(sorted({int(e["xid"]) for e in evidence if e.get("xid") is not None}))
        past: list[PastDecision] = []
        ranks: Sequence[JobRank] = []
        if incident.job_id is not None:
            rows = (
                await session.execute(
                    select(Decision, Incident.category, Incident.verdict)
                    .join(Incident, Incident.id == Decision.incident_id)
                    .where(
                        Decision.job_id == incident.job_id,
                        Decision.created_at >= window_start,
                        Decision.incident_id != incident.id,
                    )
                )
            ).all()
            past = [
                PastDecision(category, d.action, d.status, d.created_at, _signature(v or {}))
                for d, category, v in rows
            ]
            ranks = (
                await session.scalars(select(JobRank).where(JobRank.job_id == incident.job_id))
            ).all()
        durable = durable_checkpoint(r.checkpoint_step for r in ranks)
        drains = int(
            await session.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.action == "host.drain", AuditEntry.at >= now - timedelta(hours=1))
            )
            or 0
        )
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
            spare_hosts=await self._spare_hosts(incident),
            settings=self._settings,
        )

    async def _spare_hosts(self, incident: Incident) -> int | None:
        """Idle hosts the scheduler reports, when it reports any (a dry run does not)."""
        if incident.culprit_host is None:
            return None
        result = await self.scheduler.nodes()
        return result.counts().idle if result.ok and result.nodes else None

    # ------------------------------------------------------------------ executing

    async def claim(self, session: AsyncSession, decision_id: uuid.UUID) -> bool:
        result = await session.execute(
            update(Decision)
            .where(Decision.id == decision_id, Decision.status == "approved")
            .values(status="executing", updated_at=self._clock.now())
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def execute(self, session: AsyncSession, decision: Decision) -> None:
        """Carry out a claimed decision; every step's result lands in decision.outcome."""
        await session.refresh(decision)
        steps: list[dict[str, Any]] = []
        ok = True
        job = await session.get(Job, decision.job_id) if decision.job_id else None
        for host in decision.exclude_hosts:
            res = await self.scheduler.drain(host, _drain_reason(decision))
            steps.append(_step(res))
            if res.ok:
                await self._mark_drained(session, host, decision)
            ok &= res.ok
        if ok and decision.action in (Action.restart, Action.exclude_and_restart):
            if job is None:
                steps.append({"op": "requeue", "ok": False, "error": "incident has no job"})
                ok = False
            else:
                res = await self.scheduler.requeue(
                    job.scheduler_job_id or job.id, decision.exclude_hosts
                )
                steps.append(_step(res))
                ok = res.ok
        now = self._clock.now()
        decision.outcome = {
            **decision.outcome,
            "steps": [*decision.outcome.get("steps", []), *steps],
        }
        decision.status = "done" if ok else "failed"
        decision.error = (
            None if ok else next((s.get("error") for s in steps if not s["ok"]), "failed")
        )
        decision.updated_at = now
        incident = await session.get(Incident, decision.incident_id)
        if ok and incident is not None and incident.state == "open":
            await self._triage.transition(
                session,
                incident,
                "mitigating",
                f"decision {decision.action} carried out by {self.scheduler.name}",
                "remediation",
            )
        await session.flush()

    async def _mark_drained(self, session: AsyncSession, host_id: str, decision: Decision) -> None:
        host = await session.get(Host, host_id)
        if host is not None:
            host.drain_state = "drained"
            host.drain_reason = _drain_reason(decision)
        session.add(
            AuditEntry(
                actor="sentinel",
                role="system",
                action="host.drain",
                target=f"host:{host_id}",
                detail={"decision": str(decision.id), "reason": decision.reason},
                at=self._clock.now(),
            )
        )

    async def run_due(self, session_factory: Any) -> int:
        """Loop step: release held restarts whose condition holds, execute approved decisions."""
        from sentinel.db.engine import unit_of_work

        async with unit_of_work(session_factory) as session:
            await self.decide_settled(session)
            await self._release_held(session)
            due = (
                await session.scalars(
                    select(Decision.id)
                    .where(Decision.status == "approved")
                    .order_by(Decision.created_at)
                )
            ).all()
        done = 0
        for decision_id in due:
            async with unit_of_work(session_factory) as session:
                if not await self.claim(session, decision_id):
                    continue
            async with unit_of_work(session_factory) as session:
                decision = await session.get(Decision, decision_id)
                assert decision is not None
                await self.execute(session, decision)
                done += 1
        return done

    async def _release_held(self, session: AsyncSession) -> None:
        held = (await session.scalars(select(Decision).where(Decision.status == "held"))).all()
        quiet_since = self._clock.now() - timedelta(seconds=self._settings.fabric_quiet_s)
        for decision in held:
            incident = await session.get(Incident, decision.incident_id)
            hosts = {
                e.get("host")
                for e in (incident.verdict if incident else {}).get("evidence", [])
                if e.get("host")
            }
            recent = await session.scalar(
                select(func.count())
                .select_from(Event)
                .where(
                    Event.host_id.in_(hosts or {"-"}),
                    Event.kind.in_(("log", "alertmanager")),
                    Event.observed_at >= quiet_since,
                )
            )
            if recent == 0 and decision.created_at <= quiet_since:
                decision.status = (
                    "proposed" if self._settings.mode == "approve" else self.approved_status()
                )
                decision.action = Action.restart.value
                decision.reason += (
                    f"; fabric quiet for {self._settings.fabric_quiet_s:g} s: restart"
                )
                decision.updated_at = self._clock.now()


def _signature(verdict: dict[str, Any]) -> str | None:
    """The first cause line with numbers blanked: 'the same error' across ranks and runs."""
    evidence = verdict.get("evidence", [])
    text = next((e["text"] for e in evidence if e.get("role") == "cause"), None)
    return blank_numbers(text) if text else None


def _drain_reason(decision: Decision) -> str:
    what = decision.outcome.get("host_action") or "INSPECT"
    return (
        f"sentinel: {decision.outcome.get('category', '')} ({what}) decision {str(decision.id)[:8]}"
    )


def _step(res: OpResult) -> dict[str, Any]:
    return {
        "op": res.op,
        "adapter": res.adapter,
        "ok": res.ok,
        "commands": list(res.commands),
        "output": res.output[-2000:],
        "error": res.error,
        "retryable": res.retryable,
    }
