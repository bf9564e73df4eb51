"""Two service processes on one PostgreSQL race for the same incidents: one decision and one
requeue each, every time."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from sentinel.clock import SystemClock
from sentinel.db.engine import make_engine, make_sessionmaker, unit_of_work
from sentinel.db.models import Decision, Incident, Job, JobRank
from sentinel.incidents.service import TriageService
from sentinel.incidents.settings import TriageSettings
from sentinel.metrics import ServiceMetrics
from sentinel.remediation.service import RemediationService
from sentinel.remediation.settings import RemediationSettings
from sentinel.schedulers.base import OpResult
from sentinel.schedulers.fake import FakeScheduler
from sentinel.triage.taxonomy import Category
from sentinel.triage.verdict import Evidence, Verdict

TRIALS = 100
XID79 = Verdict(
    category=Category.FAULTY_GPU,
    confidence=0.9,
    reason="XID 79",
    rule="BlameHardGpuXidOverPeerTimeouts",
    evidence=[
        Evidence(
            text="Xid 79",
            pattern=None,
            family="xid",
            role="cause",
            host=None,
            event_id=None,
            xid=79,
        )
    ],
)
# Enough spare nodes that every decision can exclude its host (no WaitWhenNoSpareHost).
NODES = [f"node{i}" for i in range(1, 13)]


class CountingScheduler(FakeScheduler):
    """The fake cluster, counting every requeue it is asked for (ok or not)."""

    requeue_calls = 0

    async def requeue(self, job_id: str, exclude_hosts: Sequence[str]) -> OpResult:
        self.requeue_calls += 1
        return await super().requeue(job_id, exclude_hosts)


def _process(url: str, ids: list[str], barrier: mp.synchronize.Barrier, out: mp.Queue) -> None:
    async def run() -> int:
        engine = make_engine(url, pool_size=4)
        sessions = make_sessionmaker(engine)
        fake = CountingScheduler(NODES)
        fake.submit("job-1", 4)
        clock = SystemClock()
        triage = TriageService(clock, TriageSettings(), ServiceMetrics())
        # Caps off: this test is about exactly once, not about when to stop restarting.
        settings = RemediationSettings(max_restarts=10_000, max_drains_per_hour=10_000)
        service = RemediationService(clock, settings, fake, triage)
        for incident_id in ids:
            await asyncio.to_thread(barrier.wait)
            await service.decide(sessions, uuid.UUID(incident_id))
            await service.run_due(sessions)
        await engine.dispose()
        return fake.requeue_calls

    out.put(asyncio.run(run()))


async def _seed(url: str, ids: list[uuid.UUID]) -> None:
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    now = datetime.now(UTC)
    async with unit_of_work(sessions) as s:
        s.add(Job(id="job-1", first_seen=now, last_seen=now, world_size=32, state="running"))
        await s.flush()
        for r in range(32):
            s.add(
                JobRank(
                    job_id="job-1",
                    rank=r,
                    host_id=NODES[r // 8],
                    local_rank=r % 8,
                    gpu_index=r % 8,
                    step=120,
                    checkpoint_step=100,
                    last_beat_at=now,
                    step_changed_at=now,
                )
            )
        for i, incident_id in enumerate(ids):
            s.add(
                Incident(
                    id=incident_id,
                    job_id="job-1",
                    state="open",
                    category="faulty_gpu",
                    confidence=0.9,
                    culprit_host=NODES[i % 4],
                    culprit_gpu="0",
                    culprit_rank=None,
                    rule="BlameHardGpuXidOverPeerTimeouts",
                    reason="XID 79",
                    verdict=XID79.model_dump(mode="json"),
                    opened_at=now,
                    detected_at=now,
                    updated_at=now,
                )
            )
    await engine.dispose()


async def _count(url: str) -> tuple[list[tuple[uuid.UUID, int]], list[str]]:
    engine = make_engine(url)
    async with unit_of_work(make_sessionmaker(engine)) as s:
        rows = (
            await s.execute(
                select(Decision.incident_id, func.count()).group_by(Decision.incident_id)
            )
        ).all()
        statuses = (await s.scalars(select(Decision.status))).all()
    await engine.dispose()
    return [(i, n) for i, n in rows], list(statuses)


@pytest.mark.postgres
def test_two_processes_one_decision_and_one_requeue(pg_cluster, pg_template) -> None:  # type: ignore[no-untyped-def]
    name = f"race_{uuid.uuid4().hex[:8]}"
    pg_cluster.psql(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    url = pg_cluster.url(name)
    ids = [uuid.uuid4() for _ in range(TRIALS)]
    asyncio.run(_seed(url, ids))
    # Spawned children (not forked: the test process has threads, and a fork copies their
    # locks held): two processes with their own pools and loops, as two replicas are; a
    # barrier starts each trial in both at the same moment.
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    out: mp.Queue[int] = ctx.Queue()
    procs = [
        ctx.Process(target=_process, args=(url, [str(i) for i in ids], barrier, out))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0
    requeues = [out.get(timeout=5) for _ in procs]
    per_incident, statuses = asyncio.run(_count(url))
    assert len(per_incident) == TRIALS and all(n == 1 for _, n in per_incident)
    assert set(statuses) == {"done"}
    assert sum(requeues) == TRIALS, requeues  # one requeue per decision, across both processes
