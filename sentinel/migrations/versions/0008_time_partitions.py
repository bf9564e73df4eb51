"""Daily partitions of `batches` (by sent_at) and `events` (by observed_at) on PostgreSQL.

SQLite keeps its plain tables: this revision does nothing there (`sentinel.db.partitions`).

Exactly-once after partitioning. PostgreSQL requires every unique key of a partitioned table to
include the partition key, so the keys become:

- ``batches``: (host_id, seq, sent_at). A duplicate batch is, by the existing contract, the
  same bytes (``batches.digest``; other bytes under a stored seq are a 409), so it carries the
  same ``sent_at``: the unique key still catches every resend in the insert itself, atomically,
  whichever replica receives it. A seq reused with other bytes normally has another sent_at and
  would pass the key, so on PostgreSQL ingest first looks the (host, seq) up across partitions
  (`ingest.repository`) and answers 409 as before; only two different payloads under one seq
  arriving at two replicas at the same instant could both be stored, and that is an agent
  bug, not a resend.
- ``events``: (id, observed_at). An event is resent as the same observation, with its id and
  its time, also when the agent re-sequences it into another batch after a 409: the key
  catches it. The time the service received it (received_at) would not do: it differs on
  every resend, so a key with it would store each resend again. Another host's event under
  the same id (which the service keeps under a host-scoped id) is found by looking the id up
  before the insert on PostgreSQL, as the batch's seq is.

Why not a separate dedupe table of (host, seq) and event ids: it would be a second,
unpartitioned table as long-lived as the data, pruned row by row, which is the cost
partitioning removes; the agent's times already make the key stable.

``event_dispositions.event_id`` loses its foreign key on PostgreSQL (a key can only reference
a unique constraint, and (id) alone no longer is one); retention deletes the dispositions of
events past retention instead of the cascade.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 08:30:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from alembic import op
from sqlalchemy import text

from sentinel.db import partitions as parts

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FK = parts.DROPPED_FOREIGN_KEY
# Indexes besides the primary key, as the models declare them (names from 0001).
_INDEXES = {
    "batches": [("ix_batches_received_at", "received_at")],
    "events": [
        ("ix_events_host_observed", "host_id, observed_at"),
        ("ix_events_kind_observed", "kind, observed_at"),
        ("ix_events_received_at", "received_at"),
    ],
}
_PARTITIONED_KEYS = {"batches": "host_id, seq, sent_at", "events": "id, observed_at"}
_PLAIN_KEYS = {"batches": "host_id, seq", "events": "id"}
# Days ahead are created now; the leader's retention pass keeps creating them from then on.
_AHEAD_DAYS = parts.AHEAD_DAYS
# Old rows are copied into day partitions within this many days of now, else into the default.
_HISTORY_DAYS = 120


def _rows(sql: str) -> list[tuple[object, ...]]:
    result = op.get_bind().execute(text(sql))
    return [tuple(r) for r in result.all()] if result.returns_rows else []


def _drop_keys(table: str, renamed: str) -> None:
    """Free the names of ``table``'s keys, now on ``renamed``, for the table that replaces it."""
    for name, _ in _INDEXES[table]:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.execute(f"ALTER TABLE {renamed} DROP CONSTRAINT IF EXISTS pk_{table}")


def _add_keys(table: str, key: str) -> None:
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({key})")
    for name, cols in _INDEXES[table]:
        op.execute(f"CREATE INDEX {name} ON {table} ({cols})")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE event_dispositions DROP CONSTRAINT IF EXISTS {_FK}")
    today = datetime.now(UTC).date()
    for table in parts.PARTITIONED:
        name, old = table.name, f"{table.name}_unpartitioned"
        op.execute(f"ALTER TABLE {name} RENAME TO {old}")
        _drop_keys(name, old)
        op.execute(
            f"CREATE TABLE {name} (LIKE {old} INCLUDING DEFAULTS) "
            f"PARTITION BY RANGE ({table.column})"
        )
        _add_keys(name, _PARTITIONED_KEYS[name])
        for sql in parts.create_default_sql(name):
            op.execute(sql)
        held = _rows(
            f"SELECT DISTINCT CAST(date_trunc('day', {table.column} AT TIME ZONE 'UTC') AS date) "
            f"FROM {old} WHERE {table.column} >= now() - interval '{_HISTORY_DAYS} days' "
            f"AND {table.column} < now() + interval '{_AHEAD_DAYS + 1} days'"
        )
        days = {row[0] for row in held} | set(
            parts.days_between(today - timedelta(days=1), today + timedelta(days=_AHEAD_DAYS))
        )
        for day in sorted(days):  # type: ignore[type-var]
            for sql in parts.create_day_sql(table, day):  # type: ignore[arg-type]
                op.execute(sql)
        op.execute(f"INSERT INTO {name} SELECT * FROM {old}")
        op.execute(f"DROP TABLE {old}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in parts.PARTITIONED:
        name, old = table.name, f"{table.name}_partitioned"
        op.execute(f"ALTER TABLE {name} RENAME TO {old}")
        _drop_keys(name, old)
        op.execute(f"CREATE TABLE {name} (LIKE {old} INCLUDING DEFAULTS)")
        _add_keys(name, _PLAIN_KEYS[name])
        # Two rows under one plain key can only come from the race the docstring names: the
        # first one stays.
        op.execute(f"INSERT INTO {name} SELECT * FROM {old} ON CONFLICT DO NOTHING")
        op.execute(f"DROP TABLE {old}")  # and its partitions
    op.execute(f"DROP SCHEMA IF EXISTS {parts.SCHEMA} CASCADE")
    op.execute(
        "DELETE FROM event_dispositions d WHERE NOT EXISTS "
        "(SELECT 1 FROM events e WHERE e.id = d.event_id)"
    )
    op.execute(
        f"ALTER TABLE event_dispositions ADD CONSTRAINT {_FK} FOREIGN KEY (event_id) "
        "REFERENCES events (id) ON DELETE CASCADE"
    )
