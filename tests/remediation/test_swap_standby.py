"""A proactive swap carried out in the job onto a standby host of its allocation (issue 17): job-1
holds five nodes for four hosts' ranks (node5 its standby), the pool one spare (node6). A
degraded node2 is swapped at the job's next durable checkpoint as before, but in the job: node2
drained, the launchers told through the advice to restart without it and with node5, no
requeue, the pool's spare kept; exactly once. No acknowledgment in time, or a launcher that
could not, requeues it onto the pool's spare as without a standby; without a standby, or
without in-place restarts, the swap is the requeue it always was."""

from __future__ import annotations

from typing import Any

import pytest
from builders import heartbeat, obs
from conftest import auth
from sqlalchemy import select

from remediation.test_swap import page, remap_pending, swaps
from remediation.timeline import HOSTS, Timeline
from sentinel.db.engine import unit_of_work
from sentinel.db.models import AuditEntry, DegradedFinding, Maintenance, Spare
from sentinel.remediation.settings import RemediationSettings, SwapSettings
from sentinel.remediation.standby import standby_hosts
from sentinel.remediation.swap import SwapService

STANDBY, SPARE = "node5", "node6"


def use_swaps(tl: Timeline, in_place: bool = True, pool: int = 1) -> None:
    spares = [SPARE] if pool else []
    settings = RemediationSettings(
        in_place=in_place, swap=SwapSettings(spares=spares, pool_size=pool)
    )
    tl.ctx.remediation.swaps = SwapService(tl.clock, settings, tl.fake)


async def allocation(tl: Timeline, nodes: int = 5, pool: int = 1) -> None:
    """job-1 holds node1-4 (its ranks), node5 too with five nodes (sbatch -N 5); the agents of
    node5 and node6 report them healthy."""
    if nodes != 4:
        tl.fake.finish("job-1")
        tl.fake.submit("job-1", nodes)
    assert sorted(await tl.job_nodes()) == HOSTS[:nodes]
    await reports(tl)
    await tl.loops()
    assert tl.fake.reservations == ({"sentinel-spares": (SPARE,)} if pool else {})


async def reports(tl: Timeline) -> None:
    for host in (STANDBY, SPARE):
        await tl.post(host, [obs("agent_status", tl.clock.now(), version="test")])


async def beats(tl: Timeline, checkpoint: int, hosts: list[str] = HOSTS[:4]) -> None:
    """Every rank beats, node by node in the job's world (a standby in its excluded host's
    place); the spare and the standby's agents report."""
    tl.step += 5
    for h, host in enumerate(hosts):
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
    await reports(tl)


async def advice(tl: Timeline) -> dict[str, Any]:
    r = await tl.client.get("/api/v1/jobs/job-1/advice", headers=auth(tl.tokens["agent"]))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def ack(tl: Timeline, swap_id: object, outcome: str = "done") -> Any:
    return await tl.client.post(
        f"/api/v1/decisions/{swap_id}/ack",
        json={"outcome": outcome, "detail": "restarted without node2, with node5"},
        headers=auth(tl.tokens["agent"]),
    )


async def swapped_at_the_checkpoint(tl: Timeline) -> None:
    """node2's row remap is pending: the job is told to checkpoint now; it saves step 115."""
    tl.clock.advance(10)
    await tl.post("node2", [remap_pending(tl)])
    await tl.loops()
    [swap] = await swaps(tl)
    assert (swap.status, swap.rule) == ("waiting", "SwapAtNextCheckpoint")
    assert (await advice(tl))["checkpoint_now"] is True
    tl.clock.advance(10)
    await beats(tl, checkpoint=115)
    await tl.loops()


async def test_a_degraded_host_is_swapped_in_the_job_onto_its_standby(tl: Timeline) -> None:
    use_swaps(tl)
    await allocation(tl)
    await swapped_at_the_checkpoint(tl)

    [swap] = await swaps(tl)
    assert swap.status == "awaiting_ack", swap.error
    assert [s["op"] for s in swap.outcome["steps"]] == ["drain", "in_place"]
    assert swap.spare_host == STANDBY and swap.outcome["standby_host"] == STANDBY
    assert swap.outcome["durable_checkpoint"] == 115
    assert "standby host node5 of its allocation takes the place of node2" in swap.reason
    assert await tl.drained("node2")  # no job lands on it again
    # No requeue: the job keeps its allocation; the pool keeps its spare for another.
    assert await tl.requeues() == 0 and sorted(await tl.job_nodes()) == HOSTS[:5]
    assert tl.fake.reservations == {"sentinel-spares": (SPARE,)}
    async with unit_of_work(tl.ctx.sessions) as s:
        spare = await s.get(Spare, SPARE)
        assert spare is not None and spare.state == "ready"
        [m] = (await s.scalars(select(Maintenance))).all()  # the stop is planned
        assert m.job_id == "job-1" and m.hosts == ["node2"]
        [finding] = (await s.scalars(select(DegradedFinding))).all()
        assert finding.state == "resolved"
    told = await advice(tl)
    assert told["checkpoint_now"] is False and told["swap"]["standby_host"] == STANDBY
    assert told["restart_in_place"] is True and told["restart_decision"] == str(swap.id)
    assert told["restart_exclude_hosts"] == ["node2"]
    assert told["restart_standby_host"] == STANDBY
    assert "carried out in the job" in told["restart_reason"]

    # The first launcher that restarted acknowledges through the decisions' route; the others'
    # acknowledgments change nothing; the advice names the swap for those that have not acted.
    for _ in range(2):
        r = await ack(tl, swap.id)
        assert r.status_code == 200 and r.json()["status"] == "done", r.text
        assert r.json()["standby_host"] == STANDBY
    told = await advice(tl)
    assert told["restart_in_place"] is False and told["restart_decision"] == str(swap.id)
    assert told["restart_standby_host"] == STANDBY
    async with unit_of_work(tl.ctx.sessions) as s:
        acks = (await s.scalars(select(AuditEntry).where(AuditEntry.action == "swap.ack"))).all()
        assert [a.target for a in acks] == [f"swap:{swap.id}"]
    await tl.loops()
    [swap] = await swaps(tl)
    assert swap.status == "done" and await tl.requeues() == 0  # exactly once
    assert [s["op"] for s in swap.outcome["steps"]] == ["drain", "in_place", "ack"]

    # The ranks train again from step 115, node5 in node2's place: no longer named.
    tl.step = 115
    tl.clock.advance(10)
    await beats(tl, checkpoint=115, hosts=["node1", STANDBY, "node3", "node4"])
    told = await advice(tl)
    assert told["restart_decision"] is None and told["restart_standby_host"] is None
    assert told["swap"] is None
    r = await tl.client.get("/api/v1/swaps", headers=auth(tl.tokens["viewer"]))
    [shown] = r.json()
    assert (shown["standby_host"], shown["spare_host"], shown["status"]) == (STANDBY,) * 2 + (
        "done",
    )
    assert "(standby, in the job: no requeue)" in await page(tl, "/hosts/node2")
    assert len(await swaps(tl)) == 1 and len(await tl.decisions()) == 0


async def test_a_swap_in_the_job_shows_on_the_jobs_page(tl: Timeline) -> None:
    use_swaps(tl)
    await allocation(tl)
    await swapped_at_the_checkpoint(tl)
    text = await page(tl, "/jobs")
    assert "node5</span> (standby, in the job)" in text


async def test_no_acknowledgment_in_time_requeues_onto_the_pools_spare(tl: Timeline) -> None:
    use_swaps(tl)
    await allocation(tl)
    await swapped_at_the_checkpoint(tl)
    [swap] = await swaps(tl)
    assert swap.status == "awaiting_ack"
    tl.clock.advance(tl.ctx.settings.remediation.in_place_ack_s + 1)
    await reports(tl)
    await tl.loops()
    [swap] = await swaps(tl)
    assert swap.status == "done", swap.error
    assert "no launcher acknowledged the swap in the job" in swap.reason
    assert "standby_host" not in swap.outcome and swap.spare_host == SPARE
    ops = [s["op"] for s in swap.outcome["steps"]]
    assert ops == ["drain", "in_place", "in_place", "drain", "reserve", "requeue"]
    assert await tl.requeues() == 1 and "node2" not in await tl.job_nodes()
    assert SPARE in await tl.job_nodes()
    told = await advice(tl)
    assert told["restart_decision"] is None and told["restart_exclude_hosts"] == []
    r = await ack(tl, swap.id)
    assert r.status_code == 409 and "requeued" in r.text


async def test_a_launcher_that_could_not_restart_requeues_it_at_once(tl: Timeline) -> None:
    use_swaps(tl)
    await allocation(tl)
    await swapped_at_the_checkpoint(tl)
    [swap] = await swaps(tl)
    r = await ack(tl, swap.id, "failed")
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    await tl.loops()
    [swap] = await swaps(tl)
    assert swap.status == "done" and "the launcher could not restart in the job" in swap.reason
    assert await tl.requeues() == 1 and swap.spare_host == SPARE


@pytest.mark.parametrize(("nodes", "in_place"), [(4, True), (5, False)])
async def test_without_a_standby_or_in_place_restarts_the_swap_is_a_requeue(
    tl: Timeline, nodes: int, in_place: bool
) -> None:
    use_swaps(tl, in_place=in_place)
    await allocation(tl, nodes)
    await swapped_at_the_checkpoint(tl)
    [swap] = await swaps(tl)
    assert swap.status == "done", swap.error
    assert [s["op"] for s in swap.outcome["steps"]] == ["drain", "reserve", "requeue"]
    assert swap.spare_host == SPARE and "standby_host" not in swap.outcome
    assert await tl.requeues() == 1
    assert (await advice(tl))["restart_decision"] is None


async def test_a_standby_lets_the_swap_go_ahead_with_the_pool_empty(tl: Timeline) -> None:
    """The pool holds no spare: without a standby the swap is refused (NeverMoreThanThePoolHolds,
    test_swap); the job's standby takes the host's place in the job instead."""
    use_swaps(tl, pool=0)
    await allocation(tl, pool=0)
    await swapped_at_the_checkpoint(tl)
    [swap] = await swaps(tl)
    assert swap.status == "awaiting_ack" and swap.outcome["standby_host"] == STANDBY
    assert await tl.requeues() == 0


async def test_the_host_swapped_out_in_the_job_is_not_a_pool_spare_while_the_job_runs(
    tl: Timeline,
) -> None:
    """node2 stays in job-1's allocation, drained; repaired, it is the job's standby again
    (no rank, healthy), not a spare for the pool's reservation, which wants two."""
    settings = RemediationSettings(in_place=True, swap=SwapSettings(spares=[SPARE], pool_size=2))
    tl.ctx.remediation.swaps = SwapService(tl.clock, settings, tl.fake)
    await allocation(tl)
    await swapped_at_the_checkpoint(tl)
    [swap] = await swaps(tl)
    assert (await ack(tl, swap.id)).status_code == 200
    tl.step = 115
    await beats(tl, checkpoint=115, hosts=["node1", STANDBY, "node3", "node4"])
    r = await tl.client.post(
        "/api/v1/hosts/node2/repaired",
        json={"comment": "row remapped"},
        headers=auth(tl.tokens["operator"]),
    )
    assert r.status_code == 200, r.text
    tl.clock.advance(60)
    await beats(tl, checkpoint=115, hosts=["node1", STANDBY, "node3", "node4"])
    await tl.post("node2", [obs("agent_status", tl.clock.now(), version="test")])
    await tl.loops()
    assert tl.fake.reservations == {"sentinel-spares": (SPARE,)}
    async with unit_of_work(tl.ctx.sessions) as s:
        assert await s.get(Spare, "node2") is None
        pool = tl.ctx.remediation.swaps.pool
        assert await standby_hosts(s, "job-1", await tl.job_nodes(), pool.healthy) == ["node2"]


async def test_a_standby_promised_to_a_swap_is_not_offered_again(tl: Timeline) -> None:
    """node5 is published as node2's replacement and has not joined yet (no rank): an exclusion
    or another swap meanwhile must not take it too."""
    use_swaps(tl)
    await allocation(tl)
    await swapped_at_the_checkpoint(tl)
    pool = tl.ctx.remediation.swaps.pool
    async with unit_of_work(tl.ctx.sessions) as s:
        assert await standby_hosts(s, "job-1", HOSTS[:5], pool.healthy) == []
    [swap] = await swaps(tl)
    assert (await ack(tl, swap.id)).status_code == 200
    tl.step = 115
    await beats(tl, checkpoint=115, hosts=["node1", STANDBY, "node3", "node4"])
    async with unit_of_work(tl.ctx.sessions) as s:  # node5 trains: a rank, no standby
        assert await standby_hosts(s, "job-1", HOSTS[:5], pool.healthy) == []


async def test_an_acknowledged_swap_is_named_no_longer_than_the_ack_time(tl: Timeline) -> None:
    """Every launcher polls within seconds; one that starts later (the job requeued meanwhile)
    must not act on it: named at most in_place_ack_s after the acknowledgment."""
    use_swaps(tl)
    await allocation(tl)
    await swapped_at_the_checkpoint(tl)
    [swap] = await swaps(tl)
    assert (await ack(tl, swap.id)).status_code == 200
    tl.clock.advance(tl.ctx.settings.remediation.in_place_ack_s - 1)
    assert (await advice(tl))["restart_decision"] == str(swap.id)
    tl.clock.advance(2)
    told = await advice(tl)
    assert told["restart_decision"] is None and told["restart_exclude_hosts"] == []
