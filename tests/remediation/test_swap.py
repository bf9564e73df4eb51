"""Proactive swap through the app on the virtual clock: a degraded finding, a swap decided at
once, the job told to checkpoint, and the swap carried out at the next durable checkpoint onto
the hot spare the reservation held (the fake scheduler keeps reserved nodes out of the queue as
Slurm does)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from builders import gpu_sample, heartbeat, obs, xid
from conftest import auth
from sqlalchemy import select

from remediation.timeline import HOSTS, Timeline
from sentinel.db.engine import unit_of_work
from sentinel.db.models import AuditEntry, DegradedFinding, Host, Maintenance, Spare, Swap
from sentinel.remediation.settings import RemediationSettings, SwapSettings
from sentinel.remediation.swap import SwapService
from sentinel.web.routes import TOKEN_COOKIE


def use_swaps(tl: Timeline, **kw: Any) -> SwapService:
    settings = RemediationSettings(swap=SwapSettings(**{"spares": ["node5"], "pool_size": 1, **kw}))
    service = SwapService(tl.clock, settings, tl.fake)
    tl.ctx.remediation.swaps = service
    return service


async def beats(tl: Timeline, checkpoint: int) -> None:
    tl.step += 5
    for h, host in enumerate(HOSTS[:4]):
        await tl.post(
            host,
            [
                heartbeat(
                    rank=h * 8 + g,
                    step=tl.step,
                    when=tl.clock.now(),
                    gpu_index=g,
                    checkpoint_step=checkpoint,
                    world_size=32,
                )
                for g in range(8)
            ],
        )


async def spare_reports(tl: Timeline) -> None:
    await tl.post("node5", [obs("agent_status", tl.clock.now(), version="test")])


def remap_pending(tl: Timeline) -> dict[str, Any]:
    return obs("ecc", tl.clock.now(), gpu_index=2, counter="remap_pending", previous=0, current=1)


async def advice(tl: Timeline) -> dict[str, Any]:
    r = await tl.client.get("/api/v1/jobs/job-1/advice", headers=auth(tl.tokens["viewer"]))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def page(tl: Timeline, path: str) -> str:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=tl.client.app),  # type: ignore[attr-defined]
        base_url="http://sentinel",
        cookies={TOKEN_COOKIE: tl.tokens["viewer"]},
    ) as client:
        r = await client.get(path)
    assert r.status_code == 200, r.text
    return r.text


async def swaps(tl: Timeline) -> list[Swap]:
    async with unit_of_work(tl.ctx.sessions) as s:
        return list((await s.scalars(select(Swap))).all())


async def test_a_degraded_host_is_swapped_onto_the_spare_at_the_next_durable_checkpoint(
    tl: Timeline,
) -> None:
    use_swaps(tl)
    await spare_reports(tl)
    await tl.loops()
    assert tl.fake.reservations == {"sentinel-spares": ("node5",)}
    assert (await advice(tl))["checkpoint_now"] is False

    tl.clock.advance(10)
    await tl.post("node2", [remap_pending(tl)])
    await tl.loops()
    async with unit_of_work(tl.ctx.sessions) as s:
        [finding] = (await s.scalars(select(DegradedFinding))).all()
        assert (finding.host_id, finding.indicator, finding.state) == (
            "node2",
            "remap_pending:2",
            "open",
        )
        assert "remap_pending 0 -> 1" in finding.evidence[0]["line"]
    [swap] = await swaps(tl)
    assert (swap.status, swap.rule, swap.job_id) == ("waiting", "SwapAtNextCheckpoint", "job-1")
    assert (swap.decided_step, swap.checkpoint_step) == (105, 100)
    told = await advice(tl)
    assert told["checkpoint_now"] is True and told["swap"]["host"] == "node2"
    assert "next durable checkpoint" in told["reason"]
    assert "<b>checkpoint now</b>" in await page(tl, "/jobs")
    # Nothing happens to the job until its checkpoint: no incident, no requeue.
    assert await tl.requeues() == 0 and await tl.incidents() == []

    # Some ranks saved step 110, not all: not durable yet.
    tl.clock.advance(10)
    await beats(tl, checkpoint=100)
    await tl.post(
        "node1", [heartbeat(rank=0, step=tl.step, when=tl.clock.now(), checkpoint_step=110)]
    )
    await tl.loops()
    assert [s.status for s in await swaps(tl)] == ["waiting"]

    tl.clock.advance(10)
    await beats(tl, checkpoint=115)
    await tl.loops()
    [swap] = await swaps(tl)
    assert swap.status == "done", swap.error
    assert swap.spare_host == "node5" and swap.outcome["durable_checkpoint"] == 115
    assert [s["op"] for s in swap.outcome["steps"]] == ["drain", "reserve", "requeue"]
    assert swap.outcome["planned"] is True
    # The job keeps its size, on the spare instead of the degraded host.
    assert sorted(await tl.job_nodes()) == ["node1", "node3", "node4", "node5"]
    assert await tl.requeues() == 1 and await tl.drained("node2")
    assert tl.fake.reservations == {}
    async with unit_of_work(tl.ctx.sessions) as s:
        host = await s.get(Host, "node2")
        assert host is not None and host.drain_state == "drained"
        spare = await s.get(Spare, "node5")
        assert spare is not None and (spare.state, spare.job_id) == ("used", "job-1")
        [finding] = (await s.scalars(select(DegradedFinding))).all()
        assert finding.state == "resolved" and finding.open_key is None
        [m] = (await s.scalars(select(Maintenance))).all()
        assert m.job_id == "job-1" and "planned swap of node2" in m.reason
        drains = (
            await s.scalars(select(AuditEntry).where(AuditEntry.action == "host.drain"))
        ).all()
        assert [d.detail["planned"] for d in drains] == [True]
    assert (await advice(tl))["checkpoint_now"] is False
    await shown_in_the_api(tl)

    # Later passes decide nothing again and open nothing again from the same evidence.
    await tl.loops()
    await tl.loops()
    assert len(await swaps(tl)) == 1 and await tl.requeues() == 1

    # node2 is repaired by a human, its ranks long gone, its agent reporting: it replaces the
    # spare the swap used.
    r = await tl.client.post(
        "/api/v1/hosts/node2/repaired",
        json={"comment": "GPU 2 reset, remap done"},
        headers=auth(tl.tokens["operator"]),
    )
    assert r.status_code == 200, r.text
    tl.clock.advance(400)
    await tl.post("node2", [obs("agent_status", tl.clock.now(), version="test")])
    await tl.loops()
    assert tl.fake.reservations == {"sentinel-spares": ("node2",)}
    async with unit_of_work(tl.ctx.sessions) as s:
        spare = await s.get(Spare, "node2")
        assert spare is not None and spare.state == "ready"


async def test_no_spare_refuses_the_swap_with_its_reason(tl: Timeline) -> None:
    use_swaps(tl, pool_size=0)
    tl.clock.advance(10)
    await tl.post("node2", [remap_pending(tl)])
    await tl.loops()
    [swap] = await swaps(tl)
    assert (swap.status, swap.rule) == ("refused", "NeverMoreThanThePoolHolds")
    assert (await advice(tl))["checkpoint_now"] is False
    await beats(tl, checkpoint=200)
    await tl.loops()
    assert await tl.requeues() == 0 and not await tl.drained("node2")


async def test_a_swap_refused_for_want_of_a_spare_is_retried_once_one_is_ready(
    tl: Timeline,
) -> None:
    """node5's agent has not reported: the pool holds nothing, so node2's swap is refused;
    once node5 is a ready spare the same decision is taken again, and node2 is swapped at the
    job's next durable checkpoint. A cap's refusal stands (test_swap_rules)."""
    use_swaps(tl)
    await tl.loops()
    tl.clock.advance(10)
    await tl.post("node2", [remap_pending(tl)])
    await tl.loops()
    [swap] = await swaps(tl)
    assert (swap.status, swap.rule) == ("refused", "NeverMoreThanThePoolHolds")
    await tl.loops()
    assert [(s.status, s.rule) for s in await swaps(tl)] == [
        ("refused", "NeverMoreThanThePoolHolds")
    ]

    await spare_reports(tl)
    await tl.loops()
    [retried] = await swaps(tl)
    assert retried.id == swap.id
    assert (retried.status, retried.rule) == ("waiting", "SwapAtNextCheckpoint")
    assert "retried: refused before for want of a spare" in retried.reason
    assert (await advice(tl))["checkpoint_now"] is True

    tl.clock.advance(10)
    await beats(tl, checkpoint=115)
    await tl.loops()
    [done] = await swaps(tl)
    assert done.status == "done" and done.spare_host == "node5", done.error
    assert sorted(await tl.job_nodes()) == ["node1", "node3", "node4", "node5"]
    assert await tl.requeues() == 1


async def test_an_unhealthy_spare_is_not_held(tl: Timeline) -> None:
    use_swaps(tl)
    await tl.loops()  # node5's agent never reported
    assert tl.fake.reservations == {}
    await spare_reports(tl)
    await tl.loops()
    assert tl.fake.reservations == {"sentinel-spares": ("node5",)}
    # Its agent then reports a GPU lost: it leaves the pool, and the reservation.
    await tl.post("node5", [gpu_sample(3, tl.clock.now(), lost=True)])
    await tl.loops()
    assert tl.fake.reservations == {}
    r = await tl.client.get("/api/v1/spares", headers=auth(tl.tokens["viewer"]))
    assert r.json()["ready"] == [] and r.json()["unhealthy"] == ["node5"]


async def test_advice_cadence_needs_the_launchers_times_and_a_measured_mttf(tl: Timeline) -> None:
    body = await advice(tl)
    assert body["cadence"] is None and "save_s" in body["cadence_why"]
    r = await tl.client.get(
        "/api/v1/jobs/job-1/advice?save_s=30&restart_s=300",
        headers=auth(tl.tokens["viewer"]),
    )
    assert r.json()["cadence"] is None and "MTTF" in r.json()["cadence_why"]
    r = await tl.client.get(
        "/api/v1/jobs/job-1/advice?save_s=-1", headers=auth(tl.tokens["viewer"])
    )
    assert r.status_code == 422
    r = await tl.client.get("/api/v1/jobs/nope/advice", headers=auth(tl.tokens["viewer"]))
    assert r.status_code == 404
    # Agents ask too (to pass the advice on in their heartbeat replies); they read no more.
    r = await tl.client.get("/api/v1/jobs/job-1/advice", headers=auth(tl.tokens["agent"]))
    assert r.status_code == 200 and r.json()["checkpoint_now"] is False
    r = await tl.client.get("/api/v1/jobs/job-1", headers=auth(tl.tokens["agent"]))
    assert r.status_code == 403


async def test_advice_cadence_from_the_jobs_measured_mttf_and_the_launchers_times(
    tl: Timeline,
) -> None:
    await tl.beats()
    tl.clock.advance(3600)
    await tl.post("node2", [xid(79, gpu=2, when=tl.clock.now(), message="Xid 79")])
    await tl.loops()
    assert len(await tl.incidents()) == 1

    async def cadence(query: str) -> dict[str, Any]:
        r = await tl.client.get(
            f"/api/v1/jobs/job-1/advice?{query}", headers=auth(tl.tokens["viewer"])
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()["cadence"]
        return body

    daly = await cadence("save_s=1&restart_s=300&interval_s=600")
    # One interruption in the job's first hour or so: Daly's interval for that MTTF.
    assert 3600 <= daly["mttf_s"] < 3700
    assert daly["interval_s"] < 600 and daly["expected_ettr"] > daly["current_ettr"]
    assert daly["write_bound"] is False and "Daly" in daly["reason"]
    # Storage that drains one checkpoint in 300 s: never advise a shorter interval.
    slow = await cadence("save_s=1&restart_s=300&write_s=300")
    assert slow["interval_s"] == 300 and slow["write_bound"] is True
    assert "background write" in slow["reason"]
    r = await tl.client.get(
        "/api/v1/jobs/job-1/advice?save_s=1&restart_s=300&write_s=0",
        headers=auth(tl.tokens["viewer"]),
    )
    assert r.status_code == 422 and "write_s" in r.text


async def shown_in_the_api(tl: Timeline) -> None:
    viewer = auth(tl.tokens["viewer"])
    r = await tl.client.get("/api/v1/findings?host_id=node2", headers=viewer)
    [finding] = r.json()
    assert (finding["indicator"], finding["rule"], finding["state"]) == (
        "remap_pending:2",
        "RowRemapPending",
        "resolved",
    )
    r = await tl.client.get("/api/v1/swaps?job_id=job-1", headers=viewer)
    [swap] = r.json()
    assert (swap["host"], swap["spare_host"], swap["status"], swap["planned"]) == (
        "node2",
        "node5",
        "done",
        True,
    )
    r = await tl.client.get("/api/v1/spares", headers=viewer)
    body = r.json()
    advice = body.pop("advice")
    assert body == {
        "reservation": "sentinel-spares",
        "target": 1,
        "ready": [],
        "used": ["node5"],
        "unhealthy": [],
    }
    # The swap drained one host in the 14-day window, none back yet: the configured 48 h.
    assert advice["rule"] == "CoverHostsOutAtQuantile"
    assert advice["drains_per_day"] == pytest.approx(1 / 14)
    assert (advice["repair_s"], advice["repair_measured"]) == (172800.0, False)
    assert advice["recommended"] == 1  # Poisson(1/7): P(N <= 1) = 0.991
    assert "1 hosts drained in 14 days" in advice["reason"]
    r = await tl.client.get("/api/v1/findings?state=bogus", headers=viewer)
    assert r.status_code == 422
    host = await page(tl, "/hosts/node2")
    assert "Degraded findings" in host and "RowRemapPending" in host
    assert "SwapAtNextCheckpoint" in host and "node5" in host
    jobs = await page(tl, "/jobs")
    assert "Hot spares" in jobs and "1 given to jobs" in jobs
    assert "Recommended size: <b>1</b>" in jobs and "CoverHostsOutAtQuantile" in jobs
    text = (await tl.client.get("/metrics")).text
    assert "sentinel_spare_pool_recommended 1.0" in text
    assert "sentinel_spare_pool_repair_seconds 172800.0" in text
    assert "sentinel_spare_pool_drains_per_day 0.0714" in text
    assert 'sentinel_spares{state="used"} 1.0' in text
    assert 'sentinel_spares{state="ready"} 0.0' in text
    assert 'sentinel_swaps{status="done"} 1.0' in text


async def test_an_exclusion_takes_the_spare_at_once(tl: Timeline) -> None:
    """XID 79 (an incident, not a degraded finding): the host is excluded, and the job starts
    again on the spare the reservation held, not on whatever else is free (node6)."""
    use_swaps(tl)
    await spare_reports(tl)
    await tl.loops()
    assert tl.fake.reservations == {"sentinel-spares": ("node5",)}
    tl.clock.advance(10)
    await tl.post(
        "node3",
        [
            xid(
                79,
                gpu=2,
                when=tl.clock.now(),
                message="NVRM: Xid (PCI:0000:5d:00): 79, pid=1, name=python, "
                "GPU has fallen off the bus.",
            )
        ],
    )
    await tl.loops()
    [d] = await tl.decisions()
    assert (d.action, d.status) == ("exclude_and_restart", "done")
    assert [s["op"] for s in d.outcome["steps"]] == ["drain", "reserve", "requeue", "reboot"]
    assert sorted(await tl.job_nodes()) == ["node1", "node2", "node4", "node5"]
    assert tl.fake.reservations == {}
    async with unit_of_work(tl.ctx.sessions) as s:
        spare = await s.get(Spare, "node5")
        assert spare is not None and (spare.state, spare.job_id) == ("used", "job-1")


async def test_a_degraded_host_in_no_job_waits_for_one(tl: Timeline) -> None:
    """node6 runs nothing: its finding stays open with no decision (and it is no spare)."""
    use_swaps(tl, spares=["node6"])
    await tl.post("node6", [obs("agent_status", tl.clock.now(), version="test")])
    tl.clock.advance(10)
    await tl.post("node6", [remap_pending(tl)])
    await tl.loops()
    await tl.loops()
    assert await swaps(tl) == []
    assert tl.fake.reservations == {}  # degraded: not fit to be a spare
    async with unit_of_work(tl.ctx.sessions) as s:
        [finding] = (await s.scalars(select(DegradedFinding))).all()
        assert (finding.host_id, finding.state) == ("node6", "open")


async def test_a_waiting_swap_is_cancelled_when_its_host_leaves_first(tl: Timeline) -> None:
    """The degraded GPU fails outright before the checkpoint: the incident's exclusion takes
    the host out (and the spare); the swap must not interrupt the job a second time."""
    use_swaps(tl)
    await spare_reports(tl)
    await tl.loops()
    tl.clock.advance(10)
    await tl.post("node2", [remap_pending(tl)])
    await tl.loops()
    assert [s.status for s in await swaps(tl)] == ["waiting"]
    tl.clock.advance(10)
    await tl.post("node2", [xid(79, gpu=2, when=tl.clock.now(), message="Xid 79")])
    await tl.loops()
    await beats(tl, checkpoint=200)
    await tl.loops()
    [swap] = await swaps(tl)
    assert swap.status == "cancelled" and "already" in swap.reason
    assert await tl.requeues() == 1  # the exclusion's, not a second one
    assert (await advice(tl))["checkpoint_now"] is False


async def test_the_stop_the_swap_causes_is_planned_not_a_failure(tl: Timeline) -> None:
    """After the swap the ranks stop while the job is requeued: the watchdog sees the stall,
    and triage reads it as the planned work announced for the host that left."""
    use_swaps(tl)
    await spare_reports(tl)
    await tl.loops()
    tl.clock.advance(10)
    await tl.post("node2", [remap_pending(tl)])
    await tl.loops()
    tl.clock.advance(10)
    await beats(tl, checkpoint=115)
    await tl.loops()
    assert [s.status for s in await swaps(tl)] == ["done"]
    # The job is down a while; the hosts' agents keep reporting.
    for _ in range(3):
        tl.clock.advance(10)
        for host in ("node1", "node3", "node4", "node5"):
            await tl.post(host, [gpu_sample(0, tl.clock.now())])
    await tl.watchdog()
    await tl.loops()
    incidents = await tl.incidents()
    assert incidents, "the stall was not seen"
    assert {(i.category, i.culprit_host) for i in incidents} == {("planned", "node2")}
    decisions = await tl.decisions()
    assert {(d.action, d.status) for d in decisions} == {("none", "noop")}
    assert await tl.requeues() == 1  # the swap's, nothing more


async def test_findings_from_the_bmc_not_from_other_logs(tl: Timeline) -> None:
    use_swaps(tl)
    await spare_reports(tl)
    await tl.loops()
    tl.clock.advance(10)
    psu = "  1f | 12/06/2026 | 08:00:00 | Power Unit #0x01 | Redundancy Lost | Asserted"
    await tl.post(
        "node3",
        [obs("log", tl.clock.now(), source="ipmi", severity="warning", message=psu)],
    )
    # The same words in an application log are not the BMC speaking.
    await tl.post(
        "node4",
        [obs("log", tl.clock.now(), source="application", severity="warning", message=psu)],
    )
    await tl.loops()
    async with unit_of_work(tl.ctx.sessions) as s:
        found = (await s.scalars(select(DegradedFinding))).all()
    assert [(f.host_id, f.rule) for f in found] == [("node3", "PsuRedundancyLost")]
    # Triage reads the line as a power_supply cause; remediation stops nothing for it.
    assert await tl.requeues() == 0 and not await tl.drained("node3")
    assert {(d.action, d.rule) for d in await tl.decisions()} <= {
        ("none", "LeaveDegradedHostsToTheSwap")
    }
    [swap] = await swaps(tl)
    assert (swap.host_id, swap.status) == ("node3", "waiting")
