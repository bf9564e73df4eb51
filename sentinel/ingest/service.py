"""The ingest writer: one task commits many batches per transaction (group commit).

Each request waits for the commit of the group that holds its batch, so a 202 means the batch
is durable. One writer per process also keeps SQLite free of "database is locked" errors;
on PostgreSQL several replicas each run their own writer and the unique keys keep dedup exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.clock import Clock
from sentinel.db.engine import unit_of_work
from sentinel.ingest.repository import StoredBatch, store_group
from sentinel.metrics import ServiceMetrics
from sentinel.wire import PERIODIC_KINDS, Batch, BatchAck

log = logging.getLogger(__name__)

Listener = Callable[[Sequence[StoredBatch]], Awaitable[None]]


class IngestUnavailable(Exception):
    """The writer cannot take the batch now (queue full, database down); the agent retries."""


class IngestService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        metrics: ServiceMetrics,
        *,
        max_group: int = 256,
        queue_limit: int = 20_000,
        linger_s: float = 0.004,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._metrics = metrics
        self._max_group = max_group
        self._linger_s = linger_s
        self._queue: asyncio.Queue[tuple[StoredBatch, asyncio.Future[StoredBatch], float]] = (
            asyncio.Queue(maxsize=queue_limit)
        )
        self._task: asyncio.Task[None] | None = None
        self.listeners: list[Listener] = []

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ingest-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            _, fut, _ = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(IngestUnavailable("the service is shutting down"))

    async def submit(self, batch: Batch) -> BatchAck:
        if self._task is None:
            raise IngestUnavailable("the ingest writer is not running")
        item = StoredBatch(batch=batch, received_at=self._clock.now())
        fut: asyncio.Future[StoredBatch] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, fut, time.perf_counter()))
        except asyncio.QueueFull:
            self._metrics.batches.labels("unavailable").inc()
            raise IngestUnavailable("ingest queue is full; retry later") from None
        self._metrics.queue_depth.set(self._queue.qsize())
        done = await fut
        return BatchAck(
            host_id=batch.host_id,
            seq=batch.seq,
            duplicate=done.duplicate,
            accepted=done.accepted,
            duplicates=done.duplicates,
            received_at=done.received_at,
        )

    async def _run(self) -> None:
        while True:
            group = [await self._queue.get()]
            if self._linger_s and self._queue.empty():
                # A few milliseconds of patience buys a bigger group: the per-transaction cost
                # is paid once for all of them, which is what keeps up with a whole fleet.
                await asyncio.sleep(self._linger_s)
            while len(group) < self._max_group and not self._queue.empty():
                group.append(self._queue.get_nowait())
            self._metrics.queue_depth.set(self._queue.qsize())
            await self._commit(group)

    async def _commit(
        self, group: list[tuple[StoredBatch, asyncio.Future[StoredBatch], float]]
    ) -> None:
        items = [g[0] for g in group]
        try:
            async with unit_of_work(self._sessions) as session:
                await store_group(session, items)
        except Exception:
            if len(group) > 1:
                # One bad batch must not sink its neighbours: retry them one by one.
                log.exception("group commit of %d batches failed; retrying singly", len(group))
                for single in group:
                    single[0].duplicate, single[0].accepted, single[0].duplicates = False, 0, 0
                    await self._commit([single])
                return
            log.exception("storing batch %s/%s failed", items[0].batch.host_id, items[0].batch.seq)
            self._metrics.batches.labels("unavailable").inc()
            if not group[0][1].done():
                group[0][1].set_exception(IngestUnavailable("the database refused the batch"))
            return
        self._metrics.group_size.observe(len(group))
        # Latency is a measurement of this process, not domain time: the real clock.
        now = time.perf_counter()
        for item, fut, started in group:
            self._metrics.latency.observe(max(0.0, now - started))
            if item.duplicate:
                self._metrics.batches.labels("duplicate").inc()
            else:
                self._metrics.batches.labels("accepted").inc()
                for obs in item.batch.observations:
                    if obs.kind in PERIODIC_KINDS or obs.id in item.new_event_ids:
                        self._metrics.observations.labels(obs.kind).inc()
            self._metrics.duplicate_events.inc(item.duplicates)
            if not fut.done():
                fut.set_result(item)
        stored = [it for it in items if not it.duplicate]
        for listener in self.listeners:
            try:
                await listener(stored)
            except Exception:
                log.exception("ingest listener %r failed", listener)
