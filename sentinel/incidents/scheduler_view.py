"""The scheduler's view of the fleet's hosts as evidence: down, drained, not responding, or in a
maintenance reservation, each written as a synthetic event for triage to weigh.

Polled by the leader; like the watchdogs it never touches incidents (one path for changes).
An event's id is derived from the node's state and reason, so a state seen again is a no-op
and a new one (a new reason, a node down again) is a new event. Drains Sentinel made itself
(reasons starting "sentinel:") are its own decisions, not evidence.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.clock import Clock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Host
from sentinel.incidents.watchdog import add_synthetic_events, synthetic_row
from sentinel.schedulers.base import NodeInfo, NodesResult

log = logging.getLogger(__name__)

KIND: Final = "scheduler_node"
OWN_REASON: Final = "sentinel:"


def worth_noting(node: NodeInfo) -> bool:
    """Out of service, or about to be, for a reason Sentinel did not give."""
    if node.reason.lower().startswith(OWN_REASON):
        return False
    return node.maintenance or not node.responding or node.state in ("down", "drained", "draining")


def node_row(node: NodeInfo, now: datetime) -> dict[str, Any]:
    # When the reason was set is when the scheduler learnt of it; a maintenance reservation
    # (no reason) is seen now.
    at = datetime.fromtimestamp(node.reason_at, UTC) if node.reason_at else now
    return synthetic_row(
        KIND,
        key=(node.name, node.raw_state, node.reason, node.reason_at, node.reservation),
        host=node.name,
        at=min(at, now),
        received=now,
        state=node.raw_state,
        reason=node.reason,
        reason_by=node.reason_by,
        reservation=node.reservation,
        maintenance=node.maintenance,
        text=f"{node.name} {node.raw_state} {node.reason}".strip(),
    )


class ListsNodes(Protocol):
    """What the view asks of a scheduler: its nodes (every SchedulerAdapter; a replay's
    recorded node states)."""

    async def nodes(self) -> NodesResult: ...


class SchedulerView:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def run_once(
        self, sessions: async_sessionmaker[AsyncSession], scheduler: ListsNodes
    ) -> int:
        """One poll: ``sinfo`` with no transaction open, then the new events in one; returns
        how many were new. A scheduler that cannot list its nodes (a dry run) adds nothing."""
        listing = await scheduler.nodes()
        if not listing.ok:
            return 0
        noted = [n for n in listing.nodes if worth_noting(n)]
        if not noted:
            return 0
        now = self._clock.now()
        async with unit_of_work(sessions) as session:
            known = set(
                (
                    await session.scalars(
                        select(Host.id).where(Host.id.in_([n.name for n in noted]))
                    )
                ).all()
            )
            added = await add_synthetic_events(
                session, [node_row(n, now) for n in noted if n.name in known]
            )
        if added:
            log.info("scheduler view: %d new node state(s)", added)
        return added
