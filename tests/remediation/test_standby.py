"""An exclusion carried out in the job onto a standby host of its allocation (issue 17): a job
holding five nodes for four hosts' ranks; an XID 79 on one drains it and the launchers are told
to restart without it and with the standby: no requeue; exactly once; no acknowledgment in time
requeues it without the culprit as before; no standby: the requeue as before."""

from __future__ import annotations

from builders import gpu_sample, xid
from conftest import auth

from remediation.timeline import HOSTS, Timeline
from sentinel.db.engine import unit_of_work
from sentinel.remediation.standby import standby_hosts
from sentinel.web.routes import TOKEN_COOKIE


def _in_place(tl: Timeline) -> None:
    tl.ctx.remediation._settings = tl.ctx.settings.remediation.model_copy(update={"in_place": True})


async def _five_nodes(tl: Timeline) -> None:
    """job-1 holds node1-5 (sbatch -N 5), its ranks on node1-4; node5's agent reports."""
    tl.fake.finish("job-1")
    tl.fake.submit("job-1", 5)
    assert sorted(await tl.job_nodes()) == HOSTS[:5]
    await tl.post("node5", [gpu_sample(0, tl.clock.now())])


async def _xid79(tl: Timeline, host: str = "node3") -> None:
    tl.clock.advance(10)
    await tl.beats(advance=False)
    await tl.post("node5", [gpu_sample(0, tl.clock.now())])
    await tl.post(host, [xid(79, gpu=2, when=tl.clock.now())])
    await tl.loops()


async def test_a_standby_is_allocated_rankless_and_healthy(tl: Timeline) -> None:
    await _five_nodes(tl)
    pool = tl.ctx.remediation.swaps.pool
    async with unit_of_work(tl.ctx.sessions) as s:
        assert await standby_hosts(s, "job-1", HOSTS[:5], pool.healthy) == ["node5"]
        # node6 is not in the allocation; node3 runs ranks; excluded hosts are not standbys.
        assert await standby_hosts(s, "job-1", ["node3", "node6"], pool.healthy) == []
        assert await standby_hosts(s, "job-1", HOSTS[:5], pool.healthy, ("node5",)) == []
    # A standby whose agent went quiet is not healthy by the agent's account.
    tl.clock.advance(tl.ctx.settings.remediation.swap.healthy_within_s + 1)
    async with unit_of_work(tl.ctx.sessions) as s:
        assert await standby_hosts(s, "job-1", HOSTS[:5], pool.healthy) == []


async def test_an_xid79_is_carried_out_in_the_job_onto_the_standby(tl: Timeline) -> None:
    _in_place(tl)
    await _five_nodes(tl)
    await _xid79(tl)
    [d] = await tl.decisions()
    assert (d.action, d.status, d.exclude_hosts) == (
        "exclude_and_restart",
        "awaiting_ack",
        ["node3"],
    )
    assert d.rule == "ExcludeHostOnHardwareFault"
    assert [s["op"] for s in d.outcome["steps"]] == ["drain", "in_place"]
    assert d.outcome["standby_host"] == "node5"
    assert "standby host node5 of its allocation takes the place of node3" in d.reason
    assert await tl.drained("node3")  # no job lands on it again
    assert await tl.requeues() == 0 and sorted(await tl.job_nodes()) == HOSTS[:5]
    advice = (
        await tl.client.get("/api/v1/jobs/job-1/advice", headers=auth(tl.tokens["agent"]))
    ).json()
    assert advice["restart_in_place"] is True and advice["restart_decision"] == str(d.id)
    assert advice["restart_exclude_hosts"] == ["node3"]
    assert advice["restart_standby_host"] == "node5"

    # The first launcher that restarted acknowledges; the others' acknowledgments change
    # nothing; the advice still names the exclusion for the launchers that have not acted.
    for _ in range(2):
        r = await tl.client.post(
            f"/api/v1/decisions/{d.id}/ack",
            json={"outcome": "done", "detail": "restarted without node3, with node5"},
            headers=auth(tl.tokens["agent"]),
        )
        assert r.status_code == 200 and r.json()["status"] == "done", r.text
    advice = (
        await tl.client.get("/api/v1/jobs/job-1/advice", headers=auth(tl.tokens["agent"]))
    ).json()
    assert advice["restart_decision"] == str(d.id) and advice["restart_standby_host"] == "node5"
    # The restarted ranks are not told to restart (heartbeat replies): only the launchers act.
    assert advice["restart_in_place"] is False
    await tl.loops()
    assert len(await tl.decisions()) == 1 and await tl.requeues() == 0  # exactly once

    # The ranks restart at once; advancing after the acknowledgment resolves the incident.
    for _ in range(3):
        tl.clock.advance(10)
        await tl.beats()
        await tl.watchdog()
        await tl.loops()
    [incident] = await tl.incidents()
    assert incident.state == "resolved"
    advice = (
        await tl.client.get("/api/v1/jobs/job-1/advice", headers=auth(tl.tokens["viewer"]))
    ).json()
    assert advice["restart_in_place"] is False and advice["restart_standby_host"] is None
    r = await tl.client.get(f"/api/v1/decisions/{d.id}", headers=auth(tl.tokens["viewer"]))
    assert r.json()["standby_host"] == "node5" and r.json()["outcome"]["standby_host"] == "node5"
    page = await tl.client.get(
        f"/incidents/{d.incident_id}", headers={"Cookie": f"{TOKEN_COOKIE}={tl.tokens['viewer']}"}
    )
    assert "in the job: standby" in page.text and "node5</a> took its place" in page.text


async def test_no_acknowledgment_in_time_requeues_without_the_culprit(tl: Timeline) -> None:
    _in_place(tl)
    await _five_nodes(tl)
    await _xid79(tl)
    [d] = await tl.decisions()
    assert d.status == "awaiting_ack"
    tl.clock.advance(tl.ctx.settings.remediation.in_place_ack_s + 1)
    await tl.loops()
    [d] = await tl.decisions()
    assert (d.action, d.status, d.exclude_hosts) == ("exclude_and_restart", "done", ["node3"])
    assert "no launcher acknowledged" in d.reason and "standby_host" not in d.outcome
    ops = [s["op"] for s in d.outcome["steps"]]
    assert ops[:3] == ["drain", "in_place", "in_place"] and "requeue" in ops
    assert await tl.requeues() == 1 and "node3" not in await tl.job_nodes()
    r = await tl.client.post(
        f"/api/v1/decisions/{d.id}/ack", json={"outcome": "done"}, headers=auth(tl.tokens["agent"])
    )
    assert r.status_code == 409


async def test_without_a_standby_the_exclusion_is_a_requeue(tl: Timeline) -> None:
    _in_place(tl)  # the job holds exactly its four hosts
    await _xid79(tl)
    [d] = await tl.decisions()
    assert (d.action, d.status) == ("exclude_and_restart", "done")
    assert [s["op"] for s in d.outcome["steps"]][:2] == ["drain", "requeue"]
    assert "standby_host" not in d.outcome and await tl.requeues() == 1


async def test_without_in_place_restarts_a_standby_is_not_used(tl: Timeline) -> None:
    await _five_nodes(tl)
    await _xid79(tl)
    [d] = await tl.decisions()
    assert (d.action, d.status) == ("exclude_and_restart", "done")
    assert "in_place" not in [s["op"] for s in d.outcome["steps"]]
    assert await tl.requeues() == 1
