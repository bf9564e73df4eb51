"""Leases and leader election: one holder at a time, failover when the leader goes quiet."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.clock import VirtualClock
from sentinel.db import leases
from sentinel.db.engine import make_engine, make_sessionmaker, unit_of_work
from sentinel.runtime.leader import LeaderElector, Loop


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(db_url, pool_size=30)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def test_racing_processes_get_one_lease(
    sessions: async_sessionmaker[AsyncSession], clock: VirtualClock
) -> None:
    async def grab(i: int) -> bool:
        async with unit_of_work(sessions) as s:
            return await leases.try_acquire(
                s, "group-x", f"p{i}", clock.now(), timedelta(seconds=10)
            )

    results = await asyncio.gather(*[grab(i) for i in range(20)])
    assert sum(results) == 1
    winner = f"p{results.index(True)}"
    async with unit_of_work(sessions) as s:
        assert await leases.holder_of(s, "group-x", clock.now()) == winner
        # Renewal by the holder works; a stranger cannot take it before expiry.
        assert await leases.try_acquire(s, "group-x", winner, clock.now(), timedelta(seconds=10))
        assert not await leases.try_acquire(
            s, "group-x", "stranger", clock.now(), timedelta(seconds=10)
        )
    clock.advance(11)
    async with unit_of_work(sessions) as s:
        assert await leases.try_acquire(
            s, "group-x", "stranger", clock.now(), timedelta(seconds=10)
        )


async def test_leader_fails_over(
    sessions: async_sessionmaker[AsyncSession], clock: VirtualClock
) -> None:
    a = LeaderElector(sessions, clock, ttl_s=15, identity="a")
    b = LeaderElector(sessions, clock, ttl_s=15, identity="b")
    assert await a.step() and a.is_leader
    assert not await b.step() and not b.is_leader
    clock.advance(10)
    assert await a.step()  # renewed in time
    clock.advance(10)
    assert not await b.step()
    # a dies (stops renewing); after the ttl b takes over.
    clock.advance(16)
    assert await b.step() and b.is_leader
    # a comes back and finds it has lost: it stops its loops.
    assert not await a.step() and not a.is_leader
    await a.stop()
    await b.stop()
    async with unit_of_work(sessions) as s:
        assert await leases.holder_of(s, "leader", clock.now()) is None


async def test_the_leader_runs_its_loops_until_it_loses_the_lease(
    sessions: async_sessionmaker[AsyncSession], clock: VirtualClock
) -> None:
    running: set[str] = set()

    def loop_of(identity: str) -> Loop:
        async def loop(stop: asyncio.Event) -> None:
            running.add(identity)
            await stop.wait()
            running.discard(identity)

        return loop

    a = LeaderElector(sessions, clock, ttl_s=15, identity="a", loops=[loop_of("a")])
    b = LeaderElector(sessions, clock, ttl_s=15, identity="b", loops=[loop_of("b")])
    assert await a.step() and not await b.step()
    await asyncio.sleep(0)
    assert running == {"a"}
    clock.advance(16)  # a went quiet: b takes over; a, on its next round, stops its loops
    assert await b.step() and not await a.step()
    await asyncio.sleep(0)
    assert running == {"b"}
    await b.stop()
    assert running == set()
    await a.stop()
