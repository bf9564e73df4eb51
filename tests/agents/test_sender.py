"""The sender against a stand-in service that fails on cue (and once against the real one)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from agent_helpers import Receiver, sample, service_observations, xid

from sentinel_agent.clock import ManualClock, SystemClock
from sentinel_agent.metrics import AgentMetrics
from sentinel_agent.transport.outbox import Outbox
from sentinel_agent.transport.sender import Backoff, Outcome, Sender, classify, retry_after_seconds
from tests.harness.service import LiveService


def test_classification() -> None:
    assert classify(202) is Outcome.ACKED
    for status in (400, 404, 405, 409, 410, 415):
        assert classify(status) is Outcome.POISON
    for status in (413, 422):
        assert classify(status) is Outcome.SPLIT
    for status in (401, 403, 408, 429, 500, 502, 503, 504):
        assert classify(status) is Outcome.RETRY


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7.0
    http_date = (now + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after_seconds(http_date, now) == 30.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_backoff_grows_with_full_jitter_and_caps() -> None:
    b = Backoff(1.0, 8.0)
    delays = [b.next_delay() for _ in range(8)]
    assert 0 <= delays[0] <= 1.0 and 0 <= delays[1] <= 2.0
    assert all(0 <= d <= 8.0 for d in delays[4:])
    b.reset()
    assert b.next_delay() <= 1.0
    # Full jitter: draws cover the whole step, not only its upper half.
    draws = []
    for _ in range(200):
        b.reset()
        draws.append(b.next_delay())
    assert min(draws) < 0.1 and max(draws) > 0.9


async def _run(
    box: Outbox, url: str, token: str, until: object, timeout: float = 10.0, initial: float = 0.05
) -> tuple[Sender, AgentMetrics]:
    metrics = AgentMetrics("host-1")
    async with httpx.AsyncClient(timeout=2.0) as client:
        sender = Sender(
            box,
            client,
            base_url=url,
            token=token,
            clock=SystemClock(),
            metrics=metrics,
            send_interval_s=0.05,
            backoff=Backoff(initial, 0.2),
        )
        task = asyncio.create_task(sender.run())
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:  # type: ignore[operator]
            await asyncio.sleep(0.02)
        sender.stop()
        await task
    return sender, metrics


def _box(tmp_path: Path) -> Outbox:
    return Outbox(
        tmp_path / "o.db",
        host_id="host-1",
        clock=SystemClock(),
        max_bytes=1 << 20,
        max_batch_observations=2,
    )


async def test_retries_through_server_errors_and_timeouts_then_delivers_once_in_order(
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    box = _box(tmp_path)
    items = [sample(i) for i in range(6)]
    box.put(items)
    receiver.fail(500, 2)
    receiver.fail(503, 1, delay_s=2.5)  # longer than the client timeout: a real timeout
    _, metrics = await _run(box, receiver.url, receiver.agent_token, lambda: box.depth == 0)
    assert box.depth == 0
    got = [o.id for o in receiver.observations()]
    assert got == [o.id for o in items]
    seqs = [b.seq for b in receiver.batches]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert metrics.send_failures._value.get() >= 3
    # The retried batch went out byte for byte as first formed.
    assert receiver.statuses[:2] == [500, 500]


async def test_429_retry_after_is_honoured(tmp_path: Path, receiver: Receiver) -> None:
    box = _box(tmp_path)
    box.put([xid()])
    receiver.fail(429, 1, retry_after="1")
    start = time.monotonic()
    await _run(box, receiver.url, receiver.agent_token, lambda: box.depth == 0)
    assert box.depth == 0 and time.monotonic() - start >= 0.95


async def test_poison_batch_goes_to_dead_letters_and_the_rest_flows(
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    box = _box(tmp_path)
    box.put([xid(), xid(), xid()])
    receiver.fail(400, 1)
    await _run(box, receiver.url, receiver.agent_token, lambda: box.depth == 0)
    assert len(box.dead_letters()) == 1 and box.dead_letters()[0][1] == 400
    assert len(receiver.observations()) == 1  # the second batch arrived, the first is aside


async def test_a_seq_the_service_holds_for_other_content_is_dead_lettered_not_retried(
    tmp_path: Path, live_service: LiveService
) -> None:
    """A 409 (another agent posting as this host used the same seq) was retried for ever, and
    nothing the host reported after it arrived. Now it is dead-lettered once, counted, and
    the next batch goes."""
    clock = ManualClock(datetime(2026, 11, 28, 3, 0, tzinfo=UTC))
    twins = [
        Outbox(tmp_path / f"{name}.db", host_id="twin", clock=clock, max_bytes=1 << 20)
        for name in ("first", "second")
    ]
    first, second = twins
    first.put([xid()])
    await _run(first, live_service.url, live_service.agent_token, lambda: first.depth == 0)
    second.put([xid(31)])  # the seq `first` used, with other content
    taken = second.next_batch()
    assert taken is not None
    second.put([xid(43)])
    _, metrics = await _run(
        second, live_service.url, live_service.agent_token, lambda: second.depth == 0
    )
    assert [(seq, status) for seq, status, _ in second.dead_letters()] == [(taken.seq, 409)]
    assert metrics.seq_conflicts._value.get() == 1 and metrics.dead_letters._value.get() == 1
    xids = sorted(o["data"]["xid"] for o in service_observations(live_service, "twin", "xid"))
    assert xids == [43, 79]
    for box in twins:
        box.close()


async def test_bad_token_is_retried_until_the_service_takes_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A rotated or mistyped token is the operator's to fix; dead-lettering would throw away
    everything the host reports until then."""
    box = _box(tmp_path)
    box.put([xid()])
    good, receiver.agent_token = receiver.agent_token, "the-new-token"
    await _run(box, receiver.url, good, lambda: receiver.statuses.count(401) >= 3, timeout=5)
    assert box.depth == 1 and not box.dead_letters()
    receiver.agent_token = good  # the service takes the agent's token again
    await _run(box, receiver.url, good, lambda: box.depth == 0)
    assert len(receiver.observations("xid")) == 1 and not box.dead_letters()


async def test_large_batches_are_gzipped(tmp_path: Path, receiver: Receiver) -> None:
    box = Outbox(tmp_path / "o.db", host_id="host-1", clock=SystemClock(), max_bytes=1 << 20)
    box.put([sample(i % 8) for i in range(50)])
    await _run(box, receiver.url, receiver.agent_token, lambda: box.depth == 0)
    headers, _ = receiver.raw_posts[0]
    assert headers.get("Content-Encoding") == "gzip"
    assert len(receiver.observations()) == 50
