"""execute_rows stores exactly what session.execute(stmt, rows) stores, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, text

from sentinel.db.engine import make_engine, make_sessionmaker, unit_of_work
from sentinel.db.models import Host, Job, JobRank
from sentinel.db.rows import execute_rows
from sentinel.db.upsert import insert_for

EAST = timezone(timedelta(hours=9))
T = datetime(2026, 12, 6, 8, 0, 0, 250_000, tzinfo=UTC)


def _ranks(job: str, beat: datetime) -> list[dict[str, Any]]:
    return [
        {
            "job_id": job,
            "rank": r,
            "host_id": f"h{r:03d}",
            "local_rank": r % 8,
            "gpu_index": None if r == 3 else r % 8,
            "step": 100 + r,
            "step_time_s": 4.5 if r else None,
            "checkpoint_step": None,
            "checkpoint_path": "/ckpt/a" if r == 1 else None,
            # The same instant in another zone, and one with no microseconds.
            "last_beat_at": beat.astimezone(EAST) if r % 2 else beat.replace(microsecond=0),
            "step_changed_at": beat,
        }
        for r in range(6)
    ]


async def _raw(session: Any, table: str) -> list[tuple[Any, ...]]:
    """The rows as the database holds them (no result processing)."""
    conn = await session.connection()
    result = await conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY 1, 2")
    return [tuple(row) for row in result.all()]


async def test_rows_are_stored_as_sqlalchemy_stores_them(db_url: str) -> None:
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        async with unit_of_work(sessions) as s:
            dialect = s.get_bind().dialect.name
            jobs = [{"id": j, "first_seen": T, "last_seen": T, "world_size": 6} for j in "ab"]
            await s.execute(insert_for(dialect, Job), jobs)
            # The column default (drain_state) is filled in as SQLAlchemy fills it.
            hosts = [
                {"id": "h1", "agent_id": "a1", "first_seen": T, "last_seen": T, "last_seq": 1},
            ]
            await execute_rows(s, insert_for(dialect, Host), hosts)
            await s.execute(insert_for(dialect, JobRank), _ranks("a", T))
            await execute_rows(s, insert_for(dialect, JobRank), _ranks("b", T))
        async with unit_of_work(sessions) as s:
            rows = await _raw(s, "job_ranks")
            drain = (await s.execute(select(Host.drain_state))).scalar_one()
            # The driver's values, not SQLAlchemy's: SQLite keeps times as text.
            if dialect == "sqlite":
                stored = (await s.execute(text("SELECT last_beat_at FROM job_ranks"))).scalars()
                assert {v for v in stored} == {
                    "2026-12-06 08:00:00.250000",
                    "2026-12-06 08:00:00.000000",
                }
        assert drain == "none"
        by_job = {j: [r[1:] for r in rows if r[0] == j] for j in "ab"}
        assert by_job["a"] == by_job["b"] and len(by_job["a"]) == 6
    finally:
        await engine.dispose()


async def test_a_naive_time_is_refused_as_before(db_url: str) -> None:
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        with pytest.raises(ValueError, match="naive datetime"):
            async with unit_of_work(sessions) as s:
                dialect = s.get_bind().dialect.name
                row = {"id": "j", "first_seen": T.replace(tzinfo=None), "last_seen": T}
                await execute_rows(s, insert_for(dialect, Job), [row])
    finally:
        await engine.dispose()
