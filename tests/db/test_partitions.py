"""Daily partitions of batches and events on PostgreSQL (migration 0008), plain tables on SQLite:
rows land in their day, the leader's retention pass creates days ahead and drops expired ones,
a row with no day yet goes to the default partition and is moved, never lost."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from builders import batch, gpu_sample, xid
from conftest import _fresh_pg, auth
from sqlalchemy import create_engine, insert, text

from sentinel.auth import TokenSpec
from sentinel.clock import SystemClock, VirtualClock
from sentinel.db import migrate, partitions
from sentinel.db.engine import make_engine, make_sessionmaker, sync_url, unit_of_work
from sentinel.db.models import Batch, Event
from sentinel.metrics import ServiceMetrics
from sentinel.runtime.app import create_app
from sentinel.runtime.retention import prune
from sentinel.runtime.settings import RetentionSettings
from sentinel.settings import Settings

pytestmark = pytest.mark.postgres


def _sql(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql))
            return [tuple(r) for r in result.all()] if result.returns_rows else []
    finally:
        engine.dispose()


def _relkind(url: str, table: str) -> str:
    return str(_sql(url, f"SELECT relkind FROM pg_class WHERE oid = to_regclass('{table}')")[0][0])


def _partitions(url: str, table: str) -> set[str]:
    return {str(r[0]) for r in _sql(url, partitions.list_sql(table))}


def _where(url: str, table: str) -> list[tuple[object, ...]]:
    """Each row's partition and partition key, ordered by the key."""
    column = partitions.BY_NAME[table].column
    return _sql(url, f"SELECT tableoid::regclass::text, {column} FROM {table} ORDER BY 2")


def _before_partitions(url: str) -> str:
    revision = ScriptDirectory.from_config(migrate.alembic_config(url)).get_revision("0008")
    assert revision is not None and isinstance(revision.down_revision, str)
    return revision.down_revision


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    return _fresh_pg(request.getfixturevalue("pg_cluster"), request.getfixturevalue("pg_template"))


@pytest.fixture
async def app_client_pg(
    pg_url: str, tokens: dict[str, str], tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The app on a partitioned PostgreSQL, on the wall clock (partitions are days of it)."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database={"url": pg_url},  # type: ignore[arg-type]
        run_loops=False,
        auth={"tokens": [TokenSpec(name=r, role=r, token=t) for r, t in tokens.items()]},  # type: ignore[arg-type]
    )
    app = create_app(settings, SystemClock())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sentinel") as client:
            yield client


def test_migration_partitions_postgresql_and_leaves_sqlite_plain(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = _fresh_pg(request.getfixturevalue("pg_cluster"), None)
    migrate.upgrade(url)
    today = datetime.now(UTC).date()
    for table in ("batches", "events"):
        assert _relkind(url, table) == "p"
        have = _partitions(url, table)
        assert partitions.default_name(table) in have
        for n in range(partitions.AHEAD_DAYS + 1):
            assert partitions.partition_name(table, today + timedelta(days=n)) in have
    # A row stored before partitioning survives the way down and up again.
    row_at = datetime.now(UTC)
    _sql(
        url,
        "INSERT INTO batches VALUES ('h1', 1, 'a', "
        f"'{row_at.isoformat()}', '{row_at.isoformat()}', 0, '[]', NULL)",
    )
    migrate.downgrade(url, _before_partitions(url))
    assert _relkind(url, "batches") == "r" and _relkind(url, "events") == "r"
    assert _sql(url, "SELECT count(*) FROM batches") == [(1,)]
    assert _sql(url, f"SELECT to_regnamespace('{partitions.SCHEMA}')") == [(None,)]
    migrate.upgrade(url)
    assert _where(url, "batches")[0][0].endswith(partitions.partition_name("batches", today))  # type: ignore[union-attr]

    sqlite = f"sqlite:///{tmp_path}/plain.db"
    migrate.upgrade(sqlite)
    migrate.downgrade(sqlite, _before_partitions(sqlite))
    migrate.upgrade(sqlite)
    assert migrate.schema_status_sync(sqlite).up_to_date


async def test_rows_land_in_their_day_and_a_day_without_partition_in_default(
    pg_url: str, app_client_pg: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    far = today + timedelta(days=40)  # no partition yet
    for seq, when in ((1, today), (2, far)):
        body = batch(seq=seq, when=when, observations=[gpu_sample(0, when), xid(79, when=when)])
        r = await app_client_pg.post("/api/v1/reports", json=body, headers=auth(tokens["agent"]))
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 2
    for table in ("batches", "events"):
        rows = _where(pg_url, table)
        assert [r[0] for r in rows] == [
            f"{partitions.SCHEMA}.{partitions.partition_name(table, today.date())}",
            f"{partitions.SCHEMA}.{partitions.default_name(table)}",
        ]
    # Resends are still duplicates, and a seq reused with other bytes still a conflict, though
    # the keys now include the time.
    body = batch(seq=2, when=far, observations=[gpu_sample(0, far)])
    r = await app_client_pg.post("/api/v1/reports", json=body, headers=auth(tokens["agent"]))
    assert r.status_code == 409


async def test_leader_pass_creates_days_ahead_moves_default_rows_and_drops_expired(
    pg_url: str,
) -> None:
    start = datetime.now(UTC) + timedelta(days=30)
    lost_day = start + timedelta(days=1)
    old = datetime.now(UTC) - timedelta(days=400)
    engine = create_engine(sync_url(pg_url))
    with engine.begin() as conn:
        for seq, when in ((1, lost_day), (2, old)):
            conn.execute(
                insert(Batch),
                {
                    "host_id": "h1",
                    "seq": seq,
                    "agent_id": "a",
                    "sent_at": when,
                    "received_at": when,
                    "n_observations": 0,
                    "samples": "[]",
                },
            )
        conn.execute(
            insert(Event),
            {
                "id": uuid.uuid4(),
                "host_id": "h1",
                "seq": 1,
                "kind": "xid",
                "observed_at": lost_day,
                "received_at": lost_day,
                "critical": True,
                "payload": {},
            },
        )
    engine.dispose()
    assert {r[0] for r in _where(pg_url, "batches")} == {
        f"{partitions.SCHEMA}.{partitions.default_name('batches')}"
    }

    aengine = make_engine(pg_url)
    sessions = make_sessionmaker(aengine)
    clock = VirtualClock(start)
    settings = RetentionSettings(samples_hours=24, events_days=7)
    try:
        async with unit_of_work(sessions) as session:
            await prune(session, clock, settings, ServiceMetrics())
    finally:
        await aengine.dispose()

    for table in ("batches", "events"):
        have = _partitions(pg_url, table)
        for n in range(partitions.AHEAD_DAYS + 1):
            assert partitions.partition_name(table, start.date() + timedelta(days=n)) in have
        # The days that ended before the cutoff (30 days on, both kept less) are gone whole.
        today = datetime.now(UTC).date()
        assert partitions.partition_name(table, today) not in have
        assert partitions.default_name(table) in have
    # The default partition's row moved into its new day, not deleted; the 400-day-old one
    # went with the row-wise delete.
    assert [r[0] for r in _where(pg_url, "batches")] == [
        f"{partitions.SCHEMA}.{partitions.partition_name('batches', lost_day.date())}"
    ]
    assert [r[0] for r in _where(pg_url, "events")] == [
        f"{partitions.SCHEMA}.{partitions.partition_name('events', lost_day.date())}"
    ]


async def test_retention_keeps_current_partitions(pg_url: str) -> None:
    now = datetime.now(UTC)
    aengine = make_engine(pg_url)
    sessions = make_sessionmaker(aengine)
    before = {t: _partitions(pg_url, t) for t in ("batches", "events")}
    try:
        async with unit_of_work(sessions) as session:
            await prune(session, VirtualClock(now), RetentionSettings(), ServiceMetrics())
    finally:
        await aengine.dispose()
    yesterday = now.date() - timedelta(days=1)
    # Samples are kept 24 h: yesterday's day partition still holds some of them.
    assert partitions.partition_name("batches", yesterday) in _partitions(pg_url, "batches")
    assert _partitions(pg_url, "events") >= before["events"]


async def test_an_event_id_written_again_at_another_time_is_stored_once(pg_url: str) -> None:
    """The watchdog's synthetic events and Alertmanager's alerts derive their id from what they
    are and may carry the time of writing: the key (id, observed_at) alone would store each
    pass's copy; the look-up keeps one."""
    engine = make_engine(pg_url)
    sessions = make_sessionmaker(engine)
    event_id = uuid.uuid4()
    now = datetime.now(UTC)

    def row(at: datetime) -> dict[str, object]:
        return {
            "id": event_id,
            "host_id": "h1",
            "seq": 0,
            "kind": "hang",
            "observed_at": at,
            "received_at": at,
            "critical": True,
            "payload": {},
        }

    try:
        async with unit_of_work(sessions) as session:
            assert await partitions.insert_events_once(session, [row(now)]) == {event_id}
        async with unit_of_work(sessions) as session:
            later = now + timedelta(seconds=30)
            assert await partitions.insert_events_once(session, [row(later)]) == set()
    finally:
        await engine.dispose()
    assert _sql(pg_url, "SELECT count(*) FROM events") == [(1,)]
