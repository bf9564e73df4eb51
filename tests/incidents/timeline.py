"""A job of eight hosts on the virtual clock, driven through the API, with its triage passes:
the timeline the incidents tests (live triage and every source's) are written against."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import httpx
from builders import at, batch, heartbeat, obs
from conftest import auth
from sqlalchemy import select

from sentinel.clock import VirtualClock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import EventDisposition, Incident

HOSTS = [f"h{i:03d}" for i in range(1, 9)]
WATCHDOG = (
    "[rank{rank}]:[E1128 03:10:00.000000 ProcessGroupNCCL.cpp:616] [Rank {rank}] Watchdog caught "
    "collective operation timeout: WorkNCCL(SeqNum=88123, OpType=ALLREDUCE, NumelIn=262144, "
    "NumelOut=262144, Timeout(ms)=600000) ran for 600015 milliseconds before timing out."
)


class Timeline:
    """A job of eight hosts on the virtual clock: post what hosts report, run triage passes."""

    def __init__(
        self, client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
    ) -> None:
        self.client, self.clock = client, clock
        self.token, self.viewer = tokens["agent"], tokens["viewer"]
        self.ctx = client.app.state.ctx  # type: ignore[attr-defined]
        self.seq: dict[str, int] = {}

    async def post(self, host: str, observations: Sequence[dict[str, Any]]) -> None:
        self.seq[host] = self.seq.get(host, 0) + 1
        r = await self.client.post(
            "/api/v1/reports",
            json=batch(host, self.seq[host], list(observations), self.clock.now()),
            headers=auth(self.token),
        )
        assert r.status_code == 202, r.text

    async def start_job(self) -> None:
        for n, host in enumerate(HOSTS):
            beats = [
                heartbeat(rank=n * 8 + g, gpu_index=g, when=self.clock.now()) for g in range(8)
            ]
            await self.post(host, beats)

    async def at(self, seconds: float) -> None:
        self.clock.set(max(self.clock.now(), at(seconds)))

    async def triage(self, passes: int = 1) -> None:
        for _ in range(passes):
            await self.ctx.triage_worker.run_once()

    async def incidents(self) -> list[Incident]:
        async with unit_of_work(self.ctx.sessions) as s:
            return list((await s.scalars(select(Incident).order_by(Incident.opened_at))).all())

    async def dispositions(self) -> dict[str, EventDisposition]:
        async with unit_of_work(self.ctx.sessions) as s:
            rows = (await s.scalars(select(EventDisposition))).all()
        return {str(r.event_id): r for r in rows}


def log(message: str, when: datetime, source: str = "kernel", **fields: Any) -> dict[str, Any]:
    return obs("log", when, source=source, message=message, **fields)


async def hang(timeline: Timeline, seconds: float, *, besides: Collection[str]) -> None:
    """Every host but those named: its ranks time out in their collectives."""
    await timeline.at(seconds)
    for n, host in enumerate(HOSTS):
        if host not in besides:
            message = WATCHDOG.format(rank=n * 8)
            await timeline.post(host, [log(message, at(seconds), source="application", rank=n * 8)])
