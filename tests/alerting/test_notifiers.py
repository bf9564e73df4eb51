"""Slack, PagerDuty and webhook payloads against local receivers that check the documented
formats; failures (500, timeout, 429 with Retry-After, 400) and what the sender does next."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from builders import T0
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerting.timeline import Timeline, alert, sent
from sentinel.alerting.notifiers.base import AlertView, Notification
from sentinel.alerting.notifiers.fakes import (
    FakeReceiver,
    Reply,
    check_pagerduty_event,
    check_slack_message,
)
from sentinel.alerting.notifiers.log import LogNotifier
from sentinel.alerting.notifiers.pagerduty import PagerDutyNotifier, pd_severity
from sentinel.alerting.notifiers.slack import SlackNotifier, build_message
from sentinel.alerting.notifiers.webhook import WebhookNotifier, verify
from sentinel.alerting.settings import RetryPolicy
from sentinel.clock import VirtualClock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import NotificationLog

INCIDENT = uuid.UUID("3f0c4a52-9d7e-4b1e-8a40-5a8f2b6c1d77")


def _view(name: str = "SentinelIncident", **labels: str) -> AlertView:
    return AlertView(
        fingerprint=hashlib.sha256(name.encode()).hexdigest()[:16],
        labels={"alertname": name, **labels},
        annotations={
            "summary": "GPU 3 on node1377 fell off the bus (Xid 79)",
            "evidence": [
                f"NVRM: Xid (PCI:0000:{i:02x}:00): 79, GPU has fallen off the bus" for i in range(3)
            ],
            "decision": "restart_from_checkpoint (done), exclude node1377",
        },
        starts_at=T0,
        ends_at=None,
        incident_id=INCIDENT,
    )


CAUSE = _view(
    category="faulty_gpu",
    severity="critical",
    host="node1377",
    gpu="3",
    job="llama-405b",
    cluster="rsc1",
    role="cause",
    incident=str(INCIDENT),
)


def _group(kind: str = "firing", *firing: AlertView, **extra: object) -> Notification:
    return Notification(
        group_id=uuid.uuid4(),
        group_key='root/0:{incident="x"}',
        receiver="oncall",
        kind=kind,  # type: ignore[arg-type]
        group_labels={"incident": str(INCIDENT)},
        firing=firing or (CAUSE,),
        resolved=(),
        at=T0,
        public_url="https://sentinel.example.com",
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=2.0) as c:
        yield c


async def test_slack_message_is_actionable_block_kit(
    slack: FakeReceiver, client: httpx.AsyncClient
) -> None:
    result = await SlackNotifier(client, slack.url).notify(_group(muted=2047))
    assert result.ok, slack.bodies()
    (msg,) = slack.bodies()
    assert check_slack_message(msg) == []
    text = str(msg)
    assert msg["blocks"][0]["type"] == "header"
    assert "faulty_gpu on node1377 GPU 3 (job llama-405b)" in msg["blocks"][0]["text"]["text"]
    for needle in ("*Category*\\nfaulty_gpu", "node1377 / GPU 3", "llama-405b", "2047 muted"):
        assert needle in text.replace("\n", "\\n")
    assert "```\nNVRM: Xid (PCI:0000:00:00): 79" in text.replace("\\n", "\n")
    assert "restart_from_checkpoint (done), exclude node1377" in text
    assert f"https://sentinel.example.com/incidents/{INCIDENT}" in text
    assert msg["text"].startswith("[FIRING] faulty_gpu on node1377 GPU 3")


def test_slack_message_stays_within_block_kit_limits_whatever_the_input() -> None:
    huge = AlertView(
        fingerprint="f" * 16,
        labels={**CAUSE.labels, "host": "h" * 400},
        annotations={
            "summary": "s" * 5000,
            "evidence": ["x" * 500 for _ in range(5000)],
            "decision": "d" * 4000,
        },
        starts_at=T0,
        ends_at=None,
        incident_id=INCIDENT,
    )
    others = tuple(_view(f"Other{i}", host=f"n{i}", detail="y" * 300) for i in range(200))
    msg = build_message(_group("firing", huge, *others))
    assert check_slack_message(msg) == []
    evidence = next(b for b in msg["blocks"] if "Evidence" in b.get("text", {}).get("text", ""))
    assert "more lines" in evidence["text"]["text"]
    assert evidence["text"]["text"].endswith("```")


async def test_pagerduty_trigger_acknowledge_resolve(
    pagerduty: FakeReceiver, client: httpx.AsyncClient
) -> None:
    notifier = PagerDutyNotifier(client, "R" * 32, pagerduty.url)
    group = _group()
    for kind in ("firing", "acknowledged", "resolved"):
        result = await notifier.notify(_group(kind) if kind != "firing" else group)
        assert result.ok, pagerduty.bodies()
    trigger, ack, resolve = pagerduty.bodies()
    for event in (trigger, ack, resolve):
        assert check_pagerduty_event(event) == []
        assert event["dedup_key"] == group.dedup_key  # one PagerDuty alert per group
        assert event["routing_key"] == "R" * 32
    assert [e["event_action"] for e in (trigger, ack, resolve)] == [
        "trigger",
        "acknowledge",
        "resolve",
    ]
    payload = trigger["payload"]
    assert payload["severity"] == "critical"
    assert payload["source"] == "node1377"
    assert payload["component"] == "GPU 3"
    assert payload["group"] == "llama-405b"
    assert payload["class"] == "faulty_gpu"
    assert payload["custom_details"]["evidence"][0].startswith("NVRM: Xid")
    assert trigger["links"] == [
        {"href": f"https://sentinel.example.com/incidents/{INCIDENT}", "text": "Sentinel incident"}
    ]


def test_pagerduty_severity_words() -> None:
    assert [
        pd_severity(s) for s in ("critical", "ERROR", "page", "warning", "info", "odd", None)
    ] == [
        "critical",
        "error",
        "critical",
        "warning",
        "info",
        "warning",
        "warning",
    ]


async def test_webhook_is_signed_over_timestamp_and_body(client: httpx.AsyncClient) -> None:
    receiver = FakeReceiver().start()
    try:
        result = await WebhookNotifier(client, receiver.url, "s3cret").notify(_group())
    finally:
        receiver.stop()
    assert result.ok
    (request,) = receiver.requests
    ts = request.headers["X-Sentinel-Timestamp"]
    assert ts == str(int(T0.timestamp()))
    expected = hmac.new(b"s3cret", ts.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Sentinel-Signature"] == f"sha256={expected}"
    assert verify("s3cret", ts, request.body, request.headers["X-Sentinel-Signature"])
    assert not verify("other", ts, request.body, request.headers["X-Sentinel-Signature"])
    body = request.json()
    assert body["status"] == "firing" and body["alerts"][0]["labels"]["host"] == "node1377"


# --- failures, on the virtual clock ------------------------------------------------------


async def _timeline(
    sessions: async_sessionmaker[AsyncSession],
    clock: VirtualClock,
    slack: FakeReceiver,
    timeout: float,
) -> tuple[Timeline, httpx.AsyncClient]:
    client = httpx.AsyncClient(timeout=timeout)
    tl = Timeline(
        sessions,
        clock,
        notifiers={"team": SlackNotifier(client, slack.url), "pager": LogNotifier()},
        retry=RetryPolicy(initial_backoff_s=5, max_backoff_s=60, max_attempts=4),
    )
    return tl, client


async def _log(tl: Timeline) -> list[tuple[str, int, str | None]]:
    async with unit_of_work(tl.sessions) as s:
        rows = (await s.scalars(select(NotificationLog).order_by(NotificationLog.id))).all()
    return [(r.status, r.attempts, (r.error or "")[:12] or None) for r in rows]


@pytest.mark.parametrize(
    ("reply", "retry_at"),
    [
        pytest.param(Reply(500, "oops"), 15, id="500-backoff-5s"),
        pytest.param(Reply(429, "slow down", {"Retry-After": "17"}), 27, id="429-retry-after"),
        pytest.param(Reply(200, "ok", delay_s=1.0), 15, id="timeout-backoff-5s"),
    ],
)
async def test_retryable_failures_are_retried(
    sessions: async_sessionmaker[AsyncSession],
    clock: VirtualClock,
    slack: FakeReceiver,
    reply: Reply,
    retry_at: float,
) -> None:
    tl, client = await _timeline(sessions, clock, slack, timeout=0.3)
    slack.script.append(reply)
    async with client:
        await tl.push(alert("A"))
        await tl.run_until(retry_at - 1)
        assert len(slack.requests) == 1 and tl.log == []
        await tl.run_until(retry_at + 20)
    assert len(slack.requests) == 2
    assert tl.log == [sent(retry_at, "team", "firing", "A")]
    statuses = [s for s, _, _ in await _log(tl)]
    assert statuses == ["retrying", "sent"]


async def test_repeated_5xx_backs_off_then_gives_up(
    sessions: async_sessionmaker[AsyncSession], clock: VirtualClock, slack: FakeReceiver
) -> None:
    tl, client = await _timeline(sessions, clock, slack, timeout=1.0)
    slack.script.extend([Reply(503, "down")] * 4)
    async with client:
        await tl.push(alert("A"))
        await tl.run_until(100)
    # Attempts at 10, 15 (+5), 25 (+10), 45 (+20); the 4th failure gives up on this content.
    assert [(s, n) for s, n, _ in await _log(tl)] == [
        ("retrying", 1),
        ("retrying", 2),
        ("retrying", 3),
        ("failed", 4),
    ]
    assert len(slack.requests) == 4 and tl.log == []


async def test_rejected_payload_is_not_retried(
    sessions: async_sessionmaker[AsyncSession], clock: VirtualClock, slack: FakeReceiver
) -> None:
    tl, client = await _timeline(sessions, clock, slack, timeout=1.0)
    slack.script.append(Reply(400, "invalid_blocks"))
    async with client:
        await tl.push(alert("A"))
        await tl.run_until(120)
        assert len(slack.requests) == 1
        assert await _log(tl) == [("failed", 1, "HTTP 400: in")]
        # New content is tried at once on the next tick.
        await tl.push(alert("B", at=120))
        await tl.run_until(135)
    assert len(slack.requests) == 2
    assert tl.log == [sent(130, "team", "firing", "A", "B")]


def test_retry_policy_backoff() -> None:
    policy = RetryPolicy(initial_backoff_s=5, max_backoff_s=60, max_attempts=9)
    assert [policy.backoff_s(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert timedelta(seconds=policy.backoff_s(1)) == timedelta(seconds=5)


@pytest.mark.parametrize("width", [1, 7, 80, 2990, 2999, 3000, 6000])
@pytest.mark.parametrize("count", [1, 2, 50, 4000])
def test_evidence_code_block_always_closes(width: int, count: int) -> None:
    view = AlertView(
        fingerprint="e" * 16,
        labels=dict(CAUSE.labels),
        annotations={"evidence": ["```" + "z" * width for _ in range(count)]},
        starts_at=T0,
        ends_at=None,
        incident_id=INCIDENT,
    )
    msg = build_message(_group("firing", view))
    assert check_slack_message(msg) == []
    (evidence,) = [b for b in msg["blocks"] if "*Evidence*" in b.get("text", {}).get("text", "")]
    text = evidence["text"]["text"]
    assert text.endswith("\n```") and text.count("```") == 2, text[-80:]


@pytest.mark.parametrize("integration", ["slack", "pagerduty", "webhook"])
@pytest.mark.parametrize(
    ("reply", "retryable", "retry_after"),
    [
        pytest.param(Reply(500, "oops"), True, None, id="500"),
        pytest.param(Reply(503, "", {"Retry-After": "30"}), True, 30.0, id="503-retry-after"),
        pytest.param(Reply(429, "", {"Retry-After": "17"}), True, 17.0, id="429"),
        pytest.param(
            Reply(
                429,
                "",
                {
                    "Retry-After": "Sat, 28 Nov 2026 03:01:00 GMT",
                    "Date": "Sat, 28 Nov 2026 03:00:20 GMT",
                },
            ),
            True,
            40.0,
            id="429-http-date",
        ),
        pytest.param(Reply(200, "ok", delay_s=1.0), True, None, id="timeout"),
        pytest.param(Reply(400, "invalid_payload"), False, None, id="400"),
        pytest.param(Reply(404, "no_service"), False, None, id="404"),
    ],
)
async def test_every_integration_says_whether_to_retry(
    integration: str, reply: Reply, retryable: bool, retry_after: float | None
) -> None:
    receiver = FakeReceiver().start()
    receiver.script.append(reply)
    try:
        async with httpx.AsyncClient(timeout=0.3) as c:
            notifier = {
                "slack": lambda: SlackNotifier(c, receiver.url),
                "pagerduty": lambda: PagerDutyNotifier(c, "R" * 32, receiver.url),
                "webhook": lambda: WebhookNotifier(c, receiver.url, "s"),
            }[integration]()
            result = await notifier.notify(_group())
    finally:
        receiver.stop()
    assert not result.ok and result.error
    assert (result.retryable, result.retry_after) == (retryable, retry_after)


async def test_unreachable_receiver_is_retryable() -> None:
    receiver = FakeReceiver().start()
    url = receiver.url
    receiver.stop()  # nothing listens there now
    async with httpx.AsyncClient(timeout=1) as c:
        result = await SlackNotifier(c, url).notify(_group())
    assert not result.ok and result.retryable and "transport" in (result.error or "")
