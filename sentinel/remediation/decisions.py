"""A decision's lifecycle: its statuses, which operation may move it from which status (a
table), and the operators' and launchers' operations on it, each with its audit row.

The JSON API and the dashboard's forms both call these; a refusal is an exception the API
answers with its status code (409, 404, 502) and the dashboard shows on its page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.clock import Clock
from sentinel.db import audit
from sentinel.db.audit import Actor
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Decision, Host
from sentinel.remediation.policy import Action
from sentinel.schedulers.base import SchedulerAdapter


class DecisionStatus(StrEnum):
    """A decision's status; the values are what the decisions table stores.

    proposed (awaiting an operator) → approved → executing → done | failed; with an outside
    executor, approved decisions wait as pending until it acknowledges them; held (waiting for
    a condition) → approved; a restart in place, once published, waits as awaiting_ack for the
    job's launcher (→ done, or back to approved as a requeue when it does not answer in time),
    and so do a rollback to the code version that trained and a restart skipping data where a
    launcher runs the job;
    escalated, cancelled, recorded (dry run) and noop are final without execution.
    """

    proposed = "proposed"  # waits for an operator's approval (remediation.mode approve)
    held = "held"  # waits for the fabric to be quiet, then restarts
    approved = "approved"  # waits for Sentinel's executor
    pending = "pending"  # waits for an outside scheduler to pull it and acknowledge it
    executing = "executing"  # an executor holds its lease
    awaiting_ack = "awaiting_ack"  # a restart in place, until the job's launcher says so
    done = "done"
    failed = "failed"
    cancelled = "cancelled"
    escalated = "escalated"  # a human decides
    noop = "noop"  # nothing to do
    recorded = "recorded"  # dry run: recorded, never carried out


class Verb(StrEnum):
    approve = "approve"
    cancel = "cancel"
    override = "override"
    ack = "ack"  # an outside scheduler reports a pending decision's outcome
    ack_in_place = "ack_in_place"  # a job's launcher reports a restart in place


@dataclass(frozen=True)
class Move:
    word: str  # as a refusal says it
    source: frozenset[DecisionStatus]  # the statuses it may start from
    target: frozenset[DecisionStatus]  # the statuses it may leave the decision in


S = DecisionStatus
# Where an approved decision waits depends on the executor (ours, or an outside puller): both.
_APPROVED = frozenset({S.approved, S.pending})
MOVES: Final[dict[Verb, Move]] = {
    Verb.approve: Move("approve", frozenset({S.proposed, S.held}), _APPROVED),
    # A restart in place awaiting its launcher may be cancelled too (the advice stops saying it).
    Verb.cancel: Move(
        "cancel",
        frozenset({S.proposed, S.held, S.approved, S.pending, S.awaiting_ack}),
        frozenset({S.cancelled}),
    ),
    Verb.override: Move(
        "override",
        frozenset({S.proposed, S.held, S.approved, S.pending, S.escalated}),
        _APPROVED | {S.escalated, S.noop, S.held},
    ),
    Verb.ack: Move("acknowledge", frozenset({S.pending}), frozenset({S.done, S.failed})),
    # Failed: the requeue it would have been without in-place restarts.
    Verb.ack_in_place: Move("acknowledge", frozenset({S.awaiting_ack}), _APPROVED | {S.done}),
}
# What an override to each action leaves the decision as; any other action is approved.
_OVERRIDDEN: Final = {Action.escalate: S.escalated, Action.none: S.noop, Action.hold: S.held}


class TransitionRefused(Exception):
    """The decision's status (or action) does not allow the operation: HTTP 409."""


class IncompleteOverride(ValueError):
    """An override that lacks what its action needs: HTTP 422."""


class UnknownHost(LookupError):
    """HTTP 404."""


class ResumeRefused(Exception):
    """The scheduler refused to resume a repaired host: HTTP 502."""


def check(decision: Decision, verb: Verb) -> None:
    """Refuse an operation the decision's status does not allow (MOVES)."""
    move = MOVES[verb]
    if decision.status not in move.source:
        allowed = sorted(s.value for s in move.source)
        raise TransitionRefused(
            f"cannot {move.word} a decision that is {str(decision.status)!r}; only {allowed}"
        )


def _move(decision: Decision, verb: Verb, to: DecisionStatus, now: datetime) -> None:
    assert to in MOVES[verb].target, (verb, to)
    decision.status = to
    decision.updated_at = now


def fall_back_to_requeue(
    decision: Decision, why: str, status: DecisionStatus, now: datetime
) -> None:
    """A restart in place that did not happen (no acknowledgment in time, or the launcher says
    it could not): the decision becomes the requeue it would have been without in-place
    restarts, its reason saying why, and the executor carries it out. A rollback or a data skip
    stays one: requeued, on the version or skipping the steps its reason and the job's advice
    name. An exclusion carried out in the job stays one too: requeued without the culprit."""
    if decision.action not in CHANGED_RESTARTS and decision.action != Action.exclude_and_restart:
        decision.action = Action.restart.value
    decision.status = status
    decision.reason += f"; {why}: requeue from checkpoint instead"
    decision.outcome = {
        **{k: v for k, v in decision.outcome.items() if k != "standby_host"},
        "steps": [
            *decision.outcome.get("steps", []),
            {"op": "in_place", "ok": False, "error": why},
        ],
    }
    decision.error = None
    decision.updated_at = now


Outcome = Literal["done", "failed"]
# Restarts that change what the job runs (the code version, the data it reads): its launcher
# carries them out in place where in-place restarts are on, else they are requeued, and they
# stay what they are either way (the advice names the change for the job script).
CHANGED_RESTARTS: Final = frozenset({Action.roll_back, Action.skip_data})
# Decisions the scheduler carries out by requeueing the job (after any drain).
REQUEUES: Final = frozenset({Action.restart, Action.exclude_and_restart}) | CHANGED_RESTARTS
# Decisions that start the job's ranks again, one way or another (a hold restarts them once
# released).
RESTARTS: Final = REQUEUES | {Action.restart_in_place, Action.hold}
# What a job's launcher may carry out and acknowledge: a restart in place, and a changed
# restart (published to it while awaiting_ack; requeued without one).
IN_PLACE: Final = frozenset({Action.restart_in_place}) | CHANGED_RESTARTS
# What the launchers carry out when published to them (an in_place step): the changed
# restarts, and an exclusion onto a standby host of the job's allocation.
IN_THE_JOB: Final = CHANGED_RESTARTS | {Action.exclude_and_restart}


def with_the_launcher(decision: Decision) -> bool:
    """A restart in place, or a changed restart (a rollback, a data skip) or an exclusion
    carried out in the job (onto a standby host) published to the job's launchers that has not
    fallen back to a requeue: the launcher acknowledges it (acknowledge_in_place)."""
    if decision.action == Action.restart_in_place:
        return True
    published = [s for s in decision.outcome.get("steps", []) if s.get("op") == "in_place"]
    return decision.action in IN_THE_JOB and bool(published) and all(s.get("ok") for s in published)


def done_by_a_launcher(outcome: object) -> bool:
    """A launcher acknowledged carrying the decision out (an ack step that went well): the
    restart happened where the job runs, not a requeue it fell back to."""
    steps = outcome.get("steps") if isinstance(outcome, dict) else None
    return isinstance(steps, list) and any(
        isinstance(step, dict) and step.get("op") == "ack" and step.get("ok") is True
        for step in steps
    )


@dataclass(frozen=True)
class DecisionOperations:
    """What operators and launchers do to decisions, in the caller's unit of work."""

    clock: Clock
    # What an approved decision waits as: for our executor, or for an outside puller.
    approved: DecisionStatus

    def _audit(
        self,
        session: AsyncSession,
        who: Actor,
        action: str,
        decision: Decision,
        detail: dict[str, Any],
    ) -> None:
        audit.record(session, who, action, f"decision:{decision.id}", detail, self.clock.now())

    def approve(self, session: AsyncSession, decision: Decision, who: Actor, note: str) -> None:
        check(decision, Verb.approve)
        _move(decision, Verb.approve, self.approved, self.clock.now())
        self._audit(session, who, "decision.approve", decision, {"comment": note})

    def cancel(self, session: AsyncSession, decision: Decision, who: Actor, note: str) -> None:
        check(decision, Verb.cancel)
        _move(decision, Verb.cancel, S.cancelled, self.clock.now())
        decision.reason += f"; cancelled by {who.name}" + (f": {note}" if note else "")
        self._audit(session, who, "decision.cancel", decision, {"comment": note})

    def override(
        self,
        session: AsyncSession,
        decision: Decision,
        who: Actor,
        action: Action,
        exclude_hosts: Sequence[str],
        reason: str,
    ) -> None:
        """Replace a decision that has not started with the operator's."""
        check(decision, Verb.override)
        if action == Action.exclude_and_restart and not exclude_hosts:
            raise IncompleteOverride("exclude_hosts: exclude_and_restart needs at least one host")
        before = {
            "action": decision.action,
            "exclude_hosts": decision.exclude_hosts,
            "rule": decision.rule,
        }
        decision.action = action.value
        decision.exclude_hosts = list(exclude_hosts) if action == Action.exclude_and_restart else []
        decision.rule = "OperatorOverride"
        decision.reason = f"overridden by {who.name}: {reason}"
        # The operator names the hosts, not their repair: none is automated (Mark repaired).
        decision.outcome = {**decision.outcome, "repair": {}}
        # A hold waits as the policy's own holds do: released to a restart once the fabric is
        # quiet, or approved or cancelled by hand before that.
        to = _OVERRIDDEN.get(action, self.approved)
        _move(decision, Verb.override, to, self.clock.now())
        after = {"action": action.value, "exclude_hosts": list(exclude_hosts), "reason": reason}
        self._audit(session, who, "decision.override", decision, {"before": before, "after": after})

    def acknowledge(
        self, session: AsyncSession, decision: Decision, who: Actor, outcome: Outcome, detail: str
    ) -> None:
        """An outside scheduler's outcome of a pending decision."""
        check(decision, Verb.ack)
        step = _ack_step(who, outcome, detail)
        decision.error = detail if outcome == "failed" else None
        decision.outcome = {**decision.outcome, "steps": [*decision.outcome.get("steps", []), step]}
        _move(decision, Verb.ack, S(outcome), self.clock.now())
        self._audit(session, who, "decision.ack", decision, {"outcome": outcome, "detail": detail})

    def acknowledge_in_place(
        self, session: AsyncSession, decision: Decision, who: Actor, outcome: Outcome, detail: str
    ) -> None:
        """A job's launcher says whether it restarted the ranks in place; the caller has
        checked that it speaks for the job. Acknowledging done twice changes nothing."""
        in_the_job = with_the_launcher(decision)
        if (
            decision.status == S.done
            and outcome == "done"
            and (decision.action in IN_PLACE or in_the_job)
        ):
            return  # a launcher's retry (or another launcher of the job) after it was done
        if decision.action not in IN_PLACE and not in_the_job:
            raise TransitionRefused(
                f"decision {decision.id} is no longer a restart in place ({decision.action}, "
                f"{decision.status}): it was not acknowledged in time and the job is requeued"
            )
        check(decision, Verb.ack_in_place)
        now = self.clock.now()
        step = _ack_step(who, outcome, detail)
        decision.outcome = {**decision.outcome, "steps": [*decision.outcome.get("steps", []), step]}
        if outcome == "done":
            _move(decision, Verb.ack_in_place, S.done, now)
        else:
            why = f"the launcher could not restart in place ({detail or 'no detail'})"
            fall_back_to_requeue(decision, why, self.approved, now)
        self._audit(session, who, "decision.ack", decision, {"outcome": outcome, "detail": detail})


def _ack_step(who: Actor, outcome: Outcome, detail: str) -> dict[str, object]:
    return {"op": "ack", "ok": outcome == "done", "adapter": who.name, "output": detail}


async def _host(session: AsyncSession, host_id: str) -> Host:
    host = await session.get(Host, host_id)
    if host is None:
        raise UnknownHost(f"no host {host_id!r}")
    return host


async def mark_repaired(
    sessions: async_sessionmaker[AsyncSession],
    scheduler: SchedulerAdapter,
    clock: Clock,
    who: Actor,
    host_id: str,
    note: str,
) -> None:
    """An operator says a drained host is repaired: the scheduler resumes it, then it is back
    in service. The scheduler runs between two units of work, never inside a transaction."""
    async with unit_of_work(sessions) as session:
        await _host(session, host_id)
    result = await scheduler.resume(host_id)
    if not result.ok:
        raise ResumeRefused(
            f"scheduler {result.adapter} refused to resume {host_id}: {result.error}"
        )
    async with unit_of_work(sessions) as session:
        host = await _host(session, host_id)
        host.drain_state = "none"
        host.drain_reason = None
        host.last_critical_at = None
        host.last_critical = None
        detail = {"comment": note, "commands": list(result.commands)}
        audit.record(session, who, "host.repaired", f"host:{host_id}", detail, clock.now())
