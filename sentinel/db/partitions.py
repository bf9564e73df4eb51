"""Daily range partitions of `batches` and `events` on PostgreSQL (SQLite keeps plain tables).

The two tables take every agent batch; at 12,500 hosts that is ~2,500 batch rows a second.
Partitioned by day on a time column, retention drops a whole day's table instead of deleting
hundreds of millions of rows (no vacuum debt, no index bloat), and the queries that filter on
the column (triage reads events by ``observed_at``) touch only the days they ask for.

The partition key is the agent's own time, the one a resend carries unchanged (see the
migration 0005's docstring for why exactly-once depends on that): ``batches.sent_at`` and
``events.observed_at``. Partitions live in their own schema so that the tables the models
describe stay the only ones in the default schema (the migration drift test reads those).

A row whose day has no partition yet (an agent clock far off, a spool resent after its day
was dropped) goes to the table's default partition: nothing is refused. Creating a day's
partition moves the default partition's rows of that day into it first, under a lock that
holds inserts into the default partition for the moment of the move.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.db.models import Event
from sentinel.db.upsert import insert_for

SCHEMA = "sentinel_partitions"
# One partition per UTC day: retention is counted in hours (samples) and days (events), so a
# day is the coarsest unit that still drops samples within a day of their limit.
SPAN = timedelta(days=1)
# Days ahead that exist at any time: the leader's retention pass (every few minutes) creates
# them, so a leader that is down or failing for up to this long never sends a day to the default
# partition.
AHEAD_DAYS = 3
# The one difference from the models on PostgreSQL: event_dispositions.event_id cannot reference
# events.id once (id) alone is not a unique key (retention removes orphans instead).
DROPPED_FOREIGN_KEY = "fk_event_dispositions_event_id_events"
_DAY_NAME = re.compile(r"_p(\d{8})$")


@dataclass(frozen=True)
class PartitionedTable:
    name: str
    column: str  # the range partition key: the agent's time, stable across resends


PARTITIONED = (
    PartitionedTable("batches", "sent_at"),
    PartitionedTable("events", "observed_at"),
)
BY_NAME = {t.name: t for t in PARTITIONED}


class Executor(Protocol):
    """A sync connection (the migration) or an adapter over an async session (the loop)."""

    def __call__(self, sql: str) -> list[tuple[object, ...]]: ...


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def default_name(table: str) -> str:
    return f"{table}_default"


def _bound(day: date) -> str:
    return f"'{day.isoformat()} 00:00:00+00'"


def day_of(name: str) -> date | None:
    m = _DAY_NAME.search(name)
    return datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=UTC).date() if m else None


def list_sql(table: str) -> str:
    return (
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE i.inhparent = to_regclass('{table}') AND n.nspname = '{SCHEMA}' ORDER BY 1"
    )


def create_default_sql(table: str) -> list[str]:
    return [
        f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
        f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{default_name(table)} PARTITION OF {table} DEFAULT",
    ]


def create_day_sql(table: PartitionedTable, day: date) -> list[str]:
    """Statements that create ``day``'s partition, taking over the default partition's rows of
    that day (attaching would fail while the default partition holds any)."""
    part = f"{SCHEMA}.{partition_name(table.name, day)}"
    default = f"{SCHEMA}.{default_name(table.name)}"
    lo, hi = _bound(day), _bound(day + SPAN)
    in_day = f"{table.column} >= {lo} AND {table.column} < {hi}"
    return [
        # Inserts routed to the default partition wait here until the day is attached, so none
        # of that day's rows can land in the default partition between the move and the attach.
        f"LOCK TABLE {default} IN SHARE ROW EXCLUSIVE MODE",
        f"CREATE TABLE {part} (LIKE {table.name} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
        f"WITH moved AS (DELETE FROM {default} WHERE {in_day} RETURNING *) "
        f"INSERT INTO {part} SELECT * FROM moved",
        f"ALTER TABLE {table.name} ATTACH PARTITION {part} FOR VALUES FROM ({lo}) TO ({hi})",
    ]


def drop_sql(name: str) -> str:
    return f"DROP TABLE IF EXISTS {SCHEMA}.{name}"


@dataclass
class Maintenance:
    """What one maintenance pass did, for the log and the metrics."""

    created: list[str]
    dropped: list[str]


def maintain(
    execute: Executor, now: datetime, ahead_days: int, keep: dict[str, timedelta]
) -> Maintenance:
    """Create today's and the next ``ahead_days`` days' partitions of each table; drop the ones
    whose whole day is older than ``now - keep[table]``. Rows in the default partition past
    retention are left to the row-wise retention delete."""
    done = Maintenance(created=[], dropped=[])
    today = now.astimezone(UTC).date()
    for table in PARTITIONED:
        have = {str(row[0]) for row in execute(list_sql(table.name))}
        for n in range(ahead_days + 1):
            day = today + timedelta(days=n)
            if partition_name(table.name, day) not in have:
                for sql in create_day_sql(table, day):
                    execute(sql)
                done.created.append(partition_name(table.name, day))
        cutoff = now - keep[table.name]
        for name in sorted(have):
            start = day_of(name)
            end = (
                None if start is None else datetime.combine(start, datetime.min.time(), UTC) + SPAN
            )
            if end is not None and end <= cutoff:
                execute(drop_sql(name))
                done.dropped.append(name)
    return done


def days_between(first: date, last: date) -> Iterable[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


async def insert_events_once(session: AsyncSession, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
    """Insert event rows whose id is not stored yet; the ids inserted now.

    On PostgreSQL the key is (id, observed_at), and these writers' ids are derived from what
    the event is (the watchdog's synthetic events, Alertmanager's alerts) while its time may be
    the time of writing: the id is looked up first, in every partition. The conflict clause
    still settles two writers of one row at the same instant.
    """
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        ids = [row["id"] for row in rows]
        held = set((await session.scalars(select(Event.id).where(Event.id.in_(ids)))).all())
        rows = [row for row in rows if row["id"] not in held]
        if not rows:
            return set()
    ins = insert_for(dialect, Event)
    result = await session.execute(ins.on_conflict_do_nothing().returning(ins.table.c.id), rows)
    return {row[0] for row in result.all()}
