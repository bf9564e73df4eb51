"""The alert API: lists, acknowledge, silences, Alertmanager's webhook; every write audited."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import auth
from sqlalchemy import select

from alerting.timeline import alert
from sentinel.alerting.config import load_routing
from sentinel.alerting.service import push_alerts
from sentinel.db.engine import unit_of_work
from sentinel.db.models import AuditEntry, Event
from sentinel.ingest.alertmanager import host_of
from sentinel.runtime.context import AppContext

EXAMPLE = Path("/work/shared/infra/examples/alertmanager-webhook-v4.json")
WEBHOOK_V4 = {
    "receiver": "sentinel-webhook",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "GpuXidError",
                "Hostname": "node7",
                "gpu": "3",
                "xid": "79",
                "severity": "critical",
                "instance": "127.0.0.1:19100",
            },
            "annotations": {"summary": "GPU Xid 79 on node7"},
            "startsAt": "2026-11-28T06:35:27.925Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://vm:19090/graph",
            "fingerprint": "50280ed23d57545b",
        }
    ],
    "groupLabels": {"alertname": "GpuXidError"},
    "commonLabels": {"alertname": "GpuXidError"},
    "commonAnnotations": {},
    "externalURL": "http://vm:19093",
    "version": "4",
    "groupKey": '{}:{alertname="GpuXidError"}',
    "truncatedAlerts": 0,
}


def _ctx(client: httpx.AsyncClient) -> AppContext:
    return client.app.state.ctx  # type: ignore[attr-defined,no-any-return]


async def _audit(client: httpx.AsyncClient) -> list[tuple[str, str, str]]:
    async with unit_of_work(_ctx(client).sessions) as s:
        rows = (await s.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
    return [(r.actor, r.action, r.target.split(":")[0]) for r in rows]


async def test_alertmanager_webhook_stores_events_once(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    r = await app_client.post(
        "/api/v1/alertmanager", json=WEBHOOK_V4, headers=auth(tokens["agent"])
    )
    assert r.status_code == 202, r.text
    assert r.json() == {"alerts": 1, "new_events": 1}
    # Alertmanager repeats the group later: the same alert is not stored twice.
    again = await app_client.post(
        "/api/v1/alertmanager", json=WEBHOOK_V4, headers=auth(tokens["agent"])
    )
    assert again.json() == {"alerts": 1, "new_events": 0}
    async with unit_of_work(_ctx(app_client).sessions) as s:
        (event,) = (await s.scalars(select(Event))).all()
    assert (event.kind, event.host_id, event.gpu_index, event.critical) == (
        "alertmanager",
        "node7",
        3,
        True,
    )
    assert event.payload["labels"]["xid"] == "79"
    assert event.payload["fingerprint"] == "50280ed23d57545b"
    assert await _audit(app_client) == [("agent", "alertmanager.receive", "alertmanager")] * 2


@pytest.mark.skipif(not EXAMPLE.exists(), reason="the recorded example is not on this machine")
async def test_recorded_alertmanager_payload_is_accepted(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    r = await app_client.post(
        "/api/v1/alertmanager", content=EXAMPLE.read_bytes(), headers=auth(tokens["agent"])
    )
    assert r.status_code == 202, r.text
    async with unit_of_work(_ctx(app_client).sessions) as s:
        (event,) = (await s.scalars(select(Event))).all()
    assert event.host_id == "node1"  # the node label names the machine; instance is the exporter
    assert host_of({"instance": "10.0.0.5:9400"}) == "10.0.0.5"  # the fallback, port dropped


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.update(version="3"), "version"),
        (lambda p: p["alerts"][0].pop("startsAt"), "alerts[0].startsAt"),
        (lambda p: p["alerts"][0].update(status="pending"), "alerts[0].status"),
        (lambda p: p.pop("groupKey"), "groupKey"),
    ],
)
async def test_bad_alertmanager_payload_names_the_field(
    app_client: httpx.AsyncClient, tokens: dict[str, str], mutate: object, field: str
) -> None:
    payload = json.loads(json.dumps(WEBHOOK_V4))
    mutate(payload)  # type: ignore[operator]
    r = await app_client.post("/api/v1/alertmanager", json=payload, headers=auth(tokens["agent"]))
    assert r.status_code == 422
    assert r.json()["detail"].startswith(field), r.json()
    bad = await app_client.post(
        "/api/v1/alertmanager", content=b"{not json", headers=auth(tokens["agent"])
    )
    assert bad.status_code == 400


async def test_silences_are_created_listed_and_expired(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    op, viewer = auth(tokens["operator"]), auth(tokens["viewer"])
    r = await app_client.post(
        "/api/v1/silences",
        json={
            "matchers": [
                'host=~"node1[0-9]"',
                {"name": "category", "op": "!=", "value": "planned"},
            ],
            "comment": "swapping the IB cables of rack 1",
            "duration": "2h",
        },
        headers=op,
    )
    assert r.status_code == 201, r.text
    silence = r.json()
    assert silence["author"] == "operator" and silence["active"] is True
    assert silence["matchers"][0] == {"name": "host", "op": "=~", "value": "node1[0-9]"}
    listed = (await app_client.get("/api/v1/silences", headers=viewer)).json()
    assert [s["id"] for s in listed] == [silence["id"]]
    gone = await app_client.delete(f"/api/v1/silences/{silence['id']}", headers=op)
    assert gone.status_code == 200 and gone.json()["active"] is False
    missing = await app_client.delete(f"/api/v1/silences/{uuid.uuid4()}", headers=op)
    assert missing.status_code == 404
    for body, word in [
        ({"matchers": ['host=~"("'], "comment": "x", "duration": "1h"}, "regular expression"),
        ({"matchers": ["host=a"], "comment": "x"}, "ends_at"),
        ({"matchers": [], "comment": "x", "duration": "1h"}, "matchers"),
    ]:
        bad = await app_client.post("/api/v1/silences", json=body, headers=op)
        assert bad.status_code == 422 and word in bad.text, bad.text
    assert await _audit(app_client) == [
        ("operator", "silence.create", "silence"),
        ("operator", "silence.expire", "silence"),
    ]


async def test_groups_are_listed_and_acknowledged(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    ctx = _ctx(app_client)
    config = load_routing()
    async with unit_of_work(ctx.sessions) as s:
        await push_alerts(
            s, config, [alert("A", severity="critical", incident="i1")], ctx.clock.now()
        )
    viewer, op = auth(tokens["viewer"]), auth(tokens["operator"])
    alerts = (await app_client.get("/api/v1/alerts?state=firing", headers=viewer)).json()
    assert [a["labels"]["alertname"] for a in alerts] == ["A"]
    groups = (await app_client.get("/api/v1/alert-groups", headers=viewer)).json()
    assert sorted(g["receiver"] for g in groups) == ["pagerduty", "slack"]
    target = groups[0]["id"]
    r = await app_client.post(
        f"/api/v1/alert-groups/{target}/ack", headers=op, json={"comment": "on it"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["acked_by"] == "operator" and r.json()["acked_at"] is not None
    assert (
        await app_client.post(f"/api/v1/alert-groups/{uuid.uuid4()}/ack", headers=op)
    ).status_code == 404
    assert await _audit(app_client) == [("operator", "alert_group.ack", "alert_group")]


def _pd_v3(event_type: str, incident_key: str, who: str = "Jane Doe") -> dict[str, object]:
    """A PagerDuty V3 webhook as a subscription posts it (the fields read, and some others)."""
    return {
        "event": {
            "id": "01DEN3XX9QWH6FL4CGRE7PTV3W",
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": "2026-12-06T03:02:44.000Z",
            "agent": {"id": "PLH1HKV", "summary": who, "type": "user_reference"},
            "client": None,
            "data": {
                "id": "Q0R1EXAMPLE",
                "type": "incident",
                "number": 42,
                "status": "acknowledged",
                "incident_key": incident_key,
                "title": "faulty_gpu on node-0005",
                "service": {"id": "PSERVICE", "type": "service_reference"},
            },
        }
    }


async def test_an_acknowledgement_in_pagerduty_acknowledges_the_incident_here(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    from sentinel.alerting.notifiers.base import dedup_key

    ctx = _ctx(app_client)
    async with unit_of_work(ctx.sessions) as s:
        await push_alerts(
            s,
            load_routing(),
            [alert("A", severity="critical", incident="i1"), alert("B", incident="i2")],
            ctx.clock.now(),
        )
    op = auth(tokens["operator"])
    groups = (await app_client.get("/api/v1/alert-groups", headers=op)).json()
    paged = next(
        g for g in groups if g["receiver"] == "pagerduty" and g["labels"]["incident"] == "i1"
    )
    key = dedup_key(paged["group_key"], "pagerduty")
    # Other events, and incidents Sentinel did not raise, are answered and ignored.
    for body in (_pd_v3("incident.triggered", key), _pd_v3("incident.acknowledged", "other")):
        r = await app_client.post("/api/v1/pagerduty", headers=op, json=body)
        assert r.status_code == 200 and r.json()["acknowledged"] == [], r.text
    r = await app_client.post(
        "/api/v1/pagerduty",
        headers=auth(tokens["viewer"]),
        json=_pd_v3("incident.acknowledged", key),
    )
    assert r.status_code == 403
    r = await app_client.post(
        "/api/v1/pagerduty", headers=op, json=_pd_v3("incident.acknowledged", key)
    )
    assert r.status_code == 200 and sorted(r.json()["acknowledged"]) == ["pagerduty", "slack"]
    groups = (await app_client.get("/api/v1/alert-groups", headers=op)).json()
    acked = {(g["labels"]["incident"], g["receiver"]): g["acked_by"] for g in groups}
    assert acked[("i1", "pagerduty")] == acked[("i1", "slack")] == "pagerduty:Jane Doe"
    assert all(by is None for (incident, _), by in acked.items() if incident == "i2")
    # Said again (PagerDuty retries): nothing left to acknowledge, still a 200.
    r = await app_client.post(
        "/api/v1/pagerduty", headers=op, json=_pd_v3("incident.acknowledged", key)
    )
    assert r.status_code == 200 and r.json()["acknowledged"] == []
    assert await _audit(app_client) == [("operator", "alert_group.ack", "alert_group")]
    r = await app_client.post("/api/v1/pagerduty", headers=op, json={"event": {"data": {}}})
    assert r.status_code == 422
