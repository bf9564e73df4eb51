"""Executions under a lease: a decision whose executor died or raised is taken over, retried
while the scheduler may repeat its steps, and failed or escalated (and alerted) when not."""

from __future__ import annotations

from collections.abc import Sequence

from builders import xid
from sqlalchemy import select

from remediation.timeline import Timeline
from sentinel.alerting.incidents import REMEDIATION_FAILED_ALERT
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Alert
from sentinel.schedulers.base import Operation, OpResult

ALL_STEPS: frozenset[Operation] = frozenset({"drain", "resume", "requeue", "reboot", "reset_gpu"})


async def _gpu_falls_off_the_bus(tl: Timeline) -> None:
    """XID 79 on node3, triaged and decided (exclude node3 and restart), not yet executed."""
    tl.clock.advance(10)
    await tl.post("node3", [xid(79, gpu=2, when=tl.clock.now(), message="GPU has fallen off")])
    await tl.ctx.stages.run(await tl.ctx.triage_worker.run_once())
    [d] = await tl.decisions()
    assert (d.action, d.status) == ("exclude_and_restart", "approved")


async def _claim_and_die(tl: Timeline) -> None:
    """An executor claims the decision, then its process is killed before any step runs."""
    [d] = await tl.decisions()
    async with unit_of_work(tl.ctx.sessions) as s:
        assert await tl.ctx.remediation.claim(s, d.id)


async def _failed_alerts(tl: Timeline) -> list[Alert]:
    async with unit_of_work(tl.ctx.sessions) as s:
        alerts = (await s.scalars(select(Alert))).all()
    return [a for a in alerts if a.labels["alertname"] == REMEDIATION_FAILED_ALERT]


async def test_a_dead_executors_decision_is_taken_over_after_its_lease(tl: Timeline) -> None:
    tl.fake.idempotent_steps = ALL_STEPS  # type: ignore[misc]
    await _gpu_falls_off_the_bus(tl)
    await _claim_and_die(tl)

    # Within the lease the executor may still be working: nobody steps in.
    tl.clock.advance(tl.ctx.remediation._settings.lease_s - 1)
    await tl.loops()
    [d] = await tl.decisions()
    assert d.status == "executing" and d.attempts == 1 and d.lease_until is not None
    assert await tl.requeues() == 0

    tl.clock.advance(2)
    await tl.loops()
    [d] = await tl.decisions()
    assert (d.status, d.attempts) == ("done", 2)
    assert d.claimed_by is None and d.lease_until is None
    assert await tl.drained("node3") and await tl.requeues() == 1
    assert "node3" not in await tl.job_nodes()
    assert await _failed_alerts(tl) == []


async def test_a_dead_executor_with_a_requeue_that_cannot_repeat_escalates(tl: Timeline) -> None:
    await _gpu_falls_off_the_bus(tl)  # the fake, like Slurm, may not repeat a requeue
    await _claim_and_die(tl)
    tl.clock.advance(tl.ctx.remediation._settings.lease_s + 1)
    await tl.loops()
    [d] = await tl.decisions()
    assert d.status == "escalated"
    assert d.error is not None and "lease expired" in d.error and "requeue" in d.error
    assert await tl.requeues() == 0
    [alert] = await _failed_alerts(tl)
    assert alert.state == "firing" and alert.labels["severity"] == "critical"
    assert "escalated" in alert.annotations["summary"]


async def test_an_execute_that_raises_is_retried_then_failed_and_alerted(tl: Timeline) -> None:
    tl.fake.idempotent_steps = ALL_STEPS  # type: ignore[misc]
    calls = 0

    async def broken(job_id: str, exclude_hosts: Sequence[str]) -> OpResult:
        nonlocal calls
        calls += 1
        raise RuntimeError("scheduler client crashed")

    tl.fake.requeue = broken  # type: ignore[method-assign]
    await _gpu_falls_off_the_bus(tl)
    max_attempts = tl.ctx.remediation._settings.max_attempts
    for attempt in range(1, max_attempts):
        changes = await tl.ctx.remediation.run_due(tl.ctx.sessions)
        assert changes == []
        [d] = await tl.decisions()
        # Released with the error for the next pass, never left executing.
        assert (d.status, d.attempts) == ("approved", attempt)
        assert d.error is not None and "scheduler client crashed" in d.error
        assert await _failed_alerts(tl) == []

    changes = await tl.ctx.remediation.run_due(tl.ctx.sessions)
    assert [c.kind for c in changes] == ["decision_failed"]
    await tl.ctx.stages.run(changes)
    [d] = await tl.decisions()
    assert (d.status, d.attempts) == ("failed", max_attempts) and calls == max_attempts
    assert d.error is not None and d.error.startswith(f"gave up after {max_attempts} attempts")
    [alert] = await _failed_alerts(tl)
    assert alert.state == "firing" and "scheduler client crashed" in alert.annotations["summary"]

    # The loop leaves a failed decision alone.
    await tl.loops()
    assert calls == max_attempts


async def test_an_execute_that_raises_once_succeeds_on_the_next_attempt(tl: Timeline) -> None:
    tl.fake.idempotent_steps = ALL_STEPS  # type: ignore[misc]
    requeue = tl.fake.requeue

    async def flaky(job_id: str, exclude_hosts: Sequence[str]) -> OpResult:
        tl.fake.requeue = requeue  # type: ignore[method-assign]
        raise TimeoutError("controller did not answer")

    tl.fake.requeue = flaky  # type: ignore[method-assign]
    await _gpu_falls_off_the_bus(tl)
    await tl.loops()
    [d] = await tl.decisions()
    assert (d.status, d.attempts) == ("approved", 1)
    await tl.loops()
    [d] = await tl.decisions()
    assert (d.status, d.attempts, d.error) == ("done", 2, None)
    assert await tl.requeues() == 1
