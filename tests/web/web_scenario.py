"""The dashboard tests' world: a small fleet with a real incident in it, clients, a server."""

from __future__ import annotations

import shutil
import socket
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI

from sentinel.auth import TokenSpec
from sentinel.clock import VirtualClock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Host
from sentinel.replay.synth import Fleet
from sentinel.runtime.app import create_app
from sentinel.runtime.context import AppContext
from sentinel.settings import Settings
from sentinel.web.routes import TOKEN_COOKIE

HOSTILE = "<script>alert('pwned')</script>"
CULPRIT = "node-0005"
THROTTLED = "node-0007"
HOSTILE_HOST = f"{HOSTILE}-host"
DURATION_S = 170.0


@dataclass(frozen=True)
class Scenario:
    """A migrated SQLite file holding the fleet after the fault, and the time it ends at."""

    path: Path
    now: datetime


def scenario_fleet() -> Fleet:
    """24 hosts training; at t=60 s XID 79 on node-0005 GPU 3, then every peer times out."""
    f = Fleet(hosts=24, interval=10.0, seed=8)
    f.gpu(0.0, 7, 1, clock_event_reasons=0x40)  # HW thermal slowdown: a degraded host
    message = (
        "NVRM: Xid (PCI:0000:5d:00): 79, pid=2711, name=python, GPU has fallen off the bus. "
        + HOSTILE
        + " &c"
    )
    f.xid(60.0, 5, 3, 79, message)
    f.gpu(60.5, 5, 3, lost=True)
    f.stall(60.0)
    for h in range(f.hosts):
        if h == 5:
            continue
        rank = h * f.gpus
        f.log(
            120.0 + (h % 7) * 0.3,
            h,
            f"[rank{rank}]:[E ProcessGroupNCCL.cpp:616] [Rank {rank}] Watchdog caught collective "
            "operation timeout: WorkNCCL(SeqNum=88123, OpType=ALLREDUCE, NumelIn=262144, "
            "NumelOut=262144, Timeout(ms)=60000) ran for 60021 milliseconds before timing out.",
            rank=rank,
            path=f"/var/log/train/rank{rank}.log",
        )
    return f


def web_settings(path: Path, tokens: dict[str, str]) -> Settings:
    return Settings(
        data_dir=path.parent / "data",
        database={"url": f"sqlite:///{path}"},  # type: ignore[arg-type]
        run_loops=False,
        auth={"tokens": [TokenSpec(name=r, role=r, token=t) for r, t in tokens.items()]},  # type: ignore[arg-type]
        triage={"heartbeat_interval_s": 10.0},  # type: ignore[arg-type]
        ingest={"linger_ms": 0},  # type: ignore[arg-type]
    )


async def _play(app: FastAPI, clock: VirtualClock, fleet: Fleet, agent_token: str) -> None:
    """Feed the recording in time order, running the leader's loops once a simulated second."""
    ctx = app.state.ctx
    headers = {"Authorization": f"Bearer {agent_token}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://seed") as client:
        last_tick = fleet.start
        for line in fleet.lines(DURATION_S):
            at = datetime.fromisoformat(line["at"])
            while last_tick + timedelta(seconds=1) <= at:
                last_tick += timedelta(seconds=1)
                clock.set(max(clock.now(), last_tick))
                await _loops(ctx)
            clock.set(max(clock.now(), at))
            r = await client.post("/api/v1/reports", json=line["batch"], headers=headers)
            assert r.status_code == 202, r.text
        for _ in range(5):
            clock.advance(1.0)
            await _loops(ctx)


async def _loops(ctx: AppContext) -> None:
    async with unit_of_work(ctx.sessions) as session:
        resolved = await ctx.watchdog.run_once(session)
    await ctx.stages.run(resolved)
    await ctx.stages.run(await ctx.triage_worker.run_once())
    await ctx.stages.run(await ctx.remediation.run_due(ctx.sessions))


async def build(path: Path, tokens: dict[str, str]) -> Scenario:
    fleet = scenario_fleet()
    clock = VirtualClock(fleet.start)
    app = create_app(web_settings(path, tokens), clock)
    async with app.router.lifespan_context(app):
        await _play(app, clock, fleet, tokens["agent"])
        # Ingest only takes well-formed names; a row written some other way must still be
        # harmless on every page.
        async with unit_of_work(app.state.ctx.sessions) as session:
            session.add(
                Host(
                    id=HOSTILE_HOST,
                    agent_id=HOSTILE,
                    first_seen=clock.now(),
                    last_seen=clock.now(),
                    last_seq=1,
                    last_critical_at=clock.now(),
                    last_critical=HOSTILE,
                )
            )
    return Scenario(path, clock.now())


async def add_hosts(path: Path, tokens: dict[str, str], now: datetime, n: int) -> None:
    """More hosts after the scenario's 24, as benchmarks/dashboard.py makes them."""
    sys.path.append(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from dashboard import fleet_rows

    hosts, gpus = fleet_rows(n, now, seed=3, first=24)
    app = create_app(web_settings(path, tokens), VirtualClock(now))
    async with (
        app.router.lifespan_context(app),
        unit_of_work(app.state.ctx.sessions) as session,
    ):
        session.add_all(hosts)
        await session.flush()
        session.add_all(gpus)


def scenario_copy(scenario: Scenario, folder: Path) -> Path:
    target = folder / "sentinel.db"
    shutil.copy(scenario.path, target)
    return target


def client_for(app: FastAPI, token: str | None) -> httpx.AsyncClient:
    cookies = {TOKEN_COOKIE: token} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://sentinel",
        cookies=cookies,
        follow_redirects=False,
    )


@dataclass
class LiveServer:
    url: str
    tokens: dict[str, str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
