"""A decision's moves, read from the table: every operation from every status, allowed (the
status it leaves and the audit row) or refused (409's message, nothing changed, no row)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from sentinel.auth import Principal
from sentinel.clock import VirtualClock
from sentinel.db.models import AuditEntry, Decision
from sentinel.remediation.decisions import (
    MOVES,
    DecisionOperations,
    DecisionStatus,
    IncompleteOverride,
    TransitionRefused,
    Verb,
)
from sentinel.remediation.policy import Action

T0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
ALICE = Principal("alice", "operator")
S = DecisionStatus
AUDITED_AS = {
    Verb.approve: "decision.approve",
    Verb.cancel: "decision.cancel",
    Verb.override: "decision.override",
    Verb.ack: "decision.ack",
    Verb.ack_in_place: "decision.ack",
}


class Rows:
    """Stands for the unit of work: keeps the rows added to it."""

    def __init__(self) -> None:
        self.added: list[Any] = []

    def add(self, row: Any) -> None:
        self.added.append(row)


def unit() -> Any:
    return Rows()


def a_decision(status: str, action: Action = Action.restart) -> Decision:
    return Decision(
        id=uuid.uuid4(),
        incident_id=uuid.uuid4(),
        job_id="job-1",
        action=action.value,
        status=status,
        rule="ExcludeHostOnHardGpuFault",
        reason="XID 79 on node-3",
        exclude_hosts=[],
        outcome={"steps": []},
        error=None,
        created_at=T0,
        updated_at=T0,
    )


def operations(approved: DecisionStatus = S.approved) -> DecisionOperations:
    return DecisionOperations(VirtualClock(T0), approved)


def act(verb: Verb, d: Decision, session: Any, ops: DecisionOperations | None = None) -> None:
    ops = ops or operations()
    if verb == Verb.approve:
        ops.approve(session, d, ALICE, "looks right")
    elif verb == Verb.cancel:
        ops.cancel(session, d, ALICE, "not now")
    elif verb == Verb.override:
        ops.override(session, d, ALICE, Action.escalate, [], "a human looks first")
    elif verb == Verb.ack:
        ops.acknowledge(session, d, ALICE, "done", "requeued")
    else:
        ops.acknowledge_in_place(session, d, ALICE, "failed", "ranks did not come back")


def action_for(verb: Verb) -> Action:
    return Action.restart_in_place if verb == Verb.ack_in_place else Action.restart


@pytest.mark.parametrize("status", list(DecisionStatus))
@pytest.mark.parametrize("verb", list(Verb))
def test_each_operation_from_each_status(verb: Verb, status: DecisionStatus) -> None:
    d, rows = a_decision(status.value, action_for(verb)), unit()
    move = MOVES[verb]
    if status in move.source:
        act(verb, d, rows)
        assert d.status in move.target
        [row] = rows.added
        assert isinstance(row, AuditEntry)
        assert (row.actor, row.role, row.action, row.target) == (
            "alice",
            "operator",
            AUDITED_AS[verb],
            f"decision:{d.id}",
        )
    else:
        allowed = sorted(s.value for s in move.source)
        message = f"cannot {move.word} a decision that is '{status.value}'; only {allowed}"
        with pytest.raises(TransitionRefused) as refused:
            act(verb, d, rows)
        assert str(refused.value) == message
        assert (d.status, d.updated_at, rows.added) == (status.value, T0, [])


def test_the_values_are_the_stored_strings() -> None:
    assert [s.value for s in DecisionStatus] == [
        "proposed",
        "held",
        "approved",
        "pending",
        "executing",
        "awaiting_ack",
        "done",
        "failed",
        "cancelled",
        "escalated",
        "noop",
        "recorded",
    ]


def test_every_operation_has_a_move() -> None:
    assert set(MOVES) == set(Verb)


@pytest.mark.parametrize("approved", [S.approved, S.pending])
def test_an_approval_waits_for_the_executor_it_has(approved: DecisionStatus) -> None:
    d, rows = a_decision("proposed"), unit()
    act(Verb.approve, d, rows, operations(approved))
    assert d.status == approved
    assert rows.added[0].detail == {"comment": "looks right"}


@pytest.mark.parametrize(
    ("action", "status"),
    [
        (Action.escalate, S.escalated),
        (Action.none, S.noop),
        (Action.hold, S.held),
        (Action.restart, S.approved),
        (Action.exclude_and_restart, S.approved),
    ],
)
def test_an_override_leaves_the_status_of_its_action(
    action: Action, status: DecisionStatus
) -> None:
    d, rows = a_decision("proposed"), unit()
    operations().override(rows, d, ALICE, action, ["node-3"], "the operator knows")
    assert (d.status, d.rule, d.action) == (status, "OperatorOverride", action.value)
    assert d.exclude_hosts == (["node-3"] if action == Action.exclude_and_restart else [])
    assert rows.added[0].detail["after"] == {
        "action": action.value,
        "exclude_hosts": ["node-3"],
        "reason": "the operator knows",
    }


def test_an_exclusion_without_a_host_is_refused() -> None:
    d, rows = a_decision("proposed"), unit()
    with pytest.raises(IncompleteOverride, match="needs at least one host"):
        operations().override(rows, d, ALICE, Action.exclude_and_restart, [], "why not")
    assert (d.status, rows.added) == ("proposed", [])


def test_a_restart_in_place_acknowledged_done_twice_changes_nothing() -> None:
    d, rows = a_decision("awaiting_ack", Action.restart_in_place), unit()
    operations().acknowledge_in_place(rows, d, ALICE, "done", "")
    operations().acknowledge_in_place(rows, d, ALICE, "done", "")
    assert d.status == S.done
    assert len(rows.added) == 1


def test_a_restart_in_place_that_failed_becomes_a_requeue() -> None:
    d, rows = a_decision("awaiting_ack", Action.restart_in_place), unit()
    operations(S.pending).acknowledge_in_place(rows, d, ALICE, "failed", "no GPU")
    assert (d.status, d.action) == (S.pending, "restart")
    assert [(s["op"], s["ok"]) for s in d.outcome["steps"]] == [("ack", False), ("in_place", False)]
    assert "could not restart in place (no GPU)" in d.reason


def test_a_late_launcher_is_told_the_job_was_requeued() -> None:
    d, rows = a_decision("approved", Action.restart), unit()
    with pytest.raises(TransitionRefused, match="no longer a restart in place"):
        operations().acknowledge_in_place(rows, d, ALICE, "done", "")
    assert rows.added == []
