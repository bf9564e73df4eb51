"""No secret reaches the service's log: not the Slack webhook URL, not a key, not a token.

Issue 14, finding 10: the Slack webhook URL (a credential) was logged at INFO on every post,
by httpx's request log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from builders import batch, xid

from sentinel.alerting.notifiers.fakes import FakeReceiver, Reply
from sentinel.logs import RedactingFormatter
from tests.harness.service import LiveService

ROUTES = """
route:
  receiver: slack
  group_by: [incident]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - receiver: pagerduty
      continue: true
    - receiver: hook
      continue: true
    - receiver: slack
receivers:
  - {name: slack, type: slack}
  - {name: pagerduty, type: pagerduty}
  - {name: hook, type: webhook}
"""


@pytest.fixture
def receiver() -> Iterator[FakeReceiver]:
    r = FakeReceiver(ok=Reply(202, '{"status": "success"}')).start()
    yield r
    r.stop()


@pytest.mark.slow
def test_the_service_log_holds_no_configured_secret(tmp_path: Path, receiver: FakeReceiver) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    secrets = {
        "slack_path": "T0SECRET1/B0SECRET2/slackWebhookSecret0123456789",
        "pagerduty_key": "pagerdutyRoutingKey0123456789abcd",
        "alert_webhook_secret": "alertWebhookHmacSecret0123456789",
        "alert_webhook_password": "alertWebhookUrlPassword01",
        "scheduler_secret": "schedulerHmacSecret0123456789",
        "scheduler_password": "schedulerUrlPassword01",
    }
    base = receiver.url.removeprefix("http://")
    service = LiveService(
        database_url=f"sqlite:///{tmp_path / 'service' / 'sentinel.db'}",
        data_dir=tmp_path / "service",
        extra_env={
            "SENTINEL_ALERTING__ROUTES_FILE": str(routes),
            "SENTINEL_ALERTING__SLACK_WEBHOOK_URL": (
                f"{receiver.url}services/{secrets['slack_path']}"
            ),
            "SENTINEL_ALERTING__PAGERDUTY_ROUTING_KEY": secrets["pagerduty_key"],
            "SENTINEL_ALERTING__PAGERDUTY_URL": f"{receiver.url}v2/enqueue",
            "SENTINEL_ALERTING__WEBHOOK_URL": (
                f"http://sentinel:{secrets['alert_webhook_password']}@{base}hook"
            ),
            "SENTINEL_ALERTING__WEBHOOK_SECRET": secrets["alert_webhook_secret"],
            "SENTINEL_SCHEDULER__KIND": "webhook",
            "SENTINEL_SCHEDULER__WEBHOOK__URL": (
                f"http://sentinel:{secrets['scheduler_password']}@{base}scheduler"
            ),
            "SENTINEL_SCHEDULER__WEBHOOK__SECRET": secrets["scheduler_secret"],
            "SENTINEL_SCHEDULER__WEBHOOK__RETRIES": "0",
        },
    )
    service.start()
    try:
        r = httpx.post(
            f"{service.url}/api/v1/reports",
            json=batch(host="h001", observations=[xid(79, gpu=3, when=datetime.now(UTC))]),
            headers=service.headers("agent"),
        )
        assert r.status_code == 202, r.text
        # A failed login and a bad token are logged events too.
        httpx.get(f"{service.url}/api/v1/hosts", headers={"Authorization": "Bearer nope-nope"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            paths = {req.path for req in receiver.requests}
            if {"/v2/enqueue", "/hook"} <= paths and any(p.startswith("/services/") for p in paths):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the alerts were not all posted: {[q.path for q in receiver.requests]}")
    finally:
        service.stop()
    log = (tmp_path / "service" / "service.log").read_text()
    assert "sentinel" in log  # the service did log
    configured = [
        *secrets.values(),
        service.agent_token,
        service.operator_token,
        service.viewer_token,
    ]
    leaked = [s for s in configured if s in log]
    assert leaked == [], f"secrets in the log: {leaked}\n{log[-3000:]}"


def test_the_formatter_redacts_configured_secrets_and_url_credentials() -> None:
    formatter = RedactingFormatter("%(message)s", secrets=["s3cret-value-0123"])
    record = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        'HTTP Request: POST %s "HTTP/1.1 200 OK" key=%s',
        ("https://user:pa55word@hooks.example.com/services/T/B/X", "s3cret-value-0123"),
        None,
    )
    text = formatter.format(record)
    assert "pa55word" not in text and "s3cret-value-0123" not in text
    assert "hooks.example.com" in text and "HTTP/1.1 200 OK" in text
    try:
        raise RuntimeError("could not post to https://hooks.slack.com/services/T1/B2/abcdef123")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "abcdef123" not in formatter.format(record)
