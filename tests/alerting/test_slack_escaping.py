"""Slack text is escaped: a training log's exception text and Alertmanager label values can
mention nobody, link nowhere and stay within Block Kit's limits."""

from __future__ import annotations

import copy
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from builders import T0
from conftest import auth

from sentinel.alerting.notifiers.base import AlertView, Notification
from sentinel.alerting.notifiers.fakes import FakeReceiver, check_slack_message
from sentinel.alerting.notifiers.slack import HEADER_MAX, SlackNotifier, build_message

INJECT = "<!channel> <http://evil.example|click here> & <@U123>"
VISIBLE = "&lt;!channel&gt; &lt;http://evil.example|click here&gt; &amp; &lt;@U123&gt;"
INCIDENT = uuid.UUID("3f0c4a52-9d7e-4b1e-8a40-5a8f2b6c1d77")
TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/workspace/train.py", line 412, in <module>',
    f"RuntimeError: {INJECT}",
]


def _view(labels: dict[str, str], annotations: dict[str, Any]) -> AlertView:
    return AlertView(
        fingerprint=hashlib.sha256(repr(labels).encode()).hexdigest()[:16],
        labels=labels,
        annotations=annotations,
        starts_at=T0,
        ends_at=None,
        incident_id=INCIDENT,
    )


def _group(*firing: AlertView, acked_by: str | None = None) -> Notification:
    return Notification(
        group_id=uuid.uuid4(),
        group_key=f'root/0:{{job="{INJECT}"}}',
        receiver="oncall",
        kind="acknowledged" if acked_by else "firing",
        group_labels={"job": INJECT},
        firing=firing,
        resolved=(),
        at=T0,
        public_url="https://sentinel.example.com",
        acked_by=acked_by,
    )


def _texts(node: Any) -> Iterator[str]:
    """Every text Slack reads in a message: the fallback and each block's text objects."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                yield value
            else:
                yield from _texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item)


def _assert_inert(msg: dict[str, Any]) -> str:
    texts = list(_texts(msg))
    assert texts
    for text in texts:
        for markup in ("<!", "<@", "<http://evil", "<#"):
            assert markup not in text, (markup, text)
    return "\n".join(texts)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=2.0) as c:
        yield c


async def test_a_traceback_line_reaches_slack_inert_and_visible(
    slack: FakeReceiver, client: httpx.AsyncClient
) -> None:
    cause = _view(
        {"alertname": "SentinelIncident", "category": "software_bug", "host": "node3"},
        {"summary": f"RuntimeError: {INJECT}", "evidence": TRACEBACK, "decision": INJECT},
    )
    result = await SlackNotifier(client, slack.url).notify(_group(cause))
    assert result.ok, slack.bodies()
    (msg,) = slack.bodies()
    assert check_slack_message(msg) == []
    text = _assert_inert(msg)
    assert f"RuntimeError: {VISIBLE}" in text  # the summary, and the evidence's code block
    assert f"*Decision taken*\n{VISIBLE}" in text
    assert VISIBLE in msg["text"]
    # Our own link to the incident is the one link left.
    assert f"<https://sentinel.example.com/incidents/{INCIDENT}|" in text


def test_alertmanager_label_values_reach_slack_inert() -> None:
    labels = {
        "alertname": "GpuXidError",
        "category": INJECT,
        "host": INJECT,
        "gpu": INJECT,
        "job": INJECT,
        "cluster": INJECT,
        "severity": INJECT,
    }
    cause = _view(labels, {"summary": "Xid 79"})
    other = _view({**labels, "alertname": "Other"}, {})
    msg = build_message(_group(cause, other))
    text = _assert_inert(msg)
    assert f"*Culprit*\n{VISIBLE}" in text and f"*Job*\n{VISIBLE}" in text
    assert msg["blocks"][0]["text"]["type"] == "plain_text"
    assert "&lt;!channel&gt;" in msg["blocks"][0]["text"]["text"]
    assert "&lt;!channel&gt;" in msg["text"]

    acked = build_message(_group(cause, acked_by=INJECT))
    assert f"Acknowledged by *{VISIBLE}*" in _assert_inert(acked)


def test_a_long_header_is_truncated_without_cutting_an_entity() -> None:
    cause = _view({"alertname": "A", "category": "x" * 100 + "&" * 40}, {"summary": "s"})
    msg = build_message(_group(cause))
    header = msg["blocks"][0]["text"]["text"]
    assert len(header) <= HEADER_MAX and header.endswith("…")
    assert "&amp;" in header and header.count("&") == header.count("&amp;")
    assert check_slack_message(msg) == []


WEBHOOK = {
    "version": "4",
    "receiver": "sentinel",
    "status": "firing",
    "groupKey": "{}:{}",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "GpuXidError", "Hostname": "node7", "job": INJECT},
            "annotations": {"summary": INJECT},
            "startsAt": "2026-12-01T00:00:00Z",
            "fingerprint": "abc123",
        }
    ],
}


async def test_alertmanager_labels_are_validated_at_the_api(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    async def post(payload: dict[str, Any]) -> httpx.Response:
        return await app_client.post(
            "/api/v1/alertmanager", json=payload, headers=auth(tokens["agent"])
        )

    r = await post(WEBHOOK)  # any value is data, once escaped where it is shown
    assert r.status_code == 202, r.text

    bad_name = copy.deepcopy(WEBHOOK)
    bad_name["alerts"][0]["labels"]["bad-name"] = "x"  # type: ignore[index]
    r = await post(bad_name)
    assert r.status_code == 422 and "bad-name" in r.text

    too_long = copy.deepcopy(WEBHOOK)
    too_long["alerts"][0]["labels"]["job"] = "j" * 5000  # type: ignore[index]
    r = await post(too_long)
    assert r.status_code == 422 and "'job'" in r.text
