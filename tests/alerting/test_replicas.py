"""Two replicas (two engines on one database) flushing the same groups: each sent once."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from alerting.incident_builders import peer_timeouts, xid79_incident
from sentinel.alerting.config import load_routing
from sentinel.alerting.incidents import alerts_for_incident
from sentinel.alerting.notifiers.fakes import FakeReceiver
from sentinel.alerting.service import push_alerts
from sentinel.alerting.settings import AlertingSettings
from sentinel.alerting.wiring import build_dispatcher
from sentinel.clock import VirtualClock
from sentinel.db.engine import make_engine, make_sessionmaker, unit_of_work
from sentinel.db.models import NotificationLog

GROUPS = 12


async def test_two_replicas_send_each_notification_once(
    db_url: str, clock: VirtualClock, slack: FakeReceiver, pagerduty: FakeReceiver
) -> None:
    settings = AlertingSettings(
        slack_webhook_url=slack.url,
        pagerduty_routing_key="R" * 32,
        pagerduty_url=pagerduty.url,
    )
    config = load_routing()
    engines = [make_engine(db_url, pool_size=5) for _ in range(2)]
    replicas = [make_sessionmaker(e) for e in engines]
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            dispatchers = [build_dispatcher(settings, s, client, config) for s in replicas]
            assert dispatchers[0].identity != dispatchers[1].identity
            incidents = [xid79_incident(n, cluster=f"c{n}") for n in range(1, GROUPS + 1)]
            async with unit_of_work(replicas[0]) as s:
                for incident in incidents:
                    await push_alerts(
                        s, config, alerts_for_incident(incident, peer_timeouts(16)), clock.now()
                    )
            busy = 0
            for _ in range(75):  # both replicas flush every second, at the same moment
                reports = await asyncio.gather(*(d.flush(clock.now()) for d in dispatchers))
                busy += sum(r.busy for r in reports)
                clock.advance(1)
            assert busy > 0  # they did compete for the same groups
            assert len(slack.requests) == GROUPS
            assert len(pagerduty.requests) == GROUPS
            # Resolve them all: again once each.
            async with unit_of_work(replicas[1]) as s:
                for incident in incidents:
                    incident.state, incident.resolved_at = "resolved", clock.now()
                    await push_alerts(s, config, alerts_for_incident(incident, []), clock.now())
            for _ in range(75):
                await asyncio.gather(*(d.flush(clock.now()) for d in dispatchers))
                clock.advance(1)
        assert len(slack.requests) == 2 * GROUPS
        actions = [e["event_action"] for e in pagerduty.bodies()]
        assert sorted(actions) == ["resolve"] * GROUPS + ["trigger"] * GROUPS
        async with unit_of_work(replicas[0]) as s:
            sent = await s.scalar(
                select(func.count())
                .select_from(NotificationLog)
                .where(NotificationLog.status == "sent")
            )
        assert sent == 4 * GROUPS
    finally:
        for engine in engines:
            await engine.dispose()
