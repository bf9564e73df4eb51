"""An operator's restart in place for planned work (a configuration or dataset update): at t=0
the operator asks -> the job's planned incident opens with one decision (restart_in_place by
OperatorRestartInPlace, naming the operator and why), held while the advice asks the ranks to
checkpoint now -> a durable checkpoint past the step reached is reported -> the executor
publishes it in the advice -> the launcher restarts the ranks and acknowledges it -> the job
trains again and the incident resolves; the stop is planned work, never an unexpected
interruption. No checkpoint in time: restarted anyway, saying how many steps are lost. No
acknowledgment in time: requeued, as the policy's restarts in place are."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from builders import heartbeat, xid
from conftest import auth
from sqlalchemy import select

from remediation.timeline import HOSTS, Timeline
from sentinel.db.engine import unit_of_work
from sentinel.db.models import AuditEntry, Maintenance
from sentinel.incidents.verdicts import verdict_of
from sentinel.knowledge.taxonomy import Category
from sentinel.remediation.policy import (
    DEFAULT_POLICY,
    Action,
    CapRestartsPerJob,
    PastDecision,
    RemediationContext,
)
from sentinel.remediation.settings import RemediationSettings

WHY = "dataset update: shards 12-15 replaced"


def _in_place_on(tl: Timeline) -> None:
    settings = tl.ctx.settings.remediation.model_copy(update={"in_place": True})
    tl.ctx.remediation._settings = settings


async def _ask(tl: Timeline, **body: Any) -> dict[str, Any]:
    r = await tl.client.post(
        "/api/v1/jobs/job-1/restart-in-place",
        json={"reason": WHY, **body},
        headers=auth(tl.tokens["operator"]),
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _advice(tl: Timeline) -> dict[str, Any]:
    r = await tl.client.get("/api/v1/jobs/job-1/advice", headers=auth(tl.tokens["agent"]))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_the_operators_restart_is_carried_out_in_place_by_the_launcher(
    tl: Timeline,
) -> None:
    _in_place_on(tl)
    tl.clock.advance(60)
    await tl.beats()
    asked = await _ask(tl, code_version="v2.1")
    assert (asked["action"], asked["status"], asked["rule"]) == (
        "restart_in_place",
        "held",
        "OperatorRestartInPlace",
    )
    assert "asked by operator: " + WHY in asked["reason"]
    assert (
        "held for the job's next durable checkpoint (after step 100, at or past step 110)"
        in (asked["reason"])
    )
    assert asked["code_version"] == "v2.1" and asked["checkpoint_step"] == 100
    # What the operator finds on the incident page: planned work, the announcement its cause.
    [incident] = await tl.incidents()
    assert (incident.category, incident.state, incident.culprit_host) == ("planned", "open", None)
    assert str(incident.id) == asked["incident_id"]
    assert (
        f"announced maintenance by operator: planned restart in place on code version v2.1: {WHY}"
        in incident.reason
    )
    async with unit_of_work(tl.ctx.sessions) as s:
        [m] = (await s.scalars(select(Maintenance))).all()
        [entry] = (
            await s.scalars(select(AuditEntry).where(AuditEntry.action == "job.restart_in_place"))
        ).all()
    assert (m.job_id, sorted(m.hosts), m.author) == ("job-1", HOSTS[:4], "operator")
    assert (entry.actor, entry.target, entry.detail["reason"]) == ("operator", "job:job-1", WHY)
    # Nothing to restart yet: the ranks are asked to checkpoint, and train meanwhile.
    advice = await _advice(tl)
    assert advice["restart_decision"] is None
    assert advice["checkpoint_now"] is True and WHY in advice["reason"]
    tl.clock.advance(10)
    await tl.beats()
    await tl.loops()
    [d] = await tl.decisions()
    assert d.status == "held"
    # A checkpoint at step 110 but not yet on every rank is not durable: still held.
    tl.clock.advance(10)
    await tl.post(HOSTS[0], [heartbeat(rank=0, step=115, when=tl.clock.now(), checkpoint_step=115)])
    await tl.loops()
    [d] = await tl.decisions()
    assert d.status == "held"

    await tl.beats(checkpoint_step=115)  # every rank saved step 115
    await tl.loops()
    [d] = await tl.decisions()
    assert (d.status, [s["op"] for s in d.outcome["steps"]]) == ("awaiting_ack", ["in_place"])
    assert "checkpoint step 115 durable: restart now" in d.reason
    assert (d.checkpoint_step, d.steps_lost) == (115, tl.step - 115)
    async with unit_of_work(tl.ctx.sessions) as s:
        [m] = (await s.scalars(select(Maintenance))).all()
    # Announced until the launcher's acknowledgment is due, counted from the release.
    ack_s = tl.ctx.settings.remediation.in_place_ack_s
    assert m.ends_at == tl.clock.now() + timedelta(seconds=ack_s)
    advice = await _advice(tl)
    assert advice["checkpoint_now"] is False
    assert advice["restart_in_place"] is True and advice["restart_decision"] == str(d.id)
    assert advice["restart_code_version"] == "v2.1"
    assert WHY in advice["restart_reason"]

    # The launcher restarts the ranks and says so; a second launcher's ack changes nothing.
    for _ in range(2):
        r = await tl.client.post(
            f"/api/v1/decisions/{d.id}/ack",
            json={"outcome": "done", "detail": "restarted: run 2"},
            headers=auth(tl.tokens["agent"]),
        )
        assert r.status_code == 200 and r.json()["status"] == "done", r.text
    [d] = await tl.decisions()
    assert [s["op"] for s in d.outcome["steps"]] == ["in_place", "ack"]
    assert await tl.requeues() == 0  # the allocation is kept

    # The stop: the ranks are down a while (the watchdog sees them stalled), then train again.
    await tl.down_then_back()
    [incident] = await tl.incidents()  # the stop joined it: no unexpected interruption
    assert (incident.category, incident.state) == ("planned", "resolved")
    assert len(await tl.decisions()) == 1
    assert (await _advice(tl))["restart_decision"] is None


async def test_the_stop_before_the_acknowledgment_joins_the_planned_incident(
    tl: Timeline,
) -> None:
    _in_place_on(tl)
    await _ask(tl)
    await tl.loops()
    # The old ranks are gone before the launcher's ack arrives: seen stalled, still planned.
    for _ in range(3):
        tl.clock.advance(10)
        await tl.alive()
    await tl.watchdog()
    await tl.loops()
    [incident] = await tl.incidents()
    assert (incident.category, incident.state) == ("planned", "mitigating")
    stalled = [e.text for e in verdict_of(incident).symptoms]
    assert any("made no progress" in text for text in stalled), stalled
    [d] = await tl.decisions()
    assert d.status == "awaiting_ack"
    assert "the job's ranks stopped before a checkpoint (nothing left to save)" in d.reason


async def test_no_checkpoint_in_time_restarts_anyway_saying_what_is_lost(tl: Timeline) -> None:
    _in_place_on(tl)
    await _ask(tl)
    wait_s = tl.ctx.settings.remediation.planned_checkpoint_wait_s
    for _ in range(int(wait_s // 60) - 1):
        tl.clock.advance(60)
        await tl.beats()  # the job trains on, its checkpoint still step 100
        await tl.loops()
    [d] = await tl.decisions()
    assert d.status == "held", d.reason
    tl.clock.advance(60)
    await tl.beats()
    await tl.loops()
    [d] = await tl.decisions()
    assert d.status == "awaiting_ack"
    lost = tl.step - 100
    assert (d.checkpoint_step, d.steps_lost) == (100, lost)
    assert (
        f"no durable checkpoint came in {wait_s:g} s: restart now from checkpoint step 100, "
        f"losing the {lost} steps since"
    ) in d.reason
    [incident] = await tl.incidents()
    assert incident.category == "planned"


async def test_no_acknowledgment_in_time_requeues_the_job(tl: Timeline) -> None:
    _in_place_on(tl)
    asked = await _ask(tl, code_version="v2.1", at_checkpoint=False)
    assert asked["status"] == "approved" and asked["checkpoint_step"] == 100
    assert "held" not in asked["reason"] and asked["reason"].endswith("from checkpoint step 100")
    await tl.loops()
    tl.clock.advance(tl.ctx.settings.remediation.in_place_ack_s + 1)
    await tl.loops()
    [d] = await tl.decisions()
    assert (d.action, d.status, d.rule) == ("restart", "done", "OperatorRestartInPlace")
    assert "no launcher acknowledged" in d.reason and WHY in d.reason
    assert await tl.requeues() == 1
    # The requeued job's script still finds the version the operator asked for.
    advice = await _advice(tl)
    assert (advice["restart_decision"], advice["code_version"]) == (None, "v2.1")


async def test_a_gpu_lost_during_the_planned_restart_opens_its_own_incident(
    tl: Timeline,
) -> None:
    _in_place_on(tl)
    tl.clock.advance(60)
    await tl.beats()
    planned = await _ask(tl)
    await tl.loops()
    # The ranks are stopped for the restart, and a GPU of node3 falls off the bus meanwhile:
    # the announcement names every host of the job, but a restart explains no hardware fault.
    tl.clock.advance(20)
    await tl.alive()
    await tl.post("node3", [xid(79, gpu=2, when=tl.clock.now(), message="GPU has fallen off")])
    await tl.loops()
    incidents = {i.category: i for i in await tl.incidents()}
    assert sorted(incidents) == ["faulty_gpu", "planned"]
    fault = incidents["faulty_gpu"]
    assert (fault.culprit_host, fault.rule) == ("node3", "BlameHardGpuXidOverPeerTimeouts")
    assert str(incidents["planned"].id) == planned["incident_id"]
    assert all(e.xid is None for e in verdict_of(incidents["planned"]).symptoms)
    [restart, exclusion] = await tl.decisions()
    assert restart.rule == "OperatorRestartInPlace"
    assert (exclusion.incident_id, exclusion.action, exclusion.exclude_hosts) == (
        fault.id,
        "exclude_and_restart",
        ["node3"],
    )


async def test_a_held_restart_overtaken_by_another_decisions_restart_is_not_carried_out(
    tl: Timeline,
) -> None:
    _in_place_on(tl)
    tl.clock.advance(60)
    await tl.beats()
    await _ask(tl)  # held for the next checkpoint
    await tl.loops()
    # Before the checkpoint, a GPU of node3 falls off the bus: its own incident's exclusion
    # restarts the job, which starts the ranks again as the planned restart would.
    tl.clock.advance(20)
    await tl.post("node3", [xid(79, gpu=2, when=tl.clock.now(), message="GPU has fallen off")])
    await tl.loops()
    for _ in range(3):
        tl.clock.advance(10)
        await tl.loops()
    [planned, exclusion] = await tl.decisions()
    assert (exclusion.action, exclusion.exclude_hosts) == ("exclude_and_restart", ["node3"])
    assert exclusion.status in ("awaiting_ack", "done"), exclusion.reason
    assert planned.status == "noop", planned.reason
    assert (
        f"not carried out: decision {str(exclusion.id)[:8]} (ExcludeHostOnHardwareFault, "
        "exclude_and_restart) restarts the job meanwhile"
    ) in planned.reason
    # One restart of the job, the exclusion's: the planned one is never published.
    advice = await _advice(tl)
    assert advice["restart_decision"] in (None, str(exclusion.id))
    assert advice["checkpoint_now"] is False


async def test_a_held_version_change_overtaken_by_another_restart_still_waits_for_its_own(
    tl: Timeline,
) -> None:
    _in_place_on(tl)
    tl.clock.advance(60)
    await tl.beats()
    await _ask(tl, code_version="v2.1")
    await tl.loops()
    tl.clock.advance(20)
    await tl.post("node3", [xid(79, gpu=2, when=tl.clock.now(), message="GPU has fallen off")])
    for _ in range(4):
        tl.clock.advance(10)
        await tl.alive()
        await tl.watchdog()
        await tl.loops()
    # The stop the exclusion's restart causes does not release it: the version change needs a
    # restart of its own, at the checkpoint after that one.
    [planned, exclusion] = await tl.decisions()
    assert exclusion.action == "exclude_and_restart"
    assert planned.status == "held", planned.reason


def test_planned_restarts_do_not_count_towards_the_jobs_restart_cap() -> None:
    now = datetime.now(UTC)
    settings = RemediationSettings(in_place=True)
    planned = [
        PastDecision("planned", "restart_in_place", "done", now, None)
        for _ in range(settings.max_restarts)
    ]
    hang = RemediationContext(
        category=Category.NCCL_WATCHDOG_TIMEOUT,
        culprit_host=None,
        culprit_gpu=None,
        confidence=0.6,
        xids=(),
        signature=None,
        job_id="job-1",
        job_hosts=4,
        checkpoint_step=100,
        current_step=120,
        past=tuple(planned),
        drains_last_hour=0,
        spare_hosts=2,
        settings=settings,
    )
    assert CapRestartsPerJob().propose(hang) is None
    assert DEFAULT_POLICY.decide(hang).action == Action.restart_in_place
    unplanned = [replace(p, incident_category="software_bug") for p in planned]
    capped = DEFAULT_POLICY.decide(replace(hang, past=tuple(unplanned)))
    assert (capped.action, capped.rule) == (Action.escalate, "CapRestartsPerJob")
