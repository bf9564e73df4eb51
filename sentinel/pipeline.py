"""What follows an incident change, as explicit stages in a fixed order: decide, then alert.

Triage, the heartbeat watchdog, remediation's loop and an operator's resolve change incidents in
their own transactions and hand the changes here once those have committed. Each change goes
through the stages in order, each stage in its own units of work; a change that a stage makes
(a 'mitigating' transition when there is nothing to do, say) goes through the stages after it.
So an alert is stated after the decision on its incident is recorded, and carries it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.incidents.service import IncidentChange

log = logging.getLogger(__name__)


class Stage(Protocol):
    """One step after an incident change: opens its own units of work, returns the incident
    changes it made (committed)."""

    async def __call__(
        self, sessions: async_sessionmaker[AsyncSession], change: IncidentChange, /
    ) -> Sequence[IncidentChange]: ...


class IncidentStages:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, decide: Stage, alert: Stage
    ) -> None:
        self._sessions = sessions
        self.stages: tuple[Stage, ...] = (decide, alert)

    async def run(self, changes: Iterable[IncidentChange]) -> None:
        """Take each change through the stages in order; the changes a stage makes follow
        right after, through the stages after that one."""
        queue = deque((change, 0) for change in changes)
        while queue:
            change, first = queue.popleft()
            follow_ups: list[tuple[IncidentChange, int]] = []
            for n in range(first, len(self.stages)):
                follow_ups += [(c, n + 1) for c in await self._step(self.stages[n], change)]
            queue.extendleft(reversed(follow_ups))

    async def _step(self, stage: Stage, change: IncidentChange) -> Sequence[IncidentChange]:
        # The change is committed: a failing stage must not keep it from the later stages
        # (an alert without its decision beats no alert), nor the next changes from theirs.
        try:
            return await stage(self._sessions, change)
        except Exception:
            log.exception(
                "incident stage %r failed on %s of incident %s",
                stage,
                change.kind,
                change.incident.id,
            )
            return []
