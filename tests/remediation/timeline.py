"""A job on four hosts driven like agents and the leader's loops would, on the virtual clock."""

from __future__ import annotations

from typing import Any

import httpx
from builders import batch, gpu_sample, heartbeat
from conftest import auth
from sqlalchemy import select

from sentinel.clock import VirtualClock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Decision, Incident
from sentinel.schedulers.fake import FakeScheduler

HOSTS = [f"node{i}" for i in range(1, 7)]  # job on node1-4, node5-6 spare


class Timeline:
    """Drive the app like agents and the leader's loops would, on the virtual clock."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        clock: VirtualClock,
        fake: FakeScheduler | None = None,
    ):
        self.client, self.tokens, self.clock = client, tokens, clock
        self.ctx = client.app.state.ctx  # type: ignore[attr-defined]
        self.seq: dict[str, int] = {}
        self.fake = fake or FakeScheduler(HOSTS)
        self.fake.submit("job-1", 4)
        self.ctx.remediation.scheduler = self.fake
        self.step = 100

    async def post(self, host: str, observations: list[dict[str, Any]]) -> None:
        self.seq[host] = self.seq.get(host, 0) + 1
        r = await self.client.post(
            "/api/v1/reports",
            json=batch(host, self.seq[host], observations, self.clock.now()),
            headers=auth(self.tokens["agent"]),
        )
        assert r.status_code == 202, r.text

    async def beats(
        self, advance: bool = True, code_version: str | None = None, checkpoint_step: int = 100
    ) -> None:
        """Every rank beats (the step advanced by 5), at the code version given, if any."""
        version = {"code_version": code_version} if code_version else {}
        if advance:
            self.step += 5
        for h, host in enumerate(HOSTS[:4]):
            await self.post(
                host,
                [
                    heartbeat(
                        rank=h * 8 + g,
                        step=self.step,
                        when=self.clock.now(),
                        gpu_index=g,
                        checkpoint_step=checkpoint_step,
                        world_size=32,
                        **version,
                    )
                    for g in range(8)
                ],
            )

    async def loops(self) -> None:
        await self.ctx.stages.run(await self.ctx.triage_worker.run_once())
        await self.ctx.stages.run(await self.ctx.remediation.run_due(self.ctx.sessions))

    async def watchdog(self) -> None:
        async with unit_of_work(self.ctx.sessions) as s:
            resolved = await self.ctx.watchdog.run_once(s)
        await self.ctx.stages.run(resolved)

    async def alive(self) -> None:
        """The hosts' agents report their GPUs (no heartbeats: the ranks are not training)."""
        for host in HOSTS[:4]:
            await self.post(host, [gpu_sample(0, self.clock.now())])

    async def down_then_back(self, down_s: float = 30) -> None:
        """The job is down a while, its hosts' agents still reporting (the watchdog sees it
        stalled), then trains again."""
        for _ in range(3):
            self.clock.advance(down_s / 3)
            await self.alive()
        await self.watchdog()
        for _ in range(3):
            self.clock.advance(10)
            await self.beats()
            await self.watchdog()
            await self.loops()

    async def decisions(self) -> list[Decision]:
        async with unit_of_work(self.ctx.sessions) as s:
            return list((await s.scalars(select(Decision).order_by(Decision.created_at))).all())

    async def incidents(self) -> list[Incident]:
        async with unit_of_work(self.ctx.sessions) as s:
            return list((await s.scalars(select(Incident).order_by(Incident.opened_at))).all())

    async def requeues(self) -> int:
        job = (await self.fake.job_state("job-1")).job
        assert job is not None
        return job.restarts

    async def drained(self, host: str) -> bool:
        node = (await self.fake.nodes()).node(host)
        return node is not None and node.state in ("draining", "drained")

    async def job_nodes(self) -> tuple[str, ...]:
        job = (await self.fake.job_state("job-1")).job
        assert job is not None
        return job.nodes
