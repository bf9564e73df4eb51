"""Named leases in the database: one holder at a time, until it stops renewing.

Used to elect the one process that runs the loop services and to make one sender own an alert
group. The UPDATE's WHERE clause is re-checked under the row lock on PostgreSQL and writers
are serialised on SQLite, so of two processes racing for a free lease exactly one wins.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.db.models import Lease
from sentinel.db.upsert import dialect_of, insert_for


def process_identity() -> str:
    """A holder name unique to this process: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def try_acquire(
    session: AsyncSession, name: str, holder: str, now: datetime, ttl: timedelta
) -> bool:
    """Take or renew the lease; True when ``holder`` has it afterwards. The caller commits."""
    ins = insert_for(dialect_of(session), Lease)
    await session.execute(
        ins.on_conflict_do_nothing(index_elements=["name"]),
        {"name": name, "holder": holder, "acquired_at": now, "expires_at": now + ttl},
    )
    result = await session.execute(
        update(Lease)
        .where(Lease.name == name, (Lease.holder == holder) | (Lease.expires_at < now))
        .values(holder=holder, expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        return True
    current = await session.scalar(select(Lease.holder).where(Lease.name == name))
    return current == holder


async def release(session: AsyncSession, name: str, holder: str) -> None:
    await session.execute(
        delete(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .execution_options(synchronize_session=False)
    )


async def holder_of(session: AsyncSession, name: str, now: datetime) -> str | None:
    lease = await session.get(Lease, name)
    if lease is None or lease.expires_at < now:
        return None
    return lease.holder
