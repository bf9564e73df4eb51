"""What a remediation tick has to act on, asked of the database in one query.

The leader runs the remediation step every second, and most ticks find nothing to do. Each of
its steps that acts on rows (decide on settled incidents, execute approved decisions, approve
swaps at their checkpoint...) selects them first; asked one by one, those selects cost a round
trip each (a network one on PostgreSQL) and a transaction per group. Here every step's own
select is asked as one ``SELECT EXISTS (...), EXISTS (...), ...``, and a step whose select
would find no row is skipped: skipping it is what running it would have done.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum, auto
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession


class Outstanding(StrEnum):
    """The rows a step of the tick acts on, one kind per step (RemediationService.run_due,
    SwapService.run)."""

    settled_incidents = auto()  # open, settled, no decision yet: decide
    expired_decisions = auto()  # executing past their lease: take over
    held_decisions = auto()  # release once their condition holds
    unacknowledged_decisions = auto()  # restarts in place no launcher acknowledged in time
    approved_decisions = auto()  # execute
    repairing_hosts = auto()  # back in service once repaired
    undecided_findings = auto()  # open degraded findings without a swap: decide
    refused_for_a_spare = auto()  # swaps refused for want of a spare: decide again
    waiting_swaps = auto()  # approve at the job's checkpoint
    expired_swaps = auto()  # executing past their lease: fail
    unacknowledged_swaps = auto()  # swaps in the job no launcher acknowledged in time
    approved_swaps = auto()  # execute


async def outstanding(
    session: AsyncSession, selects: Mapping[Outstanding, Select[Any]]
) -> frozenset[Outstanding]:
    """The kinds whose select finds a row now, in one round trip."""
    found = (await session.execute(select(*(s.exists() for s in selects.values())))).one()
    return frozenset(kind for kind, there in zip(selects, found, strict=True) if there)
