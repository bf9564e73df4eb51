"""Leader election through the database: the leader alone runs the loop services.

Every replica runs an elector; the one holding the ``leader`` lease starts its loops (those at
a fixed interval, ``runtime.loops.every``, and those that run back to back such as triage), and
stops them the moment a renewal fails. A dead leader's lease expires after ``ttl`` and another
replica takes over, so the loops fail over without home-made clustering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.clock import Clock
from sentinel.db import leases
from sentinel.db.engine import unit_of_work

log = logging.getLogger(__name__)

LEADER_LEASE = "leader"

# A loop that runs until its stop event is set (e.g. TriageWorker.run_forever).
Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class LeaderElector:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        ttl_s: float = 15.0,
        identity: str | None = None,
        loops: Sequence[Loop] = (),
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_s)
        self.identity = identity or leases.process_identity()
        self._leading = False
        self._task: asyncio.Task[None] | None = None
        self._loops = tuple(loops)
        self._loop_stop = asyncio.Event()
        self._loop_tasks: list[asyncio.Task[None]] = []

    @property
    def is_leader(self) -> bool:
        return self._leading

    async def step(self) -> bool:
        """One election round: acquire or renew, start or stop the loops accordingly."""
        try:
            async with unit_of_work(self._sessions) as session:
                held = await leases.try_acquire(
                    session, LEADER_LEASE, self.identity, self._clock.now(), self._ttl
                )
        except SQLAlchemyError:
            log.exception("leader lease renewal failed")
            held = False
        if held and not self._leading:
            log.info("%s is now the leader: starting loop services", self.identity)
            self._leading = True
            self._loop_stop = asyncio.Event()
            self._loop_tasks = [
                asyncio.create_task(loop(self._loop_stop), name=f"leader-{loop.__name__}")
                for loop in self._loops
            ]
        elif not held and self._leading:
            log.warning("%s lost the leader lease: stopping loop services", self.identity)
            self._stop_loops()
        return held

    def _stop_loops(self) -> None:
        self._leading = False
        # Each loop stops at its event: triage once its pass has committed or rolled back, an
        # interval loop at once (a run in progress is cancelled; its unit of work rolls back).
        self._loop_stop.set()
        self._loop_tasks = []

    async def _run(self) -> None:
        while True:
            await self.step()
            await asyncio.sleep(self._ttl.total_seconds() / 3)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="leader-elector")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._leading:
            tasks = self._loop_tasks
            self._stop_loops()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(SQLAlchemyError):
                async with unit_of_work(self._sessions) as session:
                    await leases.release(session, LEADER_LEASE, self.identity)
