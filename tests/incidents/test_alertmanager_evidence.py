"""An alert a site already has (Alertmanager's webhook, version 4) opens or joins an incident."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from builders import batch, heartbeat, xid
from conftest import auth
from sqlalchemy import select

from sentinel.clock import VirtualClock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Incident
from sentinel.incidents.verdicts import verdict_of

# What Alertmanager 0.25 really posted when a rule on an XID metric fired (shared/infra).
PAYLOAD = Path(__file__).parents[1] / "fixtures" / "alertmanager" / "alertmanager-webhook-v4.json"


async def _incidents(client: httpx.AsyncClient) -> list[Incident]:
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    await ctx.triage_worker.run_once()
    async with unit_of_work(ctx.sessions) as s:
        return list((await s.scalars(select(Incident))).all())


async def test_alertmanager_alert_opens_an_incident(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> None:
    payload = json.loads(PAYLOAD.read_text())
    payload["alerts"][0]["startsAt"] = clock.now().isoformat()
    r = await app_client.post("/api/v1/alertmanager", json=payload, headers=auth(tokens["agent"]))
    assert r.status_code in (200, 202), r.text
    [incident] = await _incidents(app_client)
    assert (incident.category, incident.culprit_host) == ("faulty_gpu", "node1")


async def test_alertmanager_alert_joins_the_incident_the_agent_opened(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> None:
    beats = [heartbeat(rank=r, gpu_index=r, when=clock.now()) for r in range(8)]
    await app_client.post(
        "/api/v1/reports", json=batch("node1", 1, beats), headers=auth(tokens["agent"])
    )
    await app_client.post(
        "/api/v1/reports", json=batch("node1", 2, [xid(79, gpu=2)]), headers=auth(tokens["agent"])
    )
    [first] = await _incidents(app_client)
    clock.advance(30)
    payload = json.loads(PAYLOAD.read_text())
    payload["alerts"][0]["startsAt"] = clock.now().isoformat()
    await app_client.post("/api/v1/alertmanager", json=payload, headers=auth(tokens["agent"]))
    [incident] = await _incidents(app_client)
    assert incident.id == first.id and incident.culprit_host == "node1"
    texts = [e.text for e in verdict_of(incident).evidence]
    assert any("GpuXidError" in t for t in texts), texts
