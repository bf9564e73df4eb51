"""A fleet with a backlog after an outage: bounded batches, Retry-After, no lockstep.

Issue 14, finding 4: after an outage 1,000 hosts resent 1,000-sample batches at once and
the service acknowledged none in 250 s. Each host's backlog goes out in batches bounded by
count and bytes, not before the Retry-After of a 503, and the fleet's retries are spread
(full jitter on top of Retry-After) instead of arriving together.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import httpx
from agent_helpers import NOW, Post, Receiver, sample

from sentinel.wire import LogRecord, Observation
from sentinel_agent.clock import SystemClock
from sentinel_agent.metrics import AgentMetrics
from sentinel_agent.transport.outbox import Outbox
from sentinel_agent.transport.sender import Backoff, Sender

HOSTS = 16
SAMPLES_PER_HOST = 600
BIG_LOGS_PER_HOST = 6
MAX_OBSERVATIONS = 250
MAX_BYTES = 256 * 1024
RETRY_AFTER_S = 1.0


def _backlog() -> list[Observation]:
    """Small samples (batches full by count) with large log records among them (by bytes)."""
    out: list[Observation] = [sample(i % 8) for i in range(SAMPLES_PER_HOST)]
    for n in range(BIG_LOGS_PER_HOST):
        out.insert(
            100 + n,
            LogRecord(
                id=uuid.uuid4(),
                observed_at=NOW,
                source="application",
                message="RuntimeError: " + "x" * 60_000,
            ),
        )
    return out


async def _drain(boxes: dict[str, Outbox], receiver: Receiver, backoff_s: float) -> None:
    """One sender per host, all at once, until every outbox is empty."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        senders = [
            Sender(
                box,
                client,
                base_url=receiver.url,
                token=receiver.agent_token,
                clock=SystemClock(),
                metrics=AgentMetrics(host),
                send_interval_s=0.05,
                backoff=Backoff(backoff_s, 8.0),
                compress=False,
            )
            for host, box in boxes.items()
        ]
        tasks = [asyncio.create_task(s.run()) for s in senders]
        try:
            async with asyncio.timeout(60):
                while any(box.depth for box in boxes.values()):
                    await asyncio.sleep(0.05)
        finally:
            for s in senders:
                s.stop()
            await asyncio.gather(*tasks)


def _fleet(
    tmp_path: Path, backlog: Callable[[], list[Observation]]
) -> tuple[dict[str, Outbox], dict[str, list[str]]]:
    """Each host's outbox with its backlog, and the ids queued, by host."""
    boxes: dict[str, Outbox] = {}
    queued: dict[str, list[str]] = {}
    for h in range(HOSTS):
        host = f"host-{h}"
        boxes[host] = Outbox(
            tmp_path / f"{host}.db",
            host_id=host,
            clock=SystemClock(),
            max_bytes=1 << 26,
            max_batch_observations=MAX_OBSERVATIONS,
            max_batch_bytes=MAX_BYTES,
        )
        observations = backlog()
        boxes[host].put(observations)
        queued[host] = [str(o.id) for o in observations]
    return boxes, queued


def _by_host(receiver: Receiver) -> dict[str, list[Post]]:
    posts: dict[str, list[Post]] = defaultdict(list)
    for post in sorted(receiver.posts, key=lambda p: p.at):
        assert post.host_id is not None
        posts[post.host_id].append(post)
    return posts


def _retry_delays(receiver: Receiver) -> list[float]:
    """Per host, from its first shed request to the next one (arrival times)."""
    delays = []
    for host_posts in _by_host(receiver).values():
        for shed, retry in itertools.pairwise(host_posts):
            if shed.status == 503:
                delays.append(retry.at - shed.at)
                break
    return delays


async def test_a_backlog_goes_out_in_bounded_batches_not_before_retry_after(
    tmp_path: Path, receiver: Receiver
) -> None:
    boxes, queued = _fleet(tmp_path, _backlog)
    # The service is back but overloaded: it sheds the first request of (nearly) every host.
    receiver.fail(503, HOSTS, retry_after=str(int(RETRY_AFTER_S)))
    await _drain(boxes, receiver, backoff_s=0.2)
    delivered: dict[str, list[str]] = defaultdict(list)
    for batch in receiver.batches:
        delivered[batch.host_id] += [str(o.id) for o in batch.observations]
    assert delivered == queued  # everything, once, in order
    accepted = [p for posts in _by_host(receiver).values() for p in posts if p.status == 202]
    assert all(p.observations <= MAX_OBSERVATIONS for p in accepted)
    assert all(p.body_bytes <= MAX_BYTES + 1024 for p in accepted)  # + the batch header
    assert any(p.observations == MAX_OBSERVATIONS for p in accepted)  # cut by count
    assert any(p.observations < MAX_OBSERVATIONS // 2 for p in accepted)  # cut by bytes
    delays = _retry_delays(receiver)
    assert len(delays) >= HOSTS // 2  # (which requests are shed depends on arrival order)
    assert min(delays) >= RETRY_AFTER_S


async def test_a_fleet_told_when_to_retry_does_not_come_back_in_lockstep(
    tmp_path: Path, receiver: Receiver
) -> None:
    # One small batch per host, so that the receiver's own work does not spread arrivals.
    boxes, _ = _fleet(tmp_path, lambda: [sample()])
    receiver.fail(503, HOSTS, retry_after=str(int(RETRY_AFTER_S)))
    await _drain(boxes, receiver, backoff_s=RETRY_AFTER_S)
    delays = _retry_delays(receiver)
    assert len(delays) == HOSTS and min(delays) >= RETRY_AFTER_S
    # Retry-After then full jitter: spread over about a second, not all at once.
    assert max(delays) - min(delays) >= 0.4, sorted(delays)
