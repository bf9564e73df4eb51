"""Retention keeps the database bounded: old samples and events go, recent ones stay."""

from __future__ import annotations

import httpx
from builders import batch, gpu_sample, xid
from conftest import auth
from sqlalchemy import func, select

from sentinel.clock import VirtualClock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Batch, Event
from sentinel.runtime.retention import prune


async def test_prune_by_age(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> None:
    ctx = app_client.app.state.ctx  # type: ignore[attr-defined]
    await app_client.post(
        "/api/v1/reports",
        json=batch(seq=1, observations=[gpu_sample(), xid()]),
        headers=auth(tokens["agent"]),
    )
    clock.advance(ctx.settings.retention.samples_hours * 3600 + 1)
    await app_client.post(
        "/api/v1/reports",
        json=batch(seq=2, observations=[gpu_sample(), xid()]),
        headers=auth(tokens["agent"]),
    )
    async with unit_of_work(ctx.sessions) as s:
        removed = await prune(s, clock, ctx.settings.retention, ctx.metrics)
    assert removed == {"batches": 1, "events": 0}
    clock.advance(ctx.settings.retention.events_days * 86400 + 1)
    async with unit_of_work(ctx.sessions) as s:
        removed = await prune(s, clock, ctx.settings.retention, ctx.metrics)
        assert await s.scalar(select(func.count()).select_from(Batch)) == 0
        assert await s.scalar(select(func.count()).select_from(Event)) == 0
    assert removed == {"batches": 1, "events": 2}
