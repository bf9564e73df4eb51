"""Retention: periodic samples and old events leave the database so it does not grow unbounded."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.clock import Clock
from sentinel.db.models import Batch, Event
from sentinel.metrics import ServiceMetrics
from sentinel.settings import RetentionSettings


async def prune(
    session: AsyncSession, clock: Clock, settings: RetentionSettings, metrics: ServiceMetrics
) -> dict[str, int]:
    """Delete what is past retention; the caller's unit of work commits."""
    now = clock.now()
    removed: dict[str, int] = {}
    # Batches hold the periodic samples and the (host, seq) dedup keys: an agent never resends
    # a batch that old, and event ids keep deduplicating events for their own, longer life.
    res = await session.execute(
        delete(Batch).where(Batch.received_at < now - timedelta(hours=settings.samples_hours))
    )
    removed["batches"] = res.rowcount or 0  # type: ignore[attr-defined]
    res = await session.execute(
        delete(Event).where(Event.received_at < now - timedelta(days=settings.events_days))
    )
    removed["events"] = res.rowcount or 0  # type: ignore[attr-defined]
    for table, n in removed.items():
        metrics.retention_deleted.labels(table).inc(n)
    return removed
