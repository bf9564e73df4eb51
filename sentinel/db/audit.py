"""The audit log's one writer: who did what to which job, host, decision or alert, and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.db.models import AuditEntry


class Actor(Protocol):
    """Whoever acts: a token's principal (operator, agent, ...) or Sentinel itself."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str: ...


@dataclass(frozen=True)
class _System:
    name: str = "sentinel"
    role: str = "system"


# Sentinel's own loops: drains, repairs, the spare pool.
SENTINEL: Actor = _System()


def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    target: str,
    detail: dict[str, Any],
    at: datetime,
) -> None:
    """Add one audit row to the session's unit of work (it commits or rolls back with it)."""
    session.add(
        AuditEntry(
            actor=actor.name,
            role=actor.role,
            action=action,
            target=target,
            detail=detail,
            at=at,
        )
    )
