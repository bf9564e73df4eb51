"""Accountability: every hard-fault event ends linked to an incident or dismissed with a reason.

A hard fault is an XID whose NVIDIA action is not IGNORE, an uncorrectable ECC or row-remap
failure, a lost GPU, a silent host, or a log record of critical severity. The triage worker
records each one as ``pending`` the first time it weighs it, then links it (as the cause or a
symptom of the incident whose verdict accounts for it) or dismisses it with a reason. What is
still pending past ``TriageSettings.accountable_s`` is a failure of triage to answer: the
``/api/v1/events/unaccounted`` endpoint, the dashboard and a metric show it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.db.models import EventDisposition
from sentinel.db.upsert import dialect_of, insert_for
from sentinel.triage.signals import Signal
from sentinel.wire.severity import Severity

Role = Literal["cause", "symptom", "dismissed"]
PENDING: Final = "pending"
_HARD_CONDITIONS: Final = frozenset({"fallen_off_bus", "row_remap_failure", "uncorrectable_ecc"})


def is_hard_fault(signal: Signal) -> bool:
    """Whether a signal is a hard fault that must end in an incident or a recorded dismissal."""
    if signal.kind == "xid":
        action = signal.attrs.get("action")
        return action is not None and action != "IGNORE" and signal.severity_rank >= 2
    if signal.kind == "gpu_sample":
        return signal.pattern in _HARD_CONDITIONS
    if signal.kind == "host_silent":
        return True
    return signal.kind == "log" and signal.severity == Severity.CRITICAL


@dataclass(frozen=True)
class Disposition:
    role: Role
    incident_id: uuid.UUID | None
    reason: str


class Accountant:
    """Writes pending rows for new hard faults and settles them; remembers what it settled."""

    def __init__(self) -> None:
        self._open: set[str] = set()

    @property
    def pending(self) -> int:
        return len(self._open)

    async def note(self, session: AsyncSession, signals: Iterable[Signal], now: datetime) -> None:
        """Record the hard faults among newly weighed signals as pending (once per event)."""
        rows: dict[str, dict[str, object]] = {}
        for s in signals:
            if s.event_id is None or s.event_id in rows or not is_hard_fault(s):
                continue
            try:
                event_id = uuid.UUID(s.event_id)
            except ValueError:
                continue  # maintenance windows and other non-event signals
            rows[s.event_id] = {
                "event_id": event_id,
                "host_id": s.host or "-",
                "kind": s.kind,
                "summary": s.text[:500],
                "observed_at": s.time or now,
                "seen_at": now,
                "role": PENDING,
                "incident_id": None,
                "reason": None,
                "decided_at": None,
            }
        if not rows:
            return
        ins = insert_for(dialect_of(session), EventDisposition)
        result = await session.execute(
            ins.on_conflict_do_nothing(index_elements=["event_id"]).returning(ins.table.c.event_id),
            list(rows.values()),
        )
        self._open.update(str(r[0]) for r in result.all())

    async def settle(
        self, session: AsyncSession, outcomes: Mapping[str, Disposition], now: datetime
    ) -> int:
        """Give pending events their disposition; returns how many were settled."""
        settled = 0
        for event_id, d in outcomes.items():
            if event_id not in self._open:
                continue
            await session.execute(
                update(EventDisposition)
                .where(
                    EventDisposition.event_id == uuid.UUID(event_id),
                    EventDisposition.role == PENDING,
                )
                .values(role=d.role, incident_id=d.incident_id, reason=d.reason, decided_at=now)
                .execution_options(synchronize_session=False)
            )
            self._open.discard(event_id)
            settled += 1
        return settled

    async def reload(self, session: AsyncSession) -> None:
        """A new leader takes over the pending events its predecessor left."""
        self._open = {
            str(e)
            for e in (
                await session.scalars(
                    select(EventDisposition.event_id).where(EventDisposition.role == PENDING)
                )
            ).all()
        }


async def unaccounted(
    session: AsyncSession, now: datetime, older_than_s: float, limit: int = 500
) -> list[EventDisposition]:
    """Hard-fault events neither linked to an incident nor dismissed within the bound."""
    return list(
        (
            await session.scalars(
                select(EventDisposition)
                .where(
                    EventDisposition.role == PENDING,
                    EventDisposition.seen_at <= now - timedelta(seconds=older_than_s),
                )
                .order_by(EventDisposition.observed_at)
                .limit(limit)
            )
        ).all()
    )


async def count_unaccounted(session: AsyncSession, now: datetime, older_than_s: float) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(EventDisposition)
            .where(
                EventDisposition.role == PENDING,
                EventDisposition.seen_at <= now - timedelta(seconds=older_than_s),
            )
        )
        or 0
    )
