"""The fleet grid's cells for each kind of trouble, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import timedelta

import httpx
from web_scenario import client_for

from sentinel.clock import VirtualClock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Gpu, Host


def _host(name: str, now, **fields) -> Host:  # type: ignore[no-untyped-def]
    return Host(
        id=name,
        agent_id=f"{name}-agent",
        first_seen=now - timedelta(hours=1),
        last_seen=fields.pop("last_seen", now),
        last_seq=1,
        **fields,
    )


def _gpu(host: str, index: int, now, **fields) -> Gpu:  # type: ignore[no-untyped-def]
    return Gpu(host_id=host, gpu_index=index, sample="{}", updated_at=now, **fields)


async def test_cells_say_which_gpu_and_why(
    app_client: httpx.AsyncClient, clock: VirtualClock, tokens: dict[str, str]
) -> None:
    now = clock.now()
    hosts = [
        _host("a-lost", now),
        _host("b-throttled", now),
        _host("c-missing-gpu", now),
        _host("d-critical", now, last_critical_at=now, last_critical="MCE on CPU 3"),
        _host("e-drained", now, drain_state="drained", drain_reason="XID 48"),
        _host("f-silent", now, last_seen=now - timedelta(hours=1)),
        _host("g-healthy", now),
    ]
    gpus = [
        _gpu(h.id, i, now, lost=(h.id == "a-lost" and i == 3) or (h.id == "e-drained" and i == 2))
        for h in hosts
        for i in range(8)
        if not (h.id == "c-missing-gpu" and i == 5)
    ]
    for g in gpus:
        if g.host_id == "b-throttled" and g.gpu_index == 1:
            g.clock_event_reasons = 0x40
    app = app_client.app  # type: ignore[attr-defined]
    async with unit_of_work(app.state.ctx.sessions) as session:
        session.add_all(hosts)
        await session.flush()
        session.add_all(gpus)
    async with client_for(app, tokens["viewer"]) as client:
        data = (await client.get("/fleet.json")).json()
        drained = (await client.get("/fleet.json?state=drained")).json()
    cells = {h: (v[0], v[1]) for h, v in data["hosts"].items()}
    assert cells == {
        "a-lost": ("hhhuhhhh", "unhealthy"),
        "b-throttled": ("hdhhhhhh", "degraded"),
        "c-missing-gpu": ("hhhhhshh", "healthy"),
        "d-critical": ("uuuuuuuu", "unhealthy"),
        "e-drained": ("xxuxxxxx", "drained"),
        "f-silent": ("ssssssss", "silent"),
        "g-healthy": ("hhhhhhhh", "healthy"),
    }
    assert data["counts"] == {
        "healthy": 2,
        "degraded": 1,
        "unhealthy": 2,
        "silent": 1,
        "drained": 1,
    }
    assert list(drained["hosts"]) == ["e-drained"]
