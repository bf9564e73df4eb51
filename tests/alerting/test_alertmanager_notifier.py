"""Sentinel's alerts handed to a site's own Alertmanager, the real binary, through its v2 API:
an incident's root-cause alert arrives with its labels, is posted again while it fires, and
ends when the incident is resolved."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerting.incident_builders import peer_timeouts, xid79_incident
from alerting.test_api import WEBHOOK_V4
from sentinel.alerting.config import ConfigError, parse_routing
from sentinel.alerting.incidents import alerts_for_incident
from sentinel.alerting.notifiers.alertmanager import (
    AlertmanagerAuth,
    AlertmanagerNotifier,
    CredentialsError,
    build_body,
)
from sentinel.alerting.notifiers.base import AlertView, Notification
from sentinel.alerting.service import push_alerts
from sentinel.alerting.settings import AlertingSettings
from sentinel.alerting.wiring import build_dispatcher
from sentinel.clock import VirtualClock
from sentinel.db.engine import unit_of_work
from sentinel.ingest.alertmanager import AmWebhook, event_rows
from tests.harness.prometheus import Alertmanager, PrometheusUnavailable, find_binaries

ROUTES = """
route:
  receiver: site-alertmanager
  group_by: [cluster, job, incident]
  group_wait: 0s
  group_interval: 5s
  repeat_interval: {repeat}
receivers:
  - name: site-alertmanager
    type: alertmanager
inhibit_rules:
  - source_matchers: ['role="cause"']
    target_matchers: ['role="symptom"']
    equal: [incident]
"""


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    if os.environ.get("SENTINEL_TEST_SKIP_PROMETHEUS") == "1":
        pytest.skip("SENTINEL_TEST_SKIP_PROMETHEUS=1")
    try:
        find_binaries()
    except PrometheusUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    am = Alertmanager(tmp_path_factory.mktemp("am")).start()
    yield am
    am.stop()


def _ours(am: Alertmanager, incident: str) -> list[dict[str, object]]:
    return [a for a in am.alerts() if a["labels"].get("incident") == incident]  # type: ignore[union-attr]


async def test_incident_alert_reaches_the_real_alertmanager_and_resolves_with_it(
    alertmanager: Alertmanager, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # Alertmanager judges endsAt by its own clock: the virtual one starts 10 minutes back so
    # that a resolution stamped by it is already past, and a firing alert's endsAt ahead.
    clock = VirtualClock(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10))
    settings = AlertingSettings(
        alertmanager_url=alertmanager.url,
        alertmanager_valid_for_s=900,
        public_url="https://sentinel.example.com",
    )
    config = parse_routing(ROUTES.format(repeat="2m"), "routes.yaml")
    incident = xid79_incident(n=uuid.uuid4().int >> 96)  # its own in the shared Alertmanager
    key = str(incident.id)
    alerts = alerts_for_incident(incident, peer_timeouts(8))

    async def flush_for(seconds: int) -> None:
        for _ in range(seconds):
            await dispatcher.flush(clock.now())
            clock.advance(1)

    async with httpx.AsyncClient(timeout=5) as client:
        dispatcher = build_dispatcher(settings, sessions, client, config)
        async with unit_of_work(sessions) as s:
            await push_alerts(s, config, alerts, clock.now())
        await flush_for(3)

        (arrived,) = _ours(alertmanager, key)  # the 8 symptoms are muted by their cause
        labels = arrived["labels"]
        assert labels == {
            "alertname": "SentinelIncident",
            "category": "faulty_gpu",
            "severity": "critical",
            "cluster": "rsc1",
            "job": incident.job_id,
            "host": "node1377",
            "gpu": "3",
            "incident": key,
            "scope": "host",
            "role": "cause",
            "sentinel_generated": "true",
        }
        assert arrived["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": []}
        annotations = arrived["annotations"]
        assert isinstance(annotations, dict)
        assert "NVRM: Xid (PCI:0000:9b:00): 79" in annotations["evidence"]
        assert annotations["incident_url"] == f"https://sentinel.example.com/incidents/{key}"
        assert arrived["generatorURL"] == annotations["incident_url"]
        first_end = datetime.fromisoformat(str(arrived["endsAt"]))

        # Still firing two minutes on: posted again (repeat_interval), valid for longer.
        await flush_for(125)
        (again,) = _ours(alertmanager, key)
        assert datetime.fromisoformat(str(again["endsAt"])) >= first_end + timedelta(minutes=2)

        # The incident is resolved: the alert ends in Alertmanager.
        incident.state = "resolved"
        incident.resolved_at = clock.now()
        async with unit_of_work(sessions) as s:
            await push_alerts(
                s, config, alerts_for_incident(incident, peer_timeouts(8)), clock.now()
            )
        await flush_for(10)
    assert _ours(alertmanager, key) == []


async def test_alertmanager_refusing_is_retried_and_a_bad_request_is_not(
    alertmanager: Alertmanager,
) -> None:
    now = datetime.now(UTC)
    good = AlertView("f1", {"alertname": "SentinelIncident"}, {}, now, None, None)
    bad = AlertView("f2", {"bad label": "x"}, {}, now, None, None)

    def group(alert: AlertView) -> Notification:
        return Notification(
            group_id=uuid.uuid4(),
            group_key="root:{}",
            receiver="site-alertmanager",
            kind="firing",
            group_labels={},
            firing=(alert,),
            resolved=(),
            at=now,
            public_url="http://sentinel",
        )

    async with httpx.AsyncClient(timeout=5) as client:
        ok = await AlertmanagerNotifier(
            client, alertmanager.url, valid_for=timedelta(minutes=5)
        ).notify(group(good))
        refused = await AlertmanagerNotifier(
            client, alertmanager.url, valid_for=timedelta(minutes=5)
        ).notify(group(bad))
        down = await AlertmanagerNotifier(
            client, "http://127.0.0.1:9", valid_for=timedelta(minutes=5)
        ).notify(group(good))
    assert ok.ok
    assert (refused.ok, refused.retryable) == (False, False)
    assert refused.error is not None and refused.error.startswith("HTTP 400")
    assert (down.ok, down.retryable) == (False, True)


def test_body_is_the_v2_postable_shape() -> None:
    at = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    firing = AlertView(
        "f",
        {"alertname": "SentinelIncident", "incident": "abc"},
        {"evidence": ["line 1", "line 2"], "cause_line": {"text": "x", "host": "n1"}},
        at - timedelta(minutes=1),
        None,
        None,
    )
    resolved = AlertView("g", {"alertname": "B"}, {}, at - timedelta(hours=1), at, None)
    group = Notification(
        group_id=uuid.uuid4(),
        group_key="root:{}",
        receiver="am",
        kind="firing",
        group_labels={},
        firing=(firing,),
        resolved=(resolved,),
        at=at,
        public_url="https://s.example/",
        send_resolved=False,
    )
    body = build_body(group, timedelta(minutes=15))
    assert body == [
        {
            "labels": {
                "alertname": "SentinelIncident",
                "incident": "abc",
                "sentinel_generated": "true",
            },
            "annotations": {
                "evidence": "line 1\nline 2",
                "cause_line": '{"host": "n1", "text": "x"}',
                "incident_url": "https://s.example/incidents/abc",
            },
            "startsAt": "2026-12-06T02:59:00Z",
            "endsAt": "2026-12-06T03:15:00Z",
            "generatorURL": "https://s.example/incidents/abc",
        },
        # Resolved alerts go to Alertmanager whatever send_resolved says: it resolves them.
        {
            "labels": {"alertname": "B", "sentinel_generated": "true"},
            "annotations": {},
            "startsAt": "2026-12-06T02:00:00Z",
            "endsAt": "2026-12-06T03:00:00Z",
            "generatorURL": "https://s.example/",
        },
    ]  # fmt: skip


def test_credentials_come_from_files(tmp_path: Path) -> None:
    basic = tmp_path / "basic"
    basic.write_text("sentinel:s3cret\n")
    token = tmp_path / "token"
    token.write_text("tok\n")
    assert AlertmanagerAuth.from_files(basic, None).headers() == {
        "Authorization": "Basic c2VudGluZWw6czNjcmV0"
    }
    assert AlertmanagerAuth.from_files(None, token).headers() == {"Authorization": "Bearer tok"}
    with pytest.raises(CredentialsError, match="one line user:password"):
        AlertmanagerAuth.from_files(token, None)
    with pytest.raises(CredentialsError, match="cannot read"):
        AlertmanagerAuth.from_files(None, tmp_path / "missing")


async def test_a_route_repeating_slower_than_alerts_stay_valid_is_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    settings = AlertingSettings(alertmanager_url="http://am:9093", alertmanager_valid_for_s=600)
    config = parse_routing(ROUTES.format(repeat="4h"), "routes.yaml")
    async with httpx.AsyncClient() as client:
        with pytest.raises(ConfigError, match="set a shorter repeat_interval"):
            build_dispatcher(settings, sessions, client, config)


def test_our_own_alerts_coming_back_from_alertmanager_are_not_evidence() -> None:
    """A site Alertmanager that sends everything to Sentinel's intake sends ours back too."""
    theirs = WEBHOOK_V4["alerts"][0]  # type: ignore[index]
    ours = {
        **theirs,
        "labels": {"alertname": "SentinelIncident", "host": "node7", "sentinel_generated": "true"},
        "fingerprint": "0123456789abcdef",
    }
    payload = AmWebhook.model_validate({**WEBHOOK_V4, "alerts": [theirs, ours]})
    rows = event_rows(payload, datetime.now(UTC))
    assert [r["payload"]["labels"]["alertname"] for r in rows] == ["GpuXidError"]
