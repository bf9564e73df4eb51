"""Two service processes on one PostgreSQL race for the same degraded findings: one swap
decision, one approval and one requeue each, every time, and each spare given once."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, update

from sentinel.clock import SystemClock
from sentinel.db.engine import make_engine, make_sessionmaker, unit_of_work
from sentinel.db.models import DegradedFinding, Host, Job, JobRank, Spare, Swap
from sentinel.remediation.settings import RemediationSettings, SwapSettings
from sentinel.remediation.swap import SwapService
from sentinel.schedulers.base import OpResult
from sentinel.schedulers.fake import FakeScheduler

TRIALS = 30


def _hosts(trial: int) -> list[str]:
    return [f"t{trial}-node{i}" for i in range(1, 6)]  # 1-4 the job, 5 the spare


class CountingScheduler(FakeScheduler):
    requeue_calls = 0

    async def requeue(self, job_id: str, exclude_hosts: Sequence[str]) -> OpResult:
        self.requeue_calls += 1
        return await super().requeue(job_id, exclude_hosts)


def _process(url: str, barrier: mp.synchronize.Barrier, out: mp.Queue) -> None:
    async def run() -> int:
        engine = make_engine(url, pool_size=4)
        sessions = make_sessionmaker(engine)
        fake = CountingScheduler([h for t in range(TRIALS) for h in _hosts(t)])
        for t in range(TRIALS):
            fake.submit(f"job-{t}", 4)
        # Caps off (this test is about exactly once); pool_size 0: the seeded spares stay as
        # they are (the pool is not refilled).
        settings = RemediationSettings(
            swap=SwapSettings(max_per_hour=10_000, max_per_job=10_000, pool_size=0)
        )
        service = SwapService(SystemClock(), settings, fake)
        for t in range(TRIALS):
            async with unit_of_work(sessions) as s:
                finding = await s.scalar(
                    select(DegradedFinding.id).where(DegradedFinding.host_id == _hosts(t)[1])
                )
            assert finding is not None
            await asyncio.to_thread(barrier.wait)
            await service.decide(sessions, finding)
            # Both have decided (or found it decided): the job reports a newer checkpoint.
            if barrier.wait() == 0:
                async with unit_of_work(sessions) as s:
                    await s.execute(
                        update(JobRank)
                        .where(JobRank.job_id == f"job-{t}")
                        .values(step=130, checkpoint_step=130)
                    )
            await asyncio.to_thread(barrier.wait)
            await service.run(sessions)
        await engine.dispose()
        return fake.requeue_calls

    out.put(asyncio.run(run()))


async def _seed(url: str) -> None:
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    now = datetime.now(UTC)
    async with unit_of_work(sessions) as s:
        for t in range(TRIALS):
            hosts = _hosts(t)
            for h in hosts:
                s.add(Host(id=h, agent_id=h, first_seen=now, last_seen=now, last_seq=1))
            s.add(Job(id=f"job-{t}", first_seen=now, last_seen=now, world_size=32))
            await s.flush()
            for r in range(32):
                s.add(
                    JobRank(
                        job_id=f"job-{t}",
                        rank=r,
                        host_id=hosts[r // 8],
                        local_rank=r % 8,
                        gpu_index=r % 8,
                        step=120,
                        checkpoint_step=100,
                        last_beat_at=now,
                        step_changed_at=now,
                    )
                )
            s.add(
                DegradedFinding(
                    host_id=hosts[1],
                    gpu="0",
                    indicator="remap_pending:0",
                    rule="RowRemapPending",
                    reason="GPU 0: a row remap is pending",
                    evidence=[],
                    open_key=f"{hosts[1]}|remap_pending:0",
                    state="open",
                    opened_at=now,
                    updated_at=now,
                )
            )
            s.add(
                Spare(
                    host_id=hosts[4],
                    state="ready",
                    reason="seeded",
                    added_at=now,
                    updated_at=now,
                )
            )
    await engine.dispose()


async def _swaps(url: str) -> list[Swap]:
    engine = make_engine(url)
    async with unit_of_work(make_sessionmaker(engine)) as s:
        rows = list((await s.scalars(select(Swap))).all())
        used = await s.scalar(select(func.count()).select_from(Spare).where(Spare.state == "used"))
    await engine.dispose()
    assert used == TRIALS
    return rows


@pytest.mark.postgres
def test_two_processes_one_swap_and_one_requeue(pg_cluster, pg_template) -> None:  # type: ignore[no-untyped-def]
    name = f"swaprace_{uuid.uuid4().hex[:8]}"
    pg_cluster.psql(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    url = pg_cluster.url(name)
    asyncio.run(_seed(url))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    out: mp.Queue[int] = ctx.Queue()
    procs = [ctx.Process(target=_process, args=(url, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0
    requeues = [out.get(timeout=5) for _ in procs]
    swaps = asyncio.run(_swaps(url))
    assert len(swaps) == TRIALS and len({s.finding_id for s in swaps}) == TRIALS
    assert {s.status for s in swaps} == {"done"}, {(s.status, s.error) for s in swaps}
    assert all(s.attempts == 1 for s in swaps)
    assert sorted(s.spare_host or "" for s in swaps) == sorted(_hosts(t)[4] for t in range(TRIALS))
    assert sum(requeues) == TRIALS, requeues  # one requeue per swap, across both processes
