"""The ingest writer: one task commits many batches per transaction (group commit).

Each request waits for the commit of the group that holds its batch, so a 202 means the batch
is durable. One writer per process also keeps SQLite free of "database is locked" errors;
on PostgreSQL several replicas each run their own writer and the unique keys keep dedup exact.

A batch is known by the SHA-256 of its bytes. A resend (the agent's outbox resends the same
bytes) is answered from memory without being parsed, and copies that arrive while the first is
being stored wait for its answer instead of being stored again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from operator import attrgetter
from typing import Final, TypeVar

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from sentinel.clock import Clock
from sentinel.db.engine import unit_of_work
from sentinel.ingest.job_ends import record_job_ends
from sentinel.ingest.repository import StoredBatch, store_group
from sentinel.metrics import ServiceMetrics
from sentinel.wire import Batch, BatchAck

log = logging.getLogger(__name__)

Listener = Callable[[Sequence[StoredBatch]], Awaitable[None]]
_Queued = tuple[StoredBatch, "asyncio.Future[StoredBatch]", float]
V = TypeVar("V")

# Stored batches remembered by digest (about 200 bytes each), so that a resend is answered
# without being parsed: resends come soon after the first copy, when its answer was lost.
_RECENT_KEPT: Final = 20_000
# Batches the database refused, remembered so that their resends are answered at once.
_REFUSED_KEPT: Final = 1_000
_KIND: Final = attrgetter("kind")


class IngestUnavailable(Exception):
    """The writer cannot take the batch now (queue full, database down); the agent retries."""


class BatchRefused(Exception):
    """The database refused this batch alone: the same bytes will never be stored (4xx)."""


class HostForbidden(Exception):
    """The caller may not speak for the batch's host."""

    def __init__(self, host_id: str) -> None:
        super().__init__(host_id)
        self.host_id = host_id


class SeqConflict(Exception):
    """The batch reuses a stored (host, seq) for other content."""

    def __init__(self, host_id: str, seq: int) -> None:
        super().__init__(f"seq {seq} of host {host_id!r} was already used for another batch")
        self.host_id, self.seq = host_id, seq


def _permanent(exc: BaseException) -> bool:
    """A failure that storing the same values again would repeat (not a connection's): a value
    a driver could not bind, or one the database called a data or constraint error."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, DataError | IntegrityError):
            return True
        # SQLSTATE class 22: data exception; 23: integrity constraint violation.
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str) and state[:2] in ("22", "23"):
            return True
        if isinstance(cause, ValueError | OverflowError | TypeError | UnicodeError):
            return True
        orig = getattr(cause, "orig", None)
        cause = orig if isinstance(orig, BaseException) else cause.__cause__
    return False


def _transient(exc: BaseException) -> bool:
    """The database (or the way to it) failed, not the batch."""
    return not _permanent(exc) and isinstance(exc, DBAPIError | OSError | TimeoutError)


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
        listeners: Sequence[Listener] = (),
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._metrics = metrics
        self._max_group = max_group
        self._linger_s = linger_s
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue(maxsize=queue_limit)
        self._task: asyncio.Task[None] | None = None
        # Told what each commit stored that was new, in this order (the triage worker).
        self.listeners: list[Listener] = list(listeners)
        # digest -> (host, seq) of batches stored (or found stored) lately.
        self._recent: OrderedDict[str, tuple[str, int]] = OrderedDict()
        # digest -> a future done when the copy being handled now has its answer.
        self._pending: dict[str, asyncio.Future[None]] = {}
        # digest -> why the database refused it; and digests that failed alone for a reason
        # not known to be theirs: those are committed alone, never again in a group.
        self._refused: OrderedDict[str, str] = OrderedDict()
        self._alone: OrderedDict[str, None] = OrderedDict()
        # On PostgreSQL the writer keeps its connection from one group to the next: taking one
        # from the pool for every group cost the pool's pre-ping each time (three round trips
        # with asyncpg: BEGIN, a ping, ROLLBACK). A connection found dead is replaced instead
        # (`_store`), which is what the pre-ping was for.
        bind = sessions.kw.get("bind")
        self._engine = (
            bind if isinstance(bind, AsyncEngine) and bind.dialect.name == "postgresql" else None
        )
        self._conn: AsyncConnection | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ingest-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop_connection()
        while not self._queue.empty():
            _, fut, _ = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(IngestUnavailable("the service is shutting down"))

    async def receive(self, body: bytes, may_speak_for: Callable[[str], bool]) -> BatchAck:
        """Store the batch in ``body`` (JSON, already inflated) for a caller allowed to speak
        for the hosts ``may_speak_for`` accepts.

        Raises pydantic's ValidationError, HostForbidden, SeqConflict, BatchRefused or
        IngestUnavailable.
        """
        key = hashlib.sha256(body).hexdigest()
        while True:
            known = self._recent.get(key)
            if known is not None:
                host, seq = known
                if not may_speak_for(host):
                    raise HostForbidden(host)
                self._metrics.batches.labels("duplicate").inc()
                return BatchAck(
                    host_id=host,
                    seq=seq,
                    duplicate=True,
                    accepted=0,
                    duplicates=0,
                    received_at=self._clock.now(),
                )
            if key in self._refused:
                raise BatchRefused(self._refused[key])
            pending = self._pending.get(key)
            if pending is None:
                break
            # Another copy is being handled: its outcome (above) answers this one too.
            await asyncio.shield(pending)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[key] = done
        try:
            batch = Batch.model_validate_json(body)
            if not may_speak_for(batch.host_id):
                raise HostForbidden(batch.host_id)
            return await self.submit(batch, key)
        finally:
            del self._pending[key]
            done.set_result(None)

    async def submit(self, batch: Batch, key: str) -> BatchAck:
        if self._task is None:
            raise IngestUnavailable("the ingest writer is not running")
        item = StoredBatch(batch=batch, received_at=self._clock.now(), digest=key)
        fut: asyncio.Future[StoredBatch] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, fut, time.perf_counter()))
        except asyncio.QueueFull:
            self._metrics.batches.labels("unavailable").inc()
            raise IngestUnavailable("ingest queue is full; retry later") from None
        self._metrics.queue_depth.set(self._queue.qsize())
        done = await fut
        if done.conflict:
            raise SeqConflict(batch.host_id, batch.seq)
        _remember(self._recent, key, (batch.host_id, batch.seq), _RECENT_KEPT)
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
            # A batch that once failed alone for a reason not known to be its own is committed
            # alone from then on: it can cost no neighbour a second time.
            together = [g for g in group if g[0].digest not in self._alone]
            if together:
                await self._commit(together)
            for single in group:
                if single[0].digest in self._alone:
                    await self._commit([single])

    async def _commit(self, group: list[_Queued]) -> None:
        items = [g[0] for g in group]
        try:
            await self._store(items)
        except Exception as exc:
            if _transient(exc):
                log.error(
                    "the database is unavailable (%s): %d batches answered 503", exc, len(group)
                )
                self._answer(group, IngestUnavailable("the database is unavailable; retry later"))
            elif len(group) > 1:
                # One bad batch must not sink its neighbours: each goes again on its own.
                log.warning(
                    "group commit of %d batches failed (%s); storing them one by one",
                    len(group),
                    _first_line(exc),
                )
                for single in group:
                    single[0].reset()
                    await self._commit([single])
            else:
                self._refuse(group[0], exc)
            return
        self._metrics.group_size.observe(len(group))
        # Latency is a measurement of this process, not domain time: the real clock.
        now = time.perf_counter()
        # Counted per group, each label once: a labelled counter per observation cost more
        # than the rest of the bookkeeping.
        outcomes: Counter[str] = Counter()
        # The kinds of the observations stored, counted once for the group (a Counter update
        # per batch cost more than the counting).
        stored_kinds: list[str] = []
        duplicates = 0
        for item, fut, started in group:
            self._metrics.latency.observe(max(0.0, now - started))
            if item.conflict:
                outcomes["seq_conflict"] += 1
            elif item.duplicate:
                outcomes["duplicate"] += 1
            else:
                outcomes["accepted"] += 1
                stored_kinds += map(_KIND, item.periodic)
                if item.new_event_ids:
                    new_events = item.new_event_ids
                    stored_kinds += (obs.kind for obs in item.events if obs.id in new_events)
            duplicates += item.duplicates
            if not fut.done():
                fut.set_result(item)
        for outcome, n in outcomes.items():
            if outcome == "seq_conflict":
                self._metrics.rejected.labels(outcome).inc(n)
            else:
                self._metrics.batches.labels(outcome).inc(n)
        for kind, n in Counter(stored_kinds).items():
            self._metrics.observations.labels(kind).inc(n)
        if duplicates:
            self._metrics.duplicate_events.inc(duplicates)
        stored = [it for it in items if not it.duplicate and not it.conflict]
        for listener in self.listeners:
            try:
                await listener(stored)
            except Exception:
                log.exception("ingest listener %r failed", listener)

    async def _store(self, items: list[StoredBatch]) -> None:
        """Store the items and commit them, in one transaction."""
        if self._engine is None:
            async with unit_of_work(self._sessions) as session:
                await store_group(session, items)
                await record_job_ends(session, items)
            return
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = await self._engine.connect()  # the pool pre-pings this one
            try:
                await self._store_on(self._conn, items)
                return
            except BaseException as exc:
                await self._drop_connection()
                if attempt == 2 or not (isinstance(exc, DBAPIError) and exc.connection_invalidated):
                    raise
                # The connection died since the last group (the server restarted, an idle
                # connection was cut): the group goes once more on a new one, as the pre-ping
                # would have sent it there. (Had it died in the commit itself, the batches it
                # committed are found stored, as a resend after a 503 would find them.)
                log.warning("the database connection was lost (%s); reconnecting", _first_line(exc))
                for item in items:
                    item.reset()

    async def _store_on(self, conn: AsyncConnection, items: list[StoredBatch]) -> None:
        async with self._sessions(bind=conn) as session, session.begin():
            await store_group(session, items)
            await record_job_ends(session, items)

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # Back to the pool, which resets it or, invalidated, discards it.
            with contextlib.suppress(Exception):
                await conn.close()

    def _refuse(self, single: _Queued, exc: Exception) -> None:
        """Answer a batch that failed on its own with its own error."""
        item = single[0]
        where = f"batch {item.batch.host_id}/{item.batch.seq}"
        if _permanent(exc):
            # The same bytes would fail the same way: a 4xx, which the agent does not resend.
            reason = f"the database cannot store {where}: {_first_line(exc)}"
            log.error("%s", reason)
            self._alone.pop(item.digest, None)
            _remember(self._refused, item.digest, reason, _REFUSED_KEPT)
            self._metrics.rejected.labels("unstorable").inc()
            self._answer([single], BatchRefused(reason))
            return
        log.error("storing %s failed", where, exc_info=exc)
        _remember(self._alone, item.digest, None, _REFUSED_KEPT)
        self._answer([single], IngestUnavailable("the database refused the batch; retry later"))

    def _answer(self, group: list[_Queued], exc: Exception) -> None:
        if isinstance(exc, IngestUnavailable):
            self._metrics.batches.labels("unavailable").inc(len(group))
        for _, fut, _ in group:
            if not fut.done():
                fut.set_exception(exc)


def _remember(memo: OrderedDict[str, V], key: str, value: V, limit: int) -> None:
    """Keep ``key`` as the newest of at most ``limit`` entries."""
    if limit <= 0:
        return
    memo[key] = value
    memo.move_to_end(key)
    while len(memo) > limit:
        memo.popitem(last=False)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
