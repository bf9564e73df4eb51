"""Retention: periodic samples and old events leave the database so it does not grow unbounded.

On PostgreSQL `batches` and `events` are partitioned by day (`sentinel.db.partitions`): the
pass first creates the coming days' partitions and drops the days past retention whole, then
the row-wise deletes below take what is left (rows in the default partition, and the
part of a day that is past retention before the whole day is). On SQLite only the deletes run.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Column, CursorResult, MetaData, Table, delete, exists, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from sentinel.clock import Clock
from sentinel.db import partitions
from sentinel.db.models import Batch, Event, EventDisposition
from sentinel.metrics import ServiceMetrics
from sentinel.runtime.settings import RetentionSettings

log = logging.getLogger(__name__)


async def maintain_partitions(
    session: AsyncSession, clock: Clock, settings: RetentionSettings
) -> partitions.Maintenance | None:
    """Create partitions ahead and drop the expired ones (PostgreSQL); None on SQLite."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    keep = {
        "batches": timedelta(hours=settings.samples_hours),
        "events": timedelta(days=settings.events_days),
    }

    def run(sync: Session) -> partitions.Maintenance:
        def execute(sql: str) -> list[tuple[object, ...]]:
            result = cast(CursorResult[Any], sync.execute(text(sql)))
            return [tuple(r) for r in result.all()] if result.returns_rows else []

        return partitions.maintain(execute, clock.now(), partitions.AHEAD_DAYS, keep)

    done = await session.run_sync(run)
    if done.created or done.dropped:
        log.info("partitions created %s, dropped %s", done.created, done.dropped)
    return done


def _table(model: type[Batch] | type[Event]) -> Table:
    return cast(Table, model.__table__)


def _default_partition(table: Table) -> Table:
    """The default partition of a partitioned table, with the column retention reads."""
    name = partitions.default_name(table.name)
    received = table.c.received_at
    return Table(name, MetaData(), Column(received.name, received.type), schema=partitions.SCHEMA)


async def prune(
    session: AsyncSession, clock: Clock, settings: RetentionSettings, metrics: ServiceMetrics
) -> dict[str, int]:
    """Delete what is past retention; the caller's unit of work commits."""
    now = clock.now()
    removed: dict[str, int] = {}
    done = await maintain_partitions(session, clock, settings)
    # Batches hold the periodic samples and the (host, seq) dedup keys: an agent never resends
    # a batch that old, and event ids keep deduplicating events for their own, longer life.
    # Partitioned, only the default partition is pruned row by row: deleting most of yesterday's
    # rows one by one before its partition goes whole is the cost partitioning removes (a day
    # partition is kept until all of it is past retention: up to a day longer).
    batches = _table(Batch) if done is None else _default_partition(_table(Batch))
    events = _table(Event) if done is None else _default_partition(_table(Event))
    res = await session.execute(
        delete(batches).where(batches.c.received_at < now - timedelta(hours=settings.samples_hours))
    )
    removed["batches"] = res.rowcount or 0  # type: ignore[attr-defined]
    res = await session.execute(
        delete(events).where(events.c.received_at < now - timedelta(days=settings.events_days))
    )
    removed["events"] = res.rowcount or 0  # type: ignore[attr-defined]
    if done is not None:
        # No foreign key to a partitioned table's id: what the cascade did, done here.
        res = await session.execute(
            delete(EventDisposition).where(
                ~exists(select(Event.id).where(Event.id == EventDisposition.event_id))
            )
        )
        if res.rowcount:  # type: ignore[attr-defined]
            removed["event_dispositions"] = res.rowcount  # type: ignore[attr-defined]
        metrics.retention_partitions_dropped.inc(len(done.dropped))
    for table, n in removed.items():
        metrics.retention_deleted.labels(table).inc(n)
    return removed
