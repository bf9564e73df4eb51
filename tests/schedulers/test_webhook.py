"""The webhook adapter against a local receiver that verifies every signature."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from builders import T0

from sentinel.clock import SystemClock, VirtualClock
from sentinel.schedulers.webhook import WebhookScheduler, sign, verify

from .conftest import SECRET, Receiver, Reply


class Sleeps:
    """Stands in for asyncio.sleep: the backoff is asserted, not waited for."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def hook(receiver: Receiver, sleeps: Sleeps, **kw: float) -> WebhookScheduler:
    params: dict[str, float] = {"timeout_s": 2.0, "retries": 3, "backoff_initial_s": 0.5}
    params.update(kw)
    return WebhookScheduler(
        receiver.url,
        SECRET,
        clock=SystemClock(),
        timeout_s=params["timeout_s"],
        retries=int(params["retries"]),
        backoff_initial_s=params["backoff_initial_s"],
        backoff_max_s=10.0,
        sleep=sleeps,
    )


async def test_a_signed_operation_is_delivered(receiver: Receiver) -> None:
    sleeps = Sleeps()

    result = await hook(receiver, sleeps).requeue("4242", ["node7", "node3", "node7"])

    assert result.ok, result.error
    assert result.commands == (f"POST {receiver.url}",)
    (got,) = receiver.received
    assert got.verified
    assert got.headers["x-sentinel-signature"].startswith("sha256=")
    body = got.json()
    assert (body["version"], body["op"]) == (1, "requeue")
    assert body["args"] == {"job_id": "4242", "exclude_hosts": ["node3", "node7"]}
    assert body["delivery_id"] == got.headers["x-sentinel-delivery"]
    assert sleeps.calls == []


async def test_a_500_is_retried_with_the_same_delivery_id(receiver: Receiver) -> None:
    receiver.script = [Reply(500), Reply(502)]
    sleeps = Sleeps()

    result = await hook(receiver, sleeps).drain("node3", "xid 79")

    assert result.ok, result.error
    assert len(receiver.received) == 3 and all(r.verified for r in receiver.received)
    assert len(receiver.deliveries()) == 1
    assert sleeps.calls == [0.5, 1.0]
    assert "attempt 1: HTTP 500" in result.output


async def test_429_waits_as_long_as_retry_after_says(receiver: Receiver) -> None:
    receiver.script = [Reply(429, headers={"Retry-After": "3"})]
    sleeps = Sleeps()

    result = await hook(receiver, sleeps).resume("node3")

    assert result.ok and sleeps.calls == [3.0]


async def test_retry_after_as_a_date_is_honoured_and_capped(receiver: Receiver) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    receiver.script = [Reply(503, headers={"Retry-After": later})]
    sleeps = Sleeps()

    result = await hook(receiver, sleeps).resume("node3")

    assert result.ok and sleeps.calls == [10.0]


async def test_a_400_is_not_retried(receiver: Receiver) -> None:
    receiver.script = [Reply(400, body='{"error": "no such job"}')]
    sleeps = Sleeps()

    result = await hook(receiver, sleeps).requeue("1", [])

    assert not result.ok and not result.retryable
    assert result.error == 'HTTP 400: {"error": "no such job"}'
    assert len(receiver.received) == 1 and sleeps.calls == []


async def test_a_slow_receiver_times_out_then_succeeds(receiver: Receiver) -> None:
    receiver.script = [Reply(200, delay_s=1.0)]
    sleeps = Sleeps()

    result = await hook(receiver, sleeps, timeout_s=0.2).drain("node1", "x")

    assert result.ok, result.error
    assert "attempt 1: timed out" in result.output
    assert len(receiver.deliveries()) == 1


async def test_giving_up_after_the_retries_is_retryable(receiver: Receiver) -> None:
    receiver.script = [Reply(200, delay_s=0.6) for _ in range(3)]
    sleeps = Sleeps()

    result = await hook(receiver, sleeps, timeout_s=0.2, retries=2).drain("node1", "x")

    assert not result.ok and result.retryable
    assert "timed out" in (result.error or "")
    assert len(result.commands) == 3 and sleeps.calls == [0.5, 1.0]


async def test_a_wrong_secret_is_refused_by_the_receiver(receiver: Receiver) -> None:
    scheduler = WebhookScheduler(
        receiver.url, b"another-secret-entirely", clock=SystemClock(), retries=2
    )

    result = await scheduler.drain("node1", "x")

    assert not result.ok and not result.retryable and "HTTP 401" in (result.error or "")
    assert [r.verified for r in receiver.received] == [False]


async def test_nothing_listens_is_retryable() -> None:
    sleeps = Sleeps()
    scheduler = WebhookScheduler(
        "http://127.0.0.1:9/", SECRET, clock=SystemClock(), retries=1, sleep=sleeps
    )

    result = await scheduler.resume("node1")

    assert not result.ok and result.retryable and len(sleeps.calls) == 1


async def test_bad_arguments_are_refused_before_sending(receiver: Receiver) -> None:
    scheduler = hook(receiver, Sleeps())

    results = [
        await scheduler.drain("node1; reboot", "x"),
        await scheduler.requeue("1", ["node[1-3]"]),
        await scheduler.requeue("1 2", []),
        await scheduler.job_state("1"),
        await scheduler.nodes(),
    ]

    assert [r.ok for r in results] == [False] * 5
    assert receiver.received == []


def test_the_signature_covers_timestamp_and_body() -> None:
    body = b'{"op":"drain"}'
    now = T0.timestamp()
    ts = str(int(now))
    good = sign(SECRET, ts, body)

    assert verify(SECRET, timestamp=ts, body=body, signature=good, now=now)
    assert not verify(SECRET, timestamp=ts, body=body + b" ", signature=good, now=now)
    assert not verify(SECRET, timestamp=str(int(now) + 1), body=body, signature=good, now=now)
    assert not verify(b"x" * 20, timestamp=ts, body=body, signature=good, now=now)
    # A replay of a captured request an hour later.
    assert not verify(SECRET, timestamp=ts, body=body, signature=good, now=now + 3600)
    assert not verify(SECRET, timestamp="soon", body=body, signature=good, now=now)


async def test_timestamps_come_from_the_injected_clock(receiver: Receiver) -> None:
    clock = VirtualClock(datetime.fromtimestamp(time.time(), UTC))
    scheduler = WebhookScheduler(receiver.url, SECRET, clock=clock)

    await scheduler.drain("node1", "x")

    (got,) = receiver.received
    assert got.headers["x-sentinel-timestamp"] == str(int(clock.now().timestamp()))
    assert got.json()["sent_at"] == clock.now().isoformat()


@pytest.mark.parametrize("status", [401, 403, 404, 409, 422])
async def test_other_4xx_are_final(receiver: Receiver, status: int) -> None:
    receiver.script = [Reply(status)]

    result = await hook(receiver, Sleeps()).resume("node1")

    assert not result.ok and not result.retryable and len(receiver.received) == 1
