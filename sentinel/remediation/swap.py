"""Proactive swap: a degraded host leaves its job at the job's next durable checkpoint, and a
hot spare from the reservation takes its place.

One decision per degraded finding, persisted with its rule and reason (the unique finding_id
makes it exactly once, also with several replicas on one database). A swap decided waits
(status ``waiting``) while the job is told to checkpoint now (the advice endpoint, the
heartbeat reply); once every rank reports a checkpoint newer than the one durable at the
decision, and no older than the step the job had reached, it is approved, and executed once
under a lease as the remediation decisions are: claim (committed) -> drain the host, release
a spare from the reservation, requeue the job without the host -> outcome recorded. The
interruption is announced as maintenance for the job's hosts beforehand, so that triage counts
it as planned, not as a failure.

With in-place restarts on (remediation.in_place: the job's launchers follow docs/launcher.md)
and a standby host in the job's allocation (remediation.standby), the swap is carried out in
the job as an exclusion is: the host drained, the launchers told through the advice to restart
without it and with the standby (awaiting_ack, no requeue, no spare taken from the pool); a
launcher's acknowledgment makes it done; none in in_place_ack_s, or one that says it could not,
and it is requeued onto a spare of the pool as without a standby.

Caps are rules like the rest: swaps per hour, per job, never more than the pool holds.
"""

from __future__ import annotations

import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import ColumnElement, Select, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.checkpoints import checkpoint_since, durable_checkpoint
from sentinel.clock import Clock
from sentinel.db import audit
from sentinel.db.audit import SENTINEL, Actor
from sentinel.db.engine import unit_of_work
from sentinel.db.leases import process_identity
from sentinel.db.models import (
    DegradedFinding,
    Host,
    Job,
    JobRank,
    Maintenance,
    Spare,
    Swap,
)
from sentinel.db.upsert import dialect_of, insert_for
from sentinel.remediation.decisions import Outcome, TransitionRefused
from sentinel.remediation.degraded import DegradedWatch, resolve_host
from sentinel.remediation.lease import claim_lease
from sentinel.remediation.outstanding import Outstanding, outstanding
from sentinel.remediation.policy import NamedRule
from sentinel.remediation.settings import RemediationSettings, SwapSettings
from sentinel.remediation.spares import SparePool
from sentinel.remediation.standby import job_standbys, op_step, replace_in_the_job
from sentinel.schedulers.base import SchedulerAdapter

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]


class SwapAction(StrEnum):
    swap = "swap_at_checkpoint"
    none = "none"  # nothing to swap (no job), or a cap refused it


# Statuses that hold a spare or a cap's slot: the decision is not over. A swap carried out in
# the job awaits its launchers' acknowledgment, and falls back to a spare of the pool without one.
ACTIVE: Final = frozenset({"waiting", "approved", "executing", "awaiting_ack"})
FINAL: Final = frozenset({"done", "failed", "refused", "noop", "cancelled"})


@dataclass(frozen=True)
class SwapContext:
    host: str
    gpu: str | None
    finding: str  # the finding's reason
    job_id: str | None
    job_hosts: int
    current_step: int | None
    durable_step: int | None
    swaps_last_hour: int
    swaps_for_job: int
    spares_ready: int
    swaps_in_flight: int  # active swaps, each holding a spare
    settings: SwapSettings = field(default_factory=SwapSettings)
    # Healthy standby hosts in the job's allocation, with in-place restarts on: the swap is
    # carried out in the job onto one, no spare of the pool needed (remediation.standby).
    standbys: int = 0


@dataclass(frozen=True)
class SwapProposal:
    action: SwapAction
    status: str  # waiting | refused | noop
    rule: str
    reason: str


class SwapRule(NamedRule, ABC):
    """Decides whether a degraded host is swapped out of its job, or passes to the next rule."""

    @abstractmethod
    def propose(self, ctx: SwapContext) -> SwapProposal | None: ...

    def _refuse(self, reason: str) -> SwapProposal:
        return SwapProposal(SwapAction.none, "refused", self.name, reason)


class SwapsDisabled(SwapRule):
    """Proactive swaps are off (remediation.swap.enabled): the finding stays open, nothing
    is decided for it."""

    def propose(self, ctx: SwapContext) -> SwapProposal | None:
        if ctx.settings.enabled:
            return None
        return SwapProposal(
            SwapAction.none, "noop", self.name, "proactive swap is off (remediation.swap)"
        )


class NothingToSwapOutsideAJob(SwapRule):
    """A host that runs no job costs no job a failure: nothing to swap, and the finding
    stays open for its repair."""

    def propose(self, ctx: SwapContext) -> SwapProposal | None:
        if ctx.job_id is not None:
            return None
        return SwapProposal(
            SwapAction.none,
            "noop",
            self.name,
            f"{ctx.host} runs no job: nothing to swap; the finding stays open for its repair",
        )


class CapSwapsPerHour(SwapRule):
    """A fleet-wide event must not swap the cluster host by host: a human decides."""

    def propose(self, ctx: SwapContext) -> SwapProposal | None:
        cap = ctx.settings.max_per_hour
        if ctx.swaps_last_hour < cap:
            return None
        return self._refuse(
            f"{ctx.swaps_last_hour} swaps decided in the last hour (cap {cap}): {ctx.host} "
            "keeps running degraded; a human decides"
        )


class CapSwapsPerJob(SwapRule):
    """A job interrupted for swaps this often in the window is not interrupted again."""

    def propose(self, ctx: SwapContext) -> SwapProposal | None:
        cap = ctx.settings.max_per_job
        if ctx.swaps_for_job < cap:
            return None
        return self._refuse(
            f"job {ctx.job_id} already had {ctx.swaps_for_job} swaps in the last "
            f"{ctx.settings.job_window_s / 3600:g} h (cap {cap}): not interrupted again for "
            f"{ctx.host}"
        )


class NeverMoreThanThePoolHolds(SwapRule):
    """A swap without a spare would shrink the job or leave it waiting in the queue: worse
    than training on a degraded host until it fails. A standby host the job holds, with
    in-place restarts on, takes the host's place in the job: no spare of the pool needed."""

    def propose(self, ctx: SwapContext) -> SwapProposal | None:
        free = ctx.spares_ready - ctx.swaps_in_flight
        if free > 0 or ctx.standbys > 0:
            return None
        return self._refuse(
            f"no spare free in the pool ({ctx.spares_ready} ready, {ctx.swaps_in_flight} "
            f"promised to swaps under way) and no standby host in job {ctx.job_id}'s "
            f"allocation: {ctx.host} stays until a spare is found"
        )


class SwapAtNextCheckpoint(SwapRule):
    """The last rule: nothing caps the swap, so the host leaves the job at its next durable
    checkpoint, which the job is told to take now."""

    def propose(self, ctx: SwapContext) -> SwapProposal | None:
        return SwapProposal(
            SwapAction.swap,
            "waiting",
            self.name,
            f"{ctx.finding}: swap {ctx.host} out of job {ctx.job_id} at its next durable "
            f"checkpoint (now step {ctx.current_step}, durable {ctx.durable_step}); "
            "the job is told to checkpoint now",
        )


@dataclass(frozen=True)
class SwapPolicy:
    rules: Sequence[SwapRule]

    def decide(self, ctx: SwapContext) -> SwapProposal:
        for rule in self.rules:
            proposal = rule.propose(ctx)
            if proposal is not None:
                return proposal
        raise AssertionError("unreachable: SwapAtNextCheckpoint always proposes")


DEFAULT_SWAP_POLICY: Final = SwapPolicy(
    (
        SwapsDisabled(),
        NothingToSwapOutsideAJob(),
        CapSwapsPerHour(),
        CapSwapsPerJob(),
        NeverMoreThanThePoolHolds(),
        SwapAtNextCheckpoint(),
    )
)


# The steps' selects that do not read the clock, built once: the remediation tick asks each of
# them every second (outstanding.py).
# Open findings without a swap decided on them.
_UNDECIDED: Final = select(DegradedFinding.id).where(
    DegradedFinding.state == "open",
    ~select(Swap.id).where(Swap.finding_id == DegradedFinding.id).exists(),
)
# Swaps refused for want of a spare whose finding is still open.
_REFUSED_FOR_A_SPARE: Final = (
    select(Swap)
    .join(DegradedFinding, DegradedFinding.id == Swap.finding_id)
    .where(
        Swap.status == "refused",
        Swap.rule == NeverMoreThanThePoolHolds.__name__,
        DegradedFinding.state == "open",
    )
)
_WAITING: Final = select(Swap).where(Swap.status == "waiting")
_APPROVED: Final = select(Swap.id).where(Swap.status == "approved")


def checkpoint_due(swap: Swap, durable: int | None) -> bool:
    """A checkpoint newer than the decision: newer than the one durable when it was made, and
    saved no earlier than the step the job had reached then."""
    return checkpoint_since(durable, swap.checkpoint_step, swap.decided_step)


class SwapService:
    def __init__(
        self,
        clock: Clock,
        settings: RemediationSettings,
        scheduler: SchedulerAdapter,
        policy: SwapPolicy = DEFAULT_SWAP_POLICY,
    ) -> None:
        self._clock = clock
        self._settings = settings
        self._swap = settings.swap
        self._scheduler = scheduler
        self._policy = policy
        self.watch = DegradedWatch(clock, settings.swap)
        self.pool = SparePool(clock, settings.swap, scheduler)
        self.executor_id = process_identity()

    @property
    def scheduler(self) -> SchedulerAdapter:
        return self._scheduler

    @scheduler.setter
    def scheduler(self, scheduler: SchedulerAdapter) -> None:
        self._scheduler = scheduler
        self.pool = SparePool(self._clock, self._swap, scheduler)

    async def run(self, sessions: Sessions, todo: frozenset[Outstanding] | None = None) -> None:
        """Loop step: the pool, the findings, decisions, checkpoints, executions. ``todo``:
        what is outstanding of the findings and swaps (``selects``), read since this process
        last wrote either (the remediation tick reads it with its own, in one query), else
        read here. A step with nothing outstanding is skipped, and it is read again after a
        step that wrote rows another step selects, as in RemediationService.run_due. The pool
        writes neither findings nor swaps."""
        if todo is None:
            todo = await self._outstanding(sessions)
        await self.pool.sync(sessions)
        if await self.watch.scan(sessions):
            todo = await self._outstanding(sessions)
        undecided: Sequence[uuid.UUID] = []
        if Outstanding.undecided_findings in todo:
            async with unit_of_work(sessions) as session:
                undecided = (await session.scalars(_UNDECIDED)).all()
        decided = [await self.decide(sessions, f, wait_for_a_job=True) for f in undecided]
        if any(swap is not None for swap in decided):
            todo = await self._outstanding(sessions)
        if Outstanding.refused_for_a_spare in todo and await self._retry_for_a_spare(sessions):
            todo = await self._outstanding(sessions)
        due: Sequence[uuid.UUID] = []
        if todo & {
            Outstanding.waiting_swaps,
            Outstanding.expired_swaps,
            Outstanding.unacknowledged_swaps,
            Outstanding.approved_swaps,
        }:
            async with unit_of_work(sessions) as session:
                if Outstanding.waiting_swaps in todo:
                    await self._approve_at_checkpoint(session)
                if Outstanding.expired_swaps in todo:
                    await self._expire_leases(session)
                if Outstanding.unacknowledged_swaps in todo:
                    await self._expire_in_the_job(session)
                # After the above: what they approved is due in this same pass.
                due = (await session.scalars(_APPROVED.order_by(Swap.created_at))).all()
        for swap_id in due:
            await self.execute(sessions, swap_id)

    def selects(self) -> dict[Outstanding, Select[Any]]:
        """The rows each step of ``run`` selects, for asking what is outstanding."""
        return {
            Outstanding.undecided_findings: _UNDECIDED,
            Outstanding.refused_for_a_spare: _REFUSED_FOR_A_SPARE,
            Outstanding.waiting_swaps: _WAITING,
            Outstanding.expired_swaps: select(Swap.id).where(self._lease_expired()),
            Outstanding.unacknowledged_swaps: self._unacknowledged(),
            Outstanding.approved_swaps: _APPROVED,
        }

    async def _outstanding(self, sessions: Sessions) -> frozenset[Outstanding]:
        async with unit_of_work(sessions) as session:
            return await outstanding(session, self.selects())

    # ------------------------------------------------------------------ deciding

    async def decide(
        self, sessions: Sessions, finding_id: uuid.UUID, *, wait_for_a_job: bool = False
    ) -> Swap | None:
        """Record the swap decision for this finding, unless one exists. ``wait_for_a_job``:
        a host in no job is not decided on yet (the open finding is the record; a job that
        lands there later gets its swap)."""
        standbys = await self._standbys_of(sessions, finding_id)
        async with unit_of_work(sessions) as session:
            finding = await session.get(DegradedFinding, finding_id)
            if finding is None or finding.state != "open":
                return None
            ctx = await self._context(session, finding, standbys)
            if wait_for_a_job and ctx.job_id is None:
                return None
            proposal = self._policy.decide(ctx)
            now = self._clock.now()
            ins = insert_for(dialect_of(session), Swap)
            row: dict[str, Any] = {
                "id": uuid.uuid4(),
                "finding_id": finding.id,
                "job_id": ctx.job_id,
                "host_id": finding.host_id,
                "action": proposal.action.value,
                "status": proposal.status,
                "rule": proposal.rule,
                "reason": proposal.reason,
                "decided_step": ctx.current_step,
                "checkpoint_step": ctx.durable_step,
                "spare_host": None,
                "outcome": {"planned": True, "indicator": finding.indicator, "steps": []},
                "error": None,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
            result = await session.execute(
                ins.on_conflict_do_nothing(index_elements=["finding_id"]).returning(ins.table.c.id),
                [row],
            )
            if not result.all():
                return None  # another replica decided first
            log.info(
                "swap decision for %s (%s): %s", finding.host_id, proposal.rule, proposal.status
            )
            return await session.get(Swap, row["id"])

    async def _retry_for_a_spare(self, sessions: Sessions) -> int:
        """A swap refused for want of a spare is decided again once the pool has one free (its
        host "stays until a spare is found"): the same row, moved conditionally, so that with
        several replicas one moves it. Refusals by a cap stand. Returns how many it decided
        again."""
        retried = 0
        async with unit_of_work(sessions) as session:
            refused = (await session.scalars(_REFUSED_FOR_A_SPARE.order_by(Swap.created_at))).all()
            for swap in refused:
                finding = await session.get(DegradedFinding, swap.finding_id)
                assert finding is not None
                ctx = await self._context(session, finding)
                if ctx.job_id is None or ctx.job_id != swap.job_id:
                    continue
                proposal = self._policy.decide(ctx)
                if proposal.rule == swap.rule:
                    continue  # still no spare free
                await session.execute(
                    update(Swap)
                    .where(Swap.id == swap.id, Swap.status == "refused", Swap.rule == swap.rule)
                    .values(
                        action=proposal.action.value,
                        status=proposal.status,
                        rule=proposal.rule,
                        reason=f"{proposal.reason} (retried: refused before for want of a spare)",
                        decided_step=ctx.current_step,
                        checkpoint_step=ctx.durable_step,
                        updated_at=self._clock.now(),
                    )
                    .execution_options(synchronize_session=False)
                )
                retried += 1
                log.info(
                    "swap for %s retried (%s): %s", swap.host_id, proposal.rule, proposal.status
                )
        return retried

    async def _standbys_of(self, sessions: Sessions, finding_id: uuid.UUID) -> int:
        """With in-place restarts on, the standby hosts the finding's job holds (the scheduler
        asked between the transactions, as the exclusion's decision asks it)."""
        if not self._settings.in_place:
            return 0
        async with unit_of_work(sessions) as session:
            finding = await session.get(DegradedFinding, finding_id)
            job_id = await self._job_of(session, finding.host_id) if finding else None
            job = await session.get(Job, job_id) if job_id else None
        if finding is None or job is None:
            return 0
        found = await job_standbys(
            sessions, self._scheduler, job, self.pool.healthy, [finding.host_id]
        )
        return len(found)

    async def _context(
        self, session: AsyncSession, finding: DegradedFinding, standbys: int = 0
    ) -> SwapContext:
        now = self._clock.now()
        job_id = await self._job_of(session, finding.host_id)
        ranks: Sequence[JobRank] = []
        if job_id is not None:
            ranks = (await session.scalars(select(JobRank).where(JobRank.job_id == job_id))).all()
        decided = Swap.action == SwapAction.swap.value
        last_hour = await self._count(session, decided, Swap.created_at >= now - timedelta(hours=1))
        for_job = (
            await self._count(
                session,
                decided,
                Swap.job_id == job_id,
                Swap.created_at >= now - timedelta(seconds=self._swap.job_window_s),
            )
            if job_id is not None
            else 0
        )
        ready = await self._count_spares(session)
        in_flight = await self._count(session, Swap.status.in_(ACTIVE))
        return SwapContext(
            host=finding.host_id,
            gpu=finding.gpu,
            finding=finding.reason,
            job_id=job_id,
            job_hosts=len({r.host_id for r in ranks}),
            current_step=max((r.step for r in ranks), default=None),
            durable_step=durable_checkpoint(r.checkpoint_step for r in ranks),
            swaps_last_hour=last_hour,
            swaps_for_job=for_job,
            spares_ready=ready,
            swaps_in_flight=in_flight,
            settings=self._swap,
            standbys=standbys,
        )

    async def _job_of(self, session: AsyncSession, host_id: str) -> str | None:
        """The running job whose ranks beat on this host most recently."""
        return await session.scalar(
            select(JobRank.job_id)
            .join(Job, Job.id == JobRank.job_id)
            .where(JobRank.host_id == host_id, Job.state == "running")
            .order_by(JobRank.last_beat_at.desc())
            .limit(1)
        )

    @staticmethod
    async def _count(session: AsyncSession, *where: Any) -> int:
        return int(await session.scalar(select(func.count()).select_from(Swap).where(*where)) or 0)

    @staticmethod
    async def _count_spares(session: AsyncSession) -> int:
        return int(
            await session.scalar(
                select(func.count()).select_from(Spare).where(Spare.state == "ready")
            )
            or 0
        )

    async def _approve_at_checkpoint(self, session: AsyncSession) -> None:
        waiting = (await session.scalars(_WAITING)).all()
        for swap in waiting:
            why_not = await self._moot(session, swap)
            if why_not is not None:
                await session.execute(
                    update(Swap)
                    .where(Swap.id == swap.id, Swap.status == "waiting")
                    .values(
                        status="cancelled",
                        reason=Swap.reason + f"; cancelled: {why_not}",
                        updated_at=self._clock.now(),
                    )
                    .execution_options(synchronize_session=False)
                )
                continue
            steps = (
                await session.scalars(
                    select(JobRank.checkpoint_step).where(JobRank.job_id == swap.job_id)
                )
            ).all()
            durable = durable_checkpoint(steps)
            if not checkpoint_due(swap, durable):
                continue
            now = self._clock.now()
            # Conditional: with two replicas, one moves it.
            await session.execute(
                update(Swap)
                .where(Swap.id == swap.id, Swap.status == "waiting")
                .values(
                    status="approved",
                    reason=Swap.reason + f"; checkpoint step {durable} durable: swap now",
                    outcome={**swap.outcome, "durable_checkpoint": durable},
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )

    async def _moot(self, session: AsyncSession, swap: Swap) -> str | None:
        """Why a waiting swap has nothing left to do: its job ended, or its host already left
        (an incident excluded it, a human drained it); None while it still has."""
        job = await session.get(Job, swap.job_id) if swap.job_id else None
        if job is None or job.state != "running":
            return f"job {swap.job_id} is {job.state if job else 'unknown'}"
        host = await session.get(Host, swap.host_id)
        if host is not None and host.drain_state != "none":
            return f"{swap.host_id} is already {host.drain_state}"
        return None

    async def _expire_leases(self, session: AsyncSession) -> None:
        """An execution whose process died between claim and record: its steps may have run
        (a requeue is not idempotent), so it fails for a human to look at, never runs twice."""
        now = self._clock.now()
        await session.execute(
            update(Swap)
            .where(self._lease_expired())
            .values(
                status="failed",
                error="lease expired before the outcome was recorded; the steps may have run",
                claimed_by=None,
                lease_until=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )

    def _lease_expired(self) -> ColumnElement[bool]:
        return and_(Swap.status == "executing", Swap.lease_until < self._clock.now())

    async def _expire_in_the_job(self, session: AsyncSession) -> None:
        """A swap carried out in the job that no launcher acknowledged in in_place_ack_s: it
        is requeued onto a spare of the pool (approved again, in this same pass), unless the
        job trains on the standby already (a launcher restarted it without saying so)."""
        now = self._clock.now()
        waiting = (await session.scalars(self._unacknowledged())).all()
        why = f"no launcher acknowledged the swap in the job in {self._settings.in_place_ack_s:g} s"
        for swap in waiting:
            if await _trains_on_the_standby(session, swap):
                swap.status = "done"
                swap.reason += f"; {why}, but the job trains on the standby: nothing to requeue"
                swap.updated_at = now
            else:
                _fall_back(swap, why, now)
        if waiting:
            await session.flush()

    def _unacknowledged(self) -> Select[Swap]:
        """Swaps carried out in the job more than in_place_ack_s ago and not acknowledged."""
        cutoff = self._clock.now() - timedelta(seconds=self._settings.in_place_ack_s)
        return select(Swap).where(Swap.status == "awaiting_ack", Swap.updated_at <= cutoff)

    def acknowledge(
        self, session: AsyncSession, swap: Swap, who: Actor, outcome: Outcome, detail: str
    ) -> None:
        """A job's launcher says whether it restarted the ranks without the swapped host and
        with the standby; the caller checked that it speaks for the job. done twice changes
        nothing; failed requeues the job onto a spare of the pool at once."""
        if not _in_the_job(swap):
            raise TransitionRefused(
                f"swap {swap.id} is not carried out in the job ({swap.status}): "
                + (
                    "it was not acknowledged in time and the job is requeued onto a spare"
                    if _published(swap)
                    else "the job is requeued onto a spare of the pool"
                )
            )
        if swap.status == "done" and outcome == "done":
            return  # a launcher's retry, or another launcher of the job
        if swap.status != "awaiting_ack":
            raise TransitionRefused(
                f"cannot acknowledge a swap that is {swap.status!r}; only ['awaiting_ack']"
            )
        now = self._clock.now()
        step = {"op": "ack", "ok": outcome == "done", "adapter": who.name, "output": detail}
        swap.outcome = {**swap.outcome, "steps": [*swap.outcome.get("steps", []), step]}
        if outcome == "done":
            swap.status = "done"
            swap.updated_at = now
        else:
            why = f"the launcher could not restart in the job ({detail or 'no detail'})"
            _fall_back(swap, why, now)
        detail_ = {"outcome": outcome, "detail": detail}
        audit.record(session, who, "swap.ack", f"swap:{swap.id}", detail_, now)

    # ------------------------------------------------------------------ executing

    async def claim(self, session: AsyncSession, swap_id: uuid.UUID) -> bool:
        return await claim_lease(
            session, Swap, swap_id, self.executor_id, self._settings.lease_s, self._clock.now()
        )

    async def execute(self, sessions: Sessions, swap_id: uuid.UUID) -> bool:
        """Carry out an approved swap if this process claims it. Returns whether it did."""
        async with unit_of_work(sessions) as session:
            if not await self.claim(session, swap_id):
                return False
            swap = await session.get(Swap, swap_id)
            assert swap is not None
            job = await session.get(Job, swap.job_id) if swap.job_id else None
        # The scheduler is asked here, between the transactions, never inside one.
        try:
            standby = await self._standby(sessions, swap, job)
        except Exception:
            log.exception("swap %s: looking for a standby host raised; a spare instead", swap_id)
            standby = None
        async with unit_of_work(sessions) as session:
            swap = await session.get(Swap, swap_id)
            assert swap is not None
            now = self._clock.now()
            remaining: tuple[str, ...] = ()
            if standby is None:
                remaining = await self._take_a_spare(session, swap)
            # Announced before the job stops, so that triage reads the stop as planned. Only
            # the host leaving is named: a fault on another host meanwhile is still a fault.
            session.add(
                Maintenance(
                    hosts=[swap.host_id],
                    job_id=swap.job_id,
                    starts_at=now,
                    ends_at=now + timedelta(seconds=self._swap.planned_s),
                    reason=f"sentinel: planned swap of {swap.host_id} (swap {str(swap.id)[:8]})",
                    author="sentinel",
                    created_at=now,
                )
            )
        try:
            if standby is not None:
                steps, _ = await replace_in_the_job(
                    self._scheduler, [swap.host_id], _drain_reason(swap), standby
                )
            else:
                steps = await self._carry_out(swap, job, remaining)
        except Exception as exc:
            log.exception("executing swap %s raised", swap_id)
            steps = [{"op": "swap", "ok": False, "error": repr(exc)}]
        async with unit_of_work(sessions) as session:
            await self._record(session, swap_id, steps)
        return True

    async def _standby(self, sessions: Sessions, swap: Swap, job: Job | None) -> str | None:
        """The standby host of the job's allocation that takes the degraded host's place in
        the job, with in-place restarts on; None to requeue onto a spare of the pool (also
        for a swap already published in the job that fell back: it is requeued)."""
        if not self._settings.in_place or job is None or _published(swap):
            return None
        found = await job_standbys(
            sessions, self._scheduler, job, self.pool.healthy, [swap.host_id]
        )
        return found[0] if found else None

    async def _take_a_spare(self, session: AsyncSession, swap: Swap) -> tuple[str, ...]:
        """Give the swap the oldest ready spare of the pool (marked used); the spares that stay
        in the reservation."""
        now = self._clock.now()
        spare = await session.scalar(
            select(Spare).where(Spare.state == "ready").order_by(Spare.added_at).limit(1)
        )
        if spare is not None:
            spare.state, spare.job_id, spare.updated_at = "used", swap.job_id, now
            spare.reason = f"swapped in for {swap.host_id} (swap {str(swap.id)[:8]})"
            swap.spare_host = spare.host_id
        return tuple(
            sorted(
                (
                    await session.scalars(
                        select(Spare.host_id).where(
                            Spare.state == "ready", Spare.host_id != swap.spare_host
                        )
                    )
                ).all()
            )
        )

    async def _carry_out(
        self, swap: Swap, job: Job | None, remaining: tuple[str, ...]
    ) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = []
        res = await self._scheduler.drain(swap.host_id, _drain_reason(swap))
        steps.append(op_step(res))
        if not res.ok:
            return steps
        # The spare leaves the reservation before the requeue, so the job can land on it.
        if swap.spare_host is not None:
            held = await self.pool.apply(remaining)
            if held is not None:
                steps.append({**op_step(held), "host": swap.spare_host})
                if not held.ok:
                    return steps
        if job is None:
            steps.append({"op": "requeue", "ok": False, "error": "swap has no job"})
            return steps
        res = await self._scheduler.requeue(job.scheduler_job_id or job.id, [swap.host_id])
        steps.append(op_step(res))
        return steps

    async def _record(
        self, session: AsyncSession, swap_id: uuid.UUID, steps: list[dict[str, Any]]
    ) -> None:
        swap = await session.get(Swap, swap_id)
        assert swap is not None
        now = self._clock.now()
        ok = bool(steps) and all(s["ok"] for s in steps)
        swap.outcome = {**swap.outcome, "steps": [*swap.outcome.get("steps", []), *steps]}
        swap.status = "done" if ok else "failed"
        standby = next((s["standby"] for s in steps if s.get("standby") and s["ok"]), None)
        if ok and standby is not None:
            # Published in the advice; done when a launcher says it restarted the ranks.
            swap.status = "awaiting_ack"
            swap.spare_host = standby
            swap.outcome = {**swap.outcome, "standby_host": standby}
            swap.reason += (
                f"; carried out in the job: standby host {standby} of its allocation takes "
                f"the place of {swap.host_id} (no requeue)"
            )
        swap.error = None if ok else next((s.get("error") for s in steps if not s["ok"]), None)
        swap.claimed_by = None
        swap.lease_until = None
        swap.updated_at = now
        drained = any(s["op"] == "drain" and s["ok"] for s in steps)
        if drained:
            host = await session.get(Host, swap.host_id)
            if host is not None:
                host.drain_state = "drained"
                host.drain_reason = f"sentinel: planned swap {str(swap.id)[:8]}: {swap.reason}"
            detail = {"swap": str(swap.id), "planned": True, "reason": swap.reason}
            audit.record(session, SENTINEL, "host.drain", f"host:{swap.host_id}", detail, now)
        if ok:
            await resolve_host(
                session, swap.host_id, now, f"swapped out of job {swap.job_id} (planned)"
            )
        log.info("swap %s %s: %s -> %s", swap.id, swap.status, swap.host_id, swap.spare_host)

    async def take_spare(self, sessions: Sessions, job_id: str | None, why: str) -> str | None:
        """Give a ready spare to a job about to be requeued without a host (an exclusion): it
        is marked used (one caller wins it) and left out of the reservation, so that the job
        starts on it at once instead of waiting in the queue. None when the pool has none."""
        async with unit_of_work(sessions) as session:
            ready = (
                await session.scalars(
                    select(Spare.host_id).where(Spare.state == "ready").order_by(Spare.added_at)
                )
            ).all()
            taken: str | None = None
            for host_id in ready:
                result = await session.execute(
                    update(Spare)
                    .where(Spare.host_id == host_id, Spare.state == "ready")
                    .values(state="used", job_id=job_id, reason=why, updated_at=self._clock.now())
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    taken = host_id
                    break
        if taken is None:
            return None
        await self.pool.apply(tuple(h for h in ready if h != taken))
        return taken

    # ------------------------------------------------------------------ advice

    async def advice(self, session: AsyncSession, job_id: str) -> dict[str, Any]:
        """What the job's launcher and ranks should do now."""
        swap = await session.scalar(
            select(Swap)
            .where(Swap.job_id == job_id, Swap.status.in_(ACTIVE))
            .order_by(Swap.created_at)
            .limit(1)
        )
        if swap is None:
            return {
                "job_id": job_id,
                "checkpoint_now": False,
                "reason": "no swap under way",
                "swap": None,
            }
        return {
            "job_id": job_id,
            "checkpoint_now": swap.status == "waiting",
            "reason": swap.reason,
            "swap": swap_out(swap),
        }


async def host_findings(
    session: AsyncSession, host_id: str, limit: int = 20
) -> tuple[list[DegradedFinding], dict[uuid.UUID, Swap]]:
    """The host's latest findings and the swap decided on each (the host page)."""
    findings = list(
        (
            await session.scalars(
                select(DegradedFinding)
                .where(DegradedFinding.host_id == host_id)
                .order_by(DegradedFinding.opened_at.desc())
                .limit(limit)
            )
        ).all()
    )
    swaps = (
        await session.scalars(select(Swap).where(Swap.finding_id.in_([f.id for f in findings])))
    ).all()
    return findings, {s.finding_id: s for s in swaps}


async def active_swaps(session: AsyncSession) -> dict[str, Swap]:
    """Each job's swap under way (the jobs page)."""
    rows = (
        await session.scalars(
            select(Swap).where(Swap.status.in_(ACTIVE)).order_by(Swap.created_at.desc())
        )
    ).all()
    return {s.job_id: s for s in rows if s.job_id}


def swap_out(swap: Swap) -> dict[str, Any]:
    return {
        "id": str(swap.id),
        "finding_id": str(swap.finding_id),
        "job_id": swap.job_id,
        "host": swap.host_id,
        "spare_host": swap.spare_host,
        "standby_host": swap.outcome.get("standby_host"),
        "action": swap.action,
        "status": swap.status,
        "rule": swap.rule,
        "reason": swap.reason,
        "decided_step": swap.decided_step,
        "checkpoint_step": swap.checkpoint_step,
        "planned": True,
        "outcome": swap.outcome,
        "error": swap.error,
        "attempts": swap.attempts,
        "created_at": swap.created_at.isoformat(),
        "updated_at": swap.updated_at.isoformat(),
    }


async def swap_in_the_job(
    session: AsyncSession, job_id: str, acknowledged_since: datetime
) -> Swap | None:
    """The job's latest swap carried out in the job, while its launchers are to act on it:
    from when it is published until the job trains on the standby (a rank of the job there
    past the checkpoint it restarted from), acknowledged or not (a multi-host job has one
    launcher per host, and each acts once), and once acknowledged no longer than since
    ``acknowledged_since`` (the launchers poll every few seconds; a job requeued meanwhile
    must not restart on a stale one). One that fell back to a requeue is not named."""
    swaps = (
        await session.scalars(
            select(Swap)
            .where(
                Swap.job_id == job_id,
                (Swap.status == "awaiting_ack")
                | ((Swap.status == "done") & (Swap.updated_at >= acknowledged_since)),
            )
            .order_by(Swap.created_at.desc())
            .limit(5)
        )
    ).all()
    for swap in swaps:
        if _in_the_job(swap):
            return None if await _trains_on_the_standby(session, swap) else swap
    return None


async def _trains_on_the_standby(session: AsyncSession, swap: Swap) -> bool:
    standby = swap.outcome.get("standby_host")
    since = swap.outcome.get("durable_checkpoint", swap.checkpoint_step)
    if not isinstance(standby, str) or swap.job_id is None:
        return False
    past = JobRank.step > since if isinstance(since, int) else JobRank.step.is_not(None)
    rank = await session.scalar(
        select(JobRank.rank)
        .where(JobRank.job_id == swap.job_id, JobRank.host_id == standby, past)
        .limit(1)
    )
    return rank is not None


def _fall_back(swap: Swap, why: str, now: datetime) -> None:
    """A swap carried out in the job that did not happen: approved again, for the executor
    to requeue the job onto a spare of the pool as without a standby (the host stays drained;
    its in_place step says what it was)."""
    swap.status = "approved"
    swap.reason += f"; {why}: requeue onto a spare of the pool instead"
    swap.spare_host = None
    swap.outcome = {
        **{k: v for k, v in swap.outcome.items() if k != "standby_host"},
        "steps": [*swap.outcome.get("steps", []), {"op": "in_place", "ok": False, "error": why}],
    }
    swap.error = None
    swap.updated_at = now


def _drain_reason(swap: Swap) -> str:
    return (
        f"sentinel: planned swap ({swap.outcome.get('indicator', 'degraded')}) "
        f"swap {str(swap.id)[:8]}"
    )


def _published(swap: Swap) -> bool:
    """The swap was published to the job's launchers (carried out in the job), whatever
    came of it since."""
    return any(s.get("op") == "in_place" for s in swap.outcome.get("steps", []))


def _in_the_job(swap: Swap) -> bool:
    """Published to the job's launchers and not fallen back to a requeue."""
    published = [s for s in swap.outcome.get("steps", []) if s.get("op") == "in_place"]
    return bool(published) and all(s.get("ok") for s in published)
