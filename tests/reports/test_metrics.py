"""/metrics: incidents, decisions and ETTR gauges filled from the database at scrape time."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from builders import T0
from prometheus_client.parser import text_string_to_metric_families

from sentinel.clock import VirtualClock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Decision, Incident
from sentinel.runtime.app import create_app
from sentinel.settings import Settings


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


async def scrape(settings: Settings, clock: VirtualClock) -> str:
    app = create_app(settings, clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sentinel") as client:
            response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


async def test_the_simulated_history_on_metrics(simulated: Any, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database={"url": simulated.url}, run_loops=False)
    sentinel = simulated.outcome.sentinel
    text = await scrape(settings, VirtualClock(T0 + timedelta(days=60)))
    # Stored under the verdict's category (what the real triage said of the drawn evidence).
    by_category = Counter((i.category or i.fault.category).value for i in sentinel.interruptions)
    assert (
        value(text, "sentinel_incidents", category="faulty_gpu", state="resolved")
        == (by_category["faulty_gpu"])
    )
    assert value(text, "sentinel_incidents", category="unknown", state="open") == 0
    by_decision = Counter((i.action, i.status) for i in sentinel.interruptions)
    for (action, status), n in by_decision.items():
        assert value(text, "sentinel_decisions", action=action, status=status) == n
    ettr = value(text, "sentinel_job_ettr_ratio", job_id="llama3-405b-pretrain")
    assert ettr == pytest.approx(sentinel.interruption_ettr(6.0), abs=1e-4)
    assert value(text, "sentinel_hosts", health="drained") == len(sentinel.excluded)


async def test_open_incidents_and_decisions_on_each_backend(
    settings: Settings, clock: VirtualClock
) -> None:
    app = create_app(settings, clock)
    sessions = app.state.ctx.sessions
    async with unit_of_work(sessions) as session:
        for category, state, age in (("faulty_gpu", "open", 600), ("nic", "mitigating", 60),
                                     ("nic", "resolved", 9000)):  # fmt: skip
            incident = Incident(
                id=uuid.uuid4(), job_id=None, state=state, category=category, confidence=1.0,
                rule="r", reason="r", verdict={}, opened_at=clock.now() - timedelta(seconds=age),
                detected_at=clock.now(), updated_at=clock.now(),
            )  # fmt: skip
            session.add(incident)
            await session.flush()
            session.add(
                Decision(
                    incident_id=incident.id, job_id=None, action="exclude_and_restart",
                    status="failed" if state == "open" else "done", rule="r", reason="r",
                    exclude_hosts=[], outcome={}, created_at=clock.now(), updated_at=clock.now(),
                )
            )  # fmt: skip
    text = await scrape(settings, clock)
    assert value(text, "sentinel_incidents", category="faulty_gpu", state="open") == 1
    assert value(text, "sentinel_incidents", category="nic", state="mitigating") == 1
    assert value(text, "sentinel_incident_oldest_open_seconds", category="faulty_gpu") == 600
    assert value(text, "sentinel_incident_oldest_open_seconds", category="nic") == 60
    assert value(text, "sentinel_decisions", action="exclude_and_restart", status="failed") == 1
    assert value(text, "sentinel_decisions", action="exclude_and_restart", status="done") == 2
