"""The scheduler's view as evidence, on the virtual clock: what Slurm says of a node (drained by
NHC or an admin, down, in a maintenance reservation) becomes an event on that host that triage
weighs like any agent's."""

from __future__ import annotations

import httpx
from remediation.timeline import HOSTS, Timeline
from sqlalchemy import select

from sentinel.clock import VirtualClock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Event
from sentinel.incidents.scheduler_view import SchedulerView
from sentinel.schedulers.base import NodesResult
from sentinel.schedulers.fake import FakeScheduler

NHC_IB = "NHC: check_hw_ib:  No IB port mlx5_0:1 is ACTIVE (LinkUp 400 Gb/sec)."


class FleetWithMaintenance(FakeScheduler):
    """The fake cluster, with some nodes inside a maintenance reservation."""

    def __init__(self, maintenance: dict[str, str]) -> None:
        super().__init__(HOSTS)
        self.maintenance = maintenance

    async def nodes(self) -> NodesResult:
        listing = await super().nodes()
        nodes = tuple(
            n.model_copy(
                update={
                    "raw_state": f"{n.raw_state}+MAINTENANCE+RESERVED",
                    "maintenance": True,
                    "reservation": self.maintenance[n.name],
                }
            )
            if n.name in self.maintenance
            else n
            for n in listing.nodes
        )
        return listing.model_copy(update={"nodes": nodes})


async def poll(tl: Timeline) -> int:
    """The leader's poll of the scheduler."""
    return await SchedulerView(tl.clock).run_once(tl.ctx.sessions, tl.ctx.remediation.scheduler)


async def test_a_node_nhc_drains_is_the_cause_on_that_host(tl: Timeline) -> None:
    # t=10 s: NHC finds node2's IB port down and drains it; the service polls Slurm.
    tl.clock.advance(10)
    await tl.fake.drain("node2", NHC_IB)
    assert await poll(tl) == 1
    assert await poll(tl) == 0  # the same state again is nothing new

    # t=11 s: triage weighs it → one incident: the NIC of node2, with NHC's words as evidence.
    tl.clock.advance(1)
    await tl.loops()
    [incident] = await tl.incidents()
    assert (incident.category, incident.culprit_host) == ("nic", "node2")
    assert NHC_IB in incident.verdict["evidence"][0]["text"]


async def test_sentinels_own_drains_are_not_evidence(tl: Timeline) -> None:
    await tl.fake.drain("node2", "sentinel: faulty_gpu (RESTART_BM) decision 1a2b3c4d")
    assert await poll(tl) == 0


async def test_an_admin_drain_is_a_lead_on_that_host(tl: Timeline) -> None:
    tl.clock.advance(10)
    await tl.fake.drain("node4", "bad gpu, ticket 4412")
    assert await poll(tl) == 1
    async with unit_of_work(tl.ctx.sessions) as s:
        [event] = (await s.scalars(select(Event).where(Event.kind == "scheduler_node"))).all()
    assert (event.host_id, event.payload["state"], event.payload["reason"]) == (
        "node4",
        "DRAINING",
        "bad gpu, ticket 4412",
    )

    # t=40 s: the job stalls; what Slurm said of node4 is the one lead.
    tl.clock.advance(30)
    await tl.alive()
    await tl.watchdog()
    await tl.loops()
    [incident] = await tl.incidents()
    assert (incident.category, incident.culprit_host) == ("host_maintenance", "node4")


async def test_a_maintenance_reservation_makes_the_interruption_planned(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> None:
    tl = Timeline(app_client, tokens, clock, FleetWithMaintenance({"node2": "maint_rack7"}))
    await tl.beats()

    # t=0: node2 sits in the reservation maint_rack7; the service polls Slurm.
    assert await poll(tl) == 1
    # t=120 s: node2 went quiet for its maintenance.
    tl.clock.advance(120)
    await tl.watchdog()
    await tl.loops()

    incidents = await tl.incidents()
    assert [(i.category, i.culprit_host) for i in incidents] == [("planned", "node2")]
    [d] = await tl.decisions()
    assert (d.action, d.status) == ("none", "noop")
