"""One XID-79 incident with 2,047 peer symptoms: one Slack message and one page, not 2,048."""

from __future__ import annotations

from datetime import timedelta

import httpx
from builders import T0
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerting.incident_builders import peer_timeouts, xid79_incident
from sentinel.alerting.config import load_routing
from sentinel.alerting.incidents import alerts_for_incident
from sentinel.alerting.model import fingerprint
from sentinel.alerting.notifiers.fakes import FakeReceiver
from sentinel.alerting.service import push_alerts
from sentinel.alerting.settings import AlertingSettings
from sentinel.alerting.wiring import build_dispatcher
from sentinel.clock import VirtualClock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Alert


def test_alerts_for_incident_labels() -> None:
    incident = xid79_incident()
    cause, *symptoms = alerts_for_incident(incident, peer_timeouts(8))
    assert cause.labels == {
        "alertname": "SentinelIncident",
        "category": "faulty_gpu",
        "severity": "critical",
        "cluster": "rsc1",
        "job": "llama-405b-1",
        "host": "node1377",
        "gpu": "3",
        "incident": str(incident.id),
        "scope": "host",
        "role": "cause",
    }
    assert cause.annotations["evidence"][0].startswith("node1377: NVRM: Xid (PCI:0000:9b:00): 79")
    assert len(symptoms) == 8
    assert {s.labels["role"] for s in symptoms} == {"symptom"}
    assert {s.labels["incident"] for s in symptoms} == {str(incident.id)}
    assert all(s.ends_at is None for s in symptoms)


async def test_one_incident_on_2048_hosts_makes_one_message_and_one_page(
    sessions: async_sessionmaker[AsyncSession],
    clock: VirtualClock,
    slack: FakeReceiver,
    pagerduty: FakeReceiver,
) -> None:
    settings = AlertingSettings(
        slack_webhook_url=slack.url,
        pagerduty_routing_key="R" * 32,
        pagerduty_url=pagerduty.url,
        public_url="https://sentinel.example.com",
    )
    config = load_routing()  # the shipped default routes
    incident = xid79_incident()
    alerts = alerts_for_incident(incident, peer_timeouts(2048))
    assert len(alerts) == 2048
    async with httpx.AsyncClient(timeout=5) as client:
        dispatcher = build_dispatcher(settings, sessions, client, config)
        async with unit_of_work(sessions) as s:
            await push_alerts(s, config, alerts, clock.now())
        for _ in range(60):  # one flush a second for a minute
            await dispatcher.flush(clock.now())
            clock.advance(1)
        assert len(slack.requests) == 1, slack.bodies()
        assert [e["event_action"] for e in pagerduty.bodies()] == ["trigger"]
        message = slack.bodies()[0]
        assert "faulty_gpu on node1377 GPU 3" in message["blocks"][0]["text"]["text"]
        assert "2047 muted" in str(message)
        cause_fp = fingerprint(alerts[0].labels)
        async with unit_of_work(sessions) as s:
            muted = dict(
                (
                    await s.execute(select(Alert.muted_by, func.count()).group_by(Alert.muted_by))
                ).all()
            )
        assert muted == {None: 1, f"inhibited_by:{cause_fp}": 2047}

        # The incident resolves: one resolved message, one PagerDuty resolve.
        incident.state = "resolved"
        incident.resolved_at = clock.now()
        async with unit_of_work(sessions) as s:
            await push_alerts(
                s, config, alerts_for_incident(incident, peer_timeouts(2048)), clock.now()
            )
        for _ in range(120):
            await dispatcher.flush(clock.now())
            clock.advance(1)
    assert len(slack.requests) == 2
    assert slack.bodies()[1]["text"].startswith("[RESOLVED] faulty_gpu on node1377")
    assert [e["event_action"] for e in pagerduty.bodies()] == ["trigger", "resolve"]
    assert len({e["dedup_key"] for e in pagerduty.bodies()}) == 1
    assert clock.now() - T0 >= timedelta(minutes=3)
