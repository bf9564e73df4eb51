"""Restart in place (issue 17 item 4): a transient fault with no host to blame is answered by
the launcher restarting the ranks on the same allocation: no requeue; the advice says so from
when the decision is published until the launcher acknowledges it; once per fault in the
window (the same fault again is requeued); no acknowledgment in time: requeued."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from builders import obs
from conftest import auth

from remediation.test_remediation import TRACEBACK
from remediation.timeline import HOSTS, Timeline
from sentinel.knowledge.taxonomy import Category
from sentinel.remediation.policy import (
    DEFAULT_POLICY,
    Action,
    PastDecision,
    RemediationContext,
    RequeueARepeatedInPlaceRestart,
    RestartInPlaceAfterALinkFlap,
    RestartInPlaceWhenTransient,
)
from sentinel.remediation.settings import RemediationSettings

ON = RemediationSettings(in_place=True)


def ctx(**kw: Any) -> RemediationContext:
    values: dict[str, Any] = {
        "category": Category.NCCL_WATCHDOG_TIMEOUT,
        "culprit_host": None,
        "culprit_gpu": None,
        "confidence": 0.6,
        "xids": (),
        "signature": None,
        "job_id": "job-1",
        "job_hosts": 4,
        "checkpoint_step": 100,
        "current_step": 120,
        "past": (),
        "drains_last_hour": 0,
        "spare_hosts": 2,
        "settings": ON,
    }
    return RemediationContext(**{**values, **kw})


def test_the_rule_restarts_in_place_only_what_is_transient_and_only_once() -> None:
    rule = RestartInPlaceWhenTransient()
    p = rule.propose(ctx())
    assert p is not None and p.action == Action.restart_in_place
    assert "same allocation" in p.reason and "step 100" in p.reason
    assert rule.propose(ctx(settings=RemediationSettings())) is None  # off by default
    assert rule.propose(ctx(culprit_host="node2")) is None  # a hang traced to a host: exclude
    # A software error is seen on a host, which is not to blame for it.
    on_host = ctx(category=Category.SOFTWARE_BUG, culprit_host="node2")
    assert rule.propose(on_host) is not None
    assert DEFAULT_POLICY.decide(on_host).action == Action.restart_in_place
    assert rule.propose(ctx(category=Category.FAULTY_GPU)) is None
    before = PastDecision(
        "nccl_watchdog_timeout", "restart_in_place", "done", datetime.now(UTC), None
    )
    assert rule.propose(ctx(past=(before,))) is None  # back again: requeue this time
    assert DEFAULT_POLICY.decide(ctx(past=(before,))).action == Action.restart
    assert DEFAULT_POLICY.decide(ctx(category=Category.SOFTWARE_BUG)).action == (
        Action.restart_in_place
    )
    # Another fault (another category or signature) is restarted in place too.
    other = ctx(
        category=Category.SOFTWARE_BUG, signature="RuntimeError: CUDA error: #", past=(before,)
    )
    assert rule.propose(other) is not None


def test_the_same_fault_after_an_in_place_restart_is_requeued() -> None:
    rule = RequeueARepeatedInPlaceRestart()
    hang = PastDecision(
        "nccl_watchdog_timeout", "restart_in_place", "done", datetime.now(UTC), None
    )
    assert rule.propose(ctx()) is None  # the first time: in place
    p = rule.propose(ctx(past=(hang,)))
    assert p is not None and p.action == Action.restart
    assert "same signature" in p.reason and "requeue from checkpoint step 100" in p.reason
    d = DEFAULT_POLICY.decide(ctx(past=(hang,)))
    assert (d.action, d.rule) == (Action.restart, "RequeueARepeatedInPlaceRestart")
    # Requeued once already: not this rule's any more (the usual restart, or a cap).
    requeued = PastDecision("nccl_watchdog_timeout", "restart", "done", datetime.now(UTC), None)
    assert rule.propose(ctx(past=(hang, requeued))) is None
    assert DEFAULT_POLICY.decide(ctx(past=(hang, requeued))).rule == "RestartFromCheckpoint"
    # Another fault is not the same; nothing with in_place off.
    assert rule.propose(ctx(category=Category.UNKNOWN, past=(hang,))) is None
    assert rule.propose(ctx(past=(hang,), settings=RemediationSettings())) is None


def test_the_same_software_error_after_an_in_place_restart_is_a_crash_loop() -> None:
    sig = "RuntimeError: CUDA error: an illegal memory access was encountered"
    bug = {"category": Category.SOFTWARE_BUG, "signature": sig}
    in_place = PastDecision("software_bug", "restart_in_place", "done", datetime.now(UTC), sig)
    d = DEFAULT_POLICY.decide(ctx(**bug, past=(in_place,)))
    assert (d.action, d.rule) == (Action.escalate, "EscalateRepeatedSoftwareBug")
    # Where two restarts of the same error are allowed, the second is the requeue.
    two = RemediationSettings(in_place=True, software_bug_restarts=2)
    d = DEFAULT_POLICY.decide(ctx(**bug, past=(in_place,), settings=two))
    assert (d.action, d.rule) == (Action.restart, "RequeueARepeatedInPlaceRestart")


async def test_a_crash_is_restarted_in_place_without_a_requeue(tl: Timeline) -> None:
    tl.ctx.remediation._settings = tl.ctx.settings.remediation.model_copy(update={"in_place": True})
    tl.clock.advance(60)
    await tl.beats()
    for h, host in enumerate(HOSTS[:4]):
        await tl.post(
            host,
            [
                obs(
                    "log",
                    tl.clock.now(),
                    source="application",
                    message=TRACEBACK,
                    rank=h * 8,
                    job_id="job-1",
                )
            ],
        )
    await tl.loops()
    [d] = await tl.decisions()
    assert (d.action, d.status, d.rule) == (
        "restart_in_place",
        "awaiting_ack",
        "RestartInPlaceWhenTransient",
    )
    assert [s["op"] for s in d.outcome["steps"]] == ["in_place"]
    assert await tl.requeues() == 0  # the allocation is kept
    r = await tl.client.get("/api/v1/jobs/job-1/advice", headers=auth(tl.tokens["agent"]))
    advice = r.json()
    assert advice["restart_in_place"] is True and advice["restart_decision"] == str(d.id)
    assert "same allocation" in advice["restart_reason"]

    # The launcher restarted the ranks and says so (with the agent token of the job's hosts).
    r = await tl.client.post(
        f"/api/v1/decisions/{d.id}/ack",
        json={"outcome": "done", "detail": "restarted: run 2"},
        headers=auth(tl.tokens["agent"]),
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "done" and r.json()["outcome"]["steps"][-1]["op"] == "ack"
    again = await tl.client.post(
        f"/api/v1/decisions/{d.id}/ack", json={"outcome": "done"}, headers=auth(tl.tokens["agent"])
    )
    assert again.status_code == 200 and again.json()["status"] == "done"  # a retry
    r = await tl.client.get("/api/v1/jobs/job-1/advice", headers=auth(tl.tokens["agent"]))
    # Acknowledged: the restarted ranks are not told again, but the decision is still named
    # for the other hosts' launchers (one per host) that have not polled since.
    assert r.json()["restart_in_place"] is False
    assert r.json()["restart_decision"] == str(d.id)

    # The ranks restarted at once (no stall long enough for the watchdog to see): the job
    # advancing after the acknowledged restart resolves the incident.
    for _ in range(3):
        tl.clock.advance(10)
        await tl.beats()
        await tl.watchdog()
        await tl.loops()
    [incident] = await tl.incidents()
    assert incident.state == "resolved"
    r = await tl.client.get("/api/v1/jobs/job-1/advice", headers=auth(tl.tokens["viewer"]))
    assert r.json()["restart_in_place"] is False and r.json()["restart_decision"] is None


async def _crash(tl: Timeline) -> None:
    tl.ctx.remediation._settings = tl.ctx.settings.remediation.model_copy(update={"in_place": True})
    tl.clock.advance(60)
    await tl.beats()
    for h, host in enumerate(HOSTS[:4]):
        await tl.post(
            host,
            [
                obs(
                    "log",
                    tl.clock.now(),
                    source="application",
                    message=TRACEBACK,
                    rank=h * 8,
                    job_id="job-1",
                )
            ],
        )
    await tl.loops()


async def test_no_acknowledgment_in_time_requeues_the_job(tl: Timeline) -> None:
    await _crash(tl)
    [d] = await tl.decisions()
    assert d.status == "awaiting_ack"
    tl.clock.advance(tl.ctx.settings.remediation.in_place_ack_s + 1)
    await tl.loops()
    [d] = await tl.decisions()
    assert (d.action, d.status) == ("restart", "done")
    assert "no launcher acknowledged the restart in place in 180 s" in d.reason
    assert "requeue from checkpoint instead" in d.reason
    assert [s["op"] for s in d.outcome["steps"]] == ["in_place", "in_place", "requeue"]
    assert await tl.requeues() == 1
    # A launcher that answers now is told the job was requeued.
    r = await tl.client.post(
        f"/api/v1/decisions/{d.id}/ack", json={"outcome": "done"}, headers=auth(tl.tokens["agent"])
    )
    assert r.status_code == 409 and "requeued" in r.json()["detail"]
    # Requeued, not done by a launcher: the requeued job's launchers are not told to restart.
    r = await tl.client.get("/api/v1/jobs/job-1/advice", headers=auth(tl.tokens["agent"]))
    assert r.json()["restart_in_place"] is False and r.json()["restart_decision"] is None


async def test_a_launcher_that_cannot_restart_falls_back_to_the_requeue(tl: Timeline) -> None:
    await _crash(tl)
    [d] = await tl.decisions()
    r = await tl.client.post(
        f"/api/v1/decisions/{d.id}/ack",
        json={"outcome": "failed", "detail": "3 restarts done"},
        headers=auth(tl.tokens["agent"]),
    )
    assert r.status_code == 200 and r.json()["status"] == "approved"
    await tl.loops()
    [d] = await tl.decisions()
    assert (d.action, d.status) == ("restart", "done") and await tl.requeues() == 1
    assert "could not restart in place (3 restarts done)" in d.reason


async def test_only_an_in_place_restart_is_acknowledged_by_an_agent(tl: Timeline) -> None:
    await _crash(tl)
    [d] = await tl.decisions()
    viewer = await tl.client.post(
        f"/api/v1/decisions/{d.id}/ack", json={"outcome": "done"}, headers=auth(tl.tokens["viewer"])
    )
    assert viewer.status_code == 403
    bad = await tl.client.post(
        f"/api/v1/decisions/{d.id}/ack", json={"outcome": "maybe"}, headers=auth(tl.tokens["agent"])
    )
    assert bad.status_code == 422


FLAP = (
    "/sys/class/infiniband/mlx5_0/ports/1: link flapped: state 4: ACTIVE, phys_state 5: LinkUp, "
    "link_downed 3 -> 4"
)


def test_a_link_that_flapped_and_recovered_is_restarted_in_place() -> None:
    rule = RestartInPlaceAfterALinkFlap()
    flap = {"category": Category.NIC, "culprit_host": "node2", "link_flapped": True}
    p = rule.propose(ctx(**flap))
    assert p is not None and p.action == Action.restart_in_place
    assert "flapped and is up again" in p.reason and "node2" in p.reason
    d = DEFAULT_POLICY.decide(ctx(**flap))
    assert (d.action, d.rule) == (Action.restart_in_place, "RestartInPlaceAfterALinkFlap")
    # A link still down is the NIC's fault: its host leaves, as without in-place restarts.
    down = ctx(category=Category.NIC, culprit_host="node2")
    assert rule.propose(down) is None
    assert DEFAULT_POLICY.decide(down).action == Action.exclude_and_restart
    assert rule.propose(ctx(**flap, settings=RemediationSettings())) is None
    # The same link flapping again: the host is excluded.
    before = PastDecision("nic", "restart_in_place", "done", datetime.now(UTC), None)
    assert rule.propose(ctx(**flap, past=(before,))) is None
    assert DEFAULT_POLICY.decide(ctx(**flap, past=(before,))).action == (Action.exclude_and_restart)


async def test_a_flapped_link_in_a_running_job_is_restarted_in_place(tl: Timeline) -> None:
    tl.ctx.remediation._settings = tl.ctx.settings.remediation.model_copy(update={"in_place": True})
    tl.clock.advance(60)
    await tl.beats()
    await tl.post(
        "node2",
        [
            obs(
                "log",
                tl.clock.now(),
                source="infiniband",
                message=FLAP,
                pattern="ib_sysfs_link_down",
                family="ib",
                severity="error",
            )
        ],
    )
    for _ in range(3):  # the ranks stop: their collectives broke on the link
        tl.clock.advance(10)
        await tl.alive()
        await tl.watchdog()
        await tl.loops()
    [d] = await tl.decisions()
    assert (d.action, d.rule, d.status) == (
        "restart_in_place",
        "RestartInPlaceAfterALinkFlap",
        "awaiting_ack",
    ), d.reason
    assert d.exclude_hosts == [] and await tl.requeues() == 0


async def test_an_operator_may_cancel_a_restart_in_place_awaiting_its_launcher(
    tl: Timeline,
) -> None:
    await _crash(tl)
    [d] = await tl.decisions()
    r = await tl.client.post(
        f"/api/v1/decisions/{d.id}/cancel",
        json={"comment": "fixing the data loader first"},
        headers=auth(tl.tokens["operator"]),
    )
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    r = await tl.client.get("/api/v1/jobs/job-1/advice", headers=auth(tl.tokens["agent"]))
    assert r.json()["restart_in_place"] is False
    tl.clock.advance(tl.ctx.settings.remediation.in_place_ack_s + 1)
    await tl.loops()
    assert await tl.requeues() == 0  # cancelled: no fallback either


LINK_DOWN = (
    "/sys/class/infiniband/mlx5_0/ports/1: link down: state 4: ACTIVE -> 1: DOWN, "
    "phys_state 5: LinkUp -> 2: Polling, link_downed 0 -> 1"
)


async def _fabric_fault_then_quiet(tl: Timeline) -> None:
    """Every host of the job loses its link at once (a leaf switch), then the fabric is quiet."""
    tl.clock.advance(60)
    await tl.beats()
    for host in HOSTS[:4]:
        await tl.post(
            host,
            [
                obs(
                    "log",
                    tl.clock.now(),
                    source="infiniband",
                    message=LINK_DOWN,
                    pattern="ib_sysfs_link_down",
                    family="ib",
                    severity="error",
                )
            ],
        )
    for _ in range(3):
        tl.clock.advance(10)
        await tl.alive()
        await tl.watchdog()
        await tl.loops()
    [held] = await tl.decisions()
    assert (held.action, held.status, held.rule) == (
        "hold",
        "held",
        "HoldWhileTheFabricIsDown",
    ), held.reason
    tl.clock.advance(tl.ctx.remediation._settings.fabric_quiet_s + 1)
    await tl.loops()  # released: the fabric has been quiet
    await tl.loops()  # carried out


async def test_a_held_restart_is_in_place_once_the_fabric_is_quiet(tl: Timeline) -> None:
    tl.ctx.remediation._settings = tl.ctx.settings.remediation.model_copy(update={"in_place": True})
    await _fabric_fault_then_quiet(tl)
    [d] = await tl.decisions()
    assert (d.action, d.status) == ("restart_in_place", "awaiting_ack"), d.reason
    assert "fabric quiet" in d.reason and "restart in place" in d.reason
    assert await tl.requeues() == 0  # the allocation is kept
    r = await tl.client.get("/api/v1/jobs/job-1/advice", headers=auth(tl.tokens["agent"]))
    assert r.json()["restart_in_place"] is True and r.json()["restart_decision"] == str(d.id)


async def test_a_held_restart_is_a_requeue_without_in_place_restarts(tl: Timeline) -> None:
    await _fabric_fault_then_quiet(tl)
    [d] = await tl.decisions()
    assert (d.action, d.status) == ("restart", "done"), d.reason
    assert d.reason.endswith("restart") and await tl.requeues() == 1
