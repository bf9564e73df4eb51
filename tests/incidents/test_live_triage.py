"""Live triage as timelines: incremental passes, one incident per fault, its own opening time,
and every hard fault accounted for (linked to an incident or dismissed with a reason)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from builders import at, gpu_sample, xid
from conftest import auth
from incidents.timeline import HOSTS, WATCHDOG, Timeline, log

import sentinel.incidents.worker as worker_module
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Incident
from sentinel.incidents.verdicts import verdict_of
from sentinel.incidents.worker import TriageWorker

LUSTRE = (
    "LustreError: 11-0: scratch-OST0001-osc-ffff8803bd1d9800: operation ost_write to node "
    "10.0.0.1@o2ib failed: rc = -107"
)
NVME = "nvme nvme0: controller is down; will reset: CSTS=0xffffffff, PCI_STATUS=0xffff"


async def test_each_incident_opens_at_its_own_earliest_evidence(timeline: Timeline) -> None:
    await timeline.at(5)
    await timeline.post("h002", [xid(79, gpu=2, when=at(5))])
    await timeline.triage()
    await timeline.at(65)
    await timeline.post("h006", [xid(48, gpu=1, when=at(64))])
    await timeline.triage()
    first, second = await timeline.incidents()
    assert (first.category, first.culprit_host, first.opened_at) == ("faulty_gpu", "h002", at(5))
    assert (second.category, second.culprit_host) == ("gpu_hbm_memory", "h006")
    assert second.opened_at == at(64), "not the first incident's opening time"


async def test_a_late_cause_refines_the_provisional_incident_and_keeps_its_opening(
    timeline: Timeline,
) -> None:
    await timeline.at(600)
    for n, host in enumerate(HOSTS):
        if host != "h004":
            message = WATCHDOG.format(rank=n * 8)
            await timeline.post(host, [log(message, at(600), source="application", rank=n * 8)])
    await timeline.triage()
    [provisional] = await timeline.incidents()
    assert provisional.category == "nccl_watchdog_timeout"
    # The XID happened first, at t=2; its host's agent delivers it ten minutes late.
    await timeline.at(610)
    await timeline.post("h004", [xid(79, gpu=3, when=at(2))])
    await timeline.triage(passes=3)
    [incident] = await timeline.incidents()
    assert incident.id == provisional.id
    assert (incident.category, incident.culprit_host) == ("faulty_gpu", "h004")
    assert incident.opened_at == provisional.opened_at == at(600)


async def test_a_fleet_wide_outage_is_one_incident_beside_a_local_disk_fault(
    timeline: Timeline,
) -> None:
    for t in range(10, 310, 10):  # thirty evaluations of an outage that goes on
        await timeline.at(t)
        for host in HOSTS:
            await timeline.post(host, [log(LUSTRE, at(t))])
        if t == 100:
            await timeline.post("h003", [log(NVME, at(t))])
        await timeline.triage()
    found = sorted((i.category, i.culprit_host or "-") for i in await timeline.incidents())
    assert found == [("dependency", "-"), ("ssd", "h003")]


async def test_every_hard_fault_is_linked_to_its_incident(timeline: Timeline) -> None:
    await timeline.at(5)
    hard = xid(79, gpu=2, when=at(5))
    await timeline.post("h002", [hard])
    await timeline.at(35)
    # The peers' timeouts are symptoms of it.
    for n, host in enumerate(HOSTS[2:], start=2):
        await timeline.post(host, [log(WATCHDOG.format(rank=n * 8), at(35), source="application")])
    await timeline.triage(passes=2)
    [incident] = await timeline.incidents()
    linked = (await timeline.dispositions())[hard["id"]]
    assert (linked.role, linked.incident_id) == ("cause", incident.id)
    await timeline.at(600)
    r = await timeline.client.get("/api/v1/events/unaccounted", headers=auth(timeline.viewer))
    assert r.status_code == 200 and r.json() == []


async def test_a_hard_fault_that_triage_never_answered_is_listed(timeline: Timeline) -> None:
    await timeline.at(5)
    hard = xid(79, gpu=2, when=at(5))
    await timeline.post("h002", [hard])
    # Triage weighs it (pending) but the pass dies before the incident is written.
    worker: TriageWorker = timeline.ctx.triage_worker
    evaluate = timeline.ctx.triage.evaluate

    async def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("leader died mid-pass")

    timeline.ctx.triage.evaluate = crash
    with pytest.raises(RuntimeError):
        await worker.run_once()
    timeline.ctx.triage.evaluate = evaluate
    async with unit_of_work(timeline.ctx.sessions) as s:
        await worker.accountant.note(
            s,
            [
                s2
                for s2 in worker_module.event_signals(
                    await s.get(worker_module.Event, uuid.UUID(hard["id"]))  # type: ignore[arg-type]
                )
            ],
            timeline.clock.now(),
        )
    await timeline.at(120)
    r = await timeline.client.get("/api/v1/events/unaccounted", headers=auth(timeline.viewer))
    assert [e["event_id"] for e in r.json()] == [hard["id"]]
    metrics = (await timeline.client.get("/metrics")).text
    assert "sentinel_unaccounted_hard_faults 1.0" in metrics


async def test_a_pass_weighs_only_what_arrived_and_a_new_leader_rebuilds_the_scope(
    timeline: Timeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    original = worker_module.event_signals

    def counting(ev: Any) -> Any:
        parsed.append(str(ev.id))
        return original(ev)

    monkeypatch.setattr(worker_module, "event_signals", counting)
    await timeline.at(5)
    for n, host in enumerate(HOSTS):
        await timeline.post(host, [log(WATCHDOG.format(rank=n * 8), at(5), source="application")])
    await timeline.triage()
    assert len(parsed) == len(HOSTS)
    parsed.clear()
    await timeline.at(20)
    late = xid(79, gpu=3, when=at(1))
    await timeline.post("h004", [late])
    await timeline.triage()
    assert parsed == [late["id"]], "a pass parses what arrived since the last one, once"
    [incident] = await timeline.incidents()
    # Failover: a fresh worker (a new leader) rebuilds the job's signals from the database.
    ctx = timeline.ctx
    fresh = TriageWorker(ctx.sessions, ctx.clock, ctx.triage, ctx.settings.triage)
    ctx.triage_worker = fresh
    parsed.clear()
    await timeline.at(30)
    await timeline.post("h005", [log(WATCHDOG.format(rank=33), at(30), source="application")])
    await timeline.triage()
    assert len(parsed) == len(HOSTS) + 2  # rebuilt once: the window's events and the new one
    [same] = await timeline.incidents()
    assert same.id == incident.id and same.culprit_host == "h004"


async def test_the_triage_lag_counts_what_waits_and_drops_once_weighed(
    timeline: Timeline,
) -> None:
    worker: TriageWorker = timeline.ctx.triage_worker
    await timeline.at(5)
    await timeline.post("h002", [xid(79, gpu=2, when=at(5))])
    await timeline.at(8)
    assert worker.waiting == 1 and worker.lag_seconds() == pytest.approx(3.0)
    metrics = (await timeline.client.get("/metrics")).text
    assert "sentinel_triage_lag_seconds 3.0" in metrics
    await timeline.triage()
    assert worker.waiting == 0 and worker.lag_seconds() == 0.0


TRACEBACK = (
    "[rank{rank}]: Traceback (most recent call last):\n"
    '[rank{rank}]:   File "/workspace/llama/train.py", line 412, in <module>\n'
    "[rank{rank}]:     main()\n"
    "[rank{rank}]: RuntimeError: The size of tensor a (8192) must match the size of tensor b "
    "(4096) at non-singleton dimension 3"
)


async def test_a_fault_after_an_incident_opened_is_a_new_incident_not_a_refinement(
    timeline: Timeline,
) -> None:
    await timeline.at(5)
    for n, host in enumerate(HOSTS):
        message = TRACEBACK.format(rank=n * 8)
        await timeline.post(host, [log(message, at(5), source="application", rank=n * 8)])
    await timeline.triage()
    [bug] = await timeline.incidents()
    assert bug.category == "software_bug"
    await timeline.at(40)
    await timeline.post("h003", [xid(48, gpu=1, when=at(40))])
    await timeline.triage(passes=2)
    found = sorted(
        (i.category, i.culprit_host or "-", i.opened_at) for i in await timeline.incidents()
    )
    assert found == [("gpu_hbm_memory", "h003", at(40)), ("software_bug", "-", at(5))]


async def test_a_nan_loss_on_every_rank_and_the_hang_it_causes_are_silent_data_corruption(
    timeline: Timeline,
) -> None:
    """What the demo's silent-data-corruption fault writes: the loss goes NaN on every rank
    (a warning each), then the job stops; no hardware fault anywhere."""
    await timeline.at(5)
    for n, host in enumerate(HOSTS):
        line = f"[rank{n * 8}]: WARNING: loss is NaN at step 48211, skipping update"
        await timeline.post(
            host, [log(line, at(5), source="application", severity="warning", rank=n * 8)]
        )
    for t in (15, 25, 35):  # the agents still report their GPUs; the ranks beat no more
        await timeline.at(t)
        for host in HOSTS:
            await timeline.post(host, [gpu_sample(0, at(t))])
        async with unit_of_work(timeline.ctx.sessions) as s:
            await timeline.ctx.watchdog.run_once(s)
        await timeline.triage()
    [incident] = await timeline.incidents()
    assert incident.category == "silent_data_corruption"


@pytest.mark.parametrize("failover", [False, True], ids=["kept", "rebuilt"])
async def test_an_older_incident_resolving_does_not_orphan_an_open_incidents_evidence(
    timeline: Timeline, failover: bool
) -> None:
    """The soak's one extra incident: a job's older incident resolved (its restarted ranks'
    beats arrived late) after the job's next fault had opened; the hang that fault caused then
    found the XID cut off by the resolution and opened a second, causeless incident."""
    await timeline.at(5)
    await timeline.post("h002", [xid(79, gpu=2, when=at(5))])
    await timeline.triage()
    await timeline.at(60)
    await timeline.post("h006", [xid(48, gpu=1, when=at(60))])
    await timeline.triage()
    older, newer = await timeline.incidents()
    await timeline.at(70)
    async with unit_of_work(timeline.ctx.sessions) as s:
        stored = await s.get(Incident, older.id)
        assert stored is not None
        await timeline.ctx.triage.transition(s, stored, "resolved", "job advanced again", "t")
    if failover:  # a new leader rebuilds the job's signals from the database
        ctx = timeline.ctx
        ctx.triage_worker = TriageWorker(ctx.sessions, ctx.clock, ctx.triage, ctx.settings.triage)
    # The job has stopped since the XID 48: its ranks beat no more, its hosts still report.
    for t in (75, 85, 95):
        await timeline.at(t)
        for host in HOSTS:
            await timeline.post(host, [gpu_sample(0, at(t))])
        async with unit_of_work(timeline.ctx.sessions) as s:
            await timeline.ctx.watchdog.run_once(s)
        await timeline.triage()
    found = sorted((i.category, i.culprit_host or "-", i.state) for i in await timeline.incidents())
    assert found == [("faulty_gpu", "h002", "resolved"), ("gpu_hbm_memory", "h006", "open")]
    assert newer.id in {i.id for i in await timeline.incidents()}


async def test_a_line_no_pattern_knows_is_shown_with_the_hang_but_opens_nothing_alone(
    timeline: Timeline,
) -> None:
    """The agent ships err-level lines no pattern knows (issue 13): alone they are context,
    not an incident; when the job then hangs, the hang's incident shows what was seen."""
    odd = "<3>[ 5012.100] frobnicator 0000:12:00.0: firmware assert 0x1f at fw_main.c:88"
    await timeline.at(5)
    await timeline.post(
        "h003", [log(odd, at(5), pattern=None, family="unmatched", severity="critical")]
    )
    await timeline.triage()
    assert await timeline.incidents() == []
    for t in (15, 25, 35):  # the job stops: its hosts still report, its ranks beat no more
        await timeline.at(t)
        for host in HOSTS:
            await timeline.post(host, [gpu_sample(0, at(t))])
        async with unit_of_work(timeline.ctx.sessions) as s:
            await timeline.ctx.watchdog.run_once(s)
        await timeline.triage()
    [incident] = await timeline.incidents()
    shown = verdict_of(incident)
    texts = [e.text for e in [*shown.evidence, *shown.symptoms]]
    assert odd in texts, texts
    r = await timeline.client.get(
        "/api/v1/events/unaccounted", params={"older_than_s": 0}, headers=auth(timeline.viewer)
    )
    assert r.json() == [], "a line nobody understands is not a hard fault owed an answer"


async def test_a_hard_fault_received_just_before_an_older_incident_resolved_still_counts(
    timeline: Timeline,
) -> None:
    """The soak's missed XID 95: it arrived 74 ms before the job's older incident was resolved
    (its restarted ranks advanced) and was weighed just after; the horizon took it for the
    resolved incident's leftovers and it stayed pending, owed an answer, for good."""
    await timeline.at(5)
    await timeline.post("h002", [xid(79, gpu=2, when=at(5))])
    await timeline.triage()
    [older] = await timeline.incidents()
    await timeline.at(60)
    await timeline.post("h006", [xid(95, gpu=1, when=at(60))])
    await timeline.at(61)
    async with unit_of_work(timeline.ctx.sessions) as s:
        stored = await s.get(Incident, older.id)
        assert stored is not None
        await timeline.ctx.triage.transition(s, stored, "resolved", "job advanced again", "t")
    await timeline.at(62)
    await timeline.triage()
    found = sorted((i.category, i.culprit_host, i.state) for i in await timeline.incidents())
    assert found == [("faulty_gpu", "h002", "resolved"), ("gpu_sram_memory", "h006", "open")]
    r = await timeline.client.get(
        "/api/v1/events/unaccounted", params={"older_than_s": 0}, headers=auth(timeline.viewer)
    )
    assert r.json() == []
