"""No scheduler command (sinfo, scontrol) runs inside a database transaction: while one runs,
the service holds no connection from its pool."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import httpx
from builders import xid
from conftest import auth
from sqlalchemy.pool import QueuePool

from remediation.timeline import HOSTS, Timeline
from sentinel.clock import VirtualClock
from sentinel.schedulers.base import NodesResult, OpResult
from sentinel.schedulers.fake import FakeScheduler


class PoolWatchingScheduler(FakeScheduler):
    """The fake cluster, noting for every command how many connections were checked out of the
    service's pool (a session holds one from its first statement until commit or rollback)."""

    def __init__(self, nodes: Iterable[str], pool: QueuePool) -> None:
        super().__init__(nodes)
        self._pool = pool
        self.seen: list[tuple[str, int]] = []

    def _note(self, op: str) -> None:
        self.seen.append((op, self._pool.checkedout()))

    async def nodes(self) -> NodesResult:
        self._note("nodes")
        return await super().nodes()

    async def drain(self, host: str, reason: str) -> OpResult:
        self._note("drain")
        return await super().drain(host, reason)

    async def requeue(self, job_id: str, exclude_hosts: Sequence[str]) -> OpResult:
        self._note("requeue")
        return await super().requeue(job_id, exclude_hosts)

    async def resume(self, host: str) -> OpResult:
        self._note("resume")
        return await super().resume(host)

    async def reboot(self, host: str, reason: str) -> OpResult:
        self._note("reboot")
        return await super().reboot(host, reason)


async def test_scheduler_commands_run_with_no_transaction_open(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> None:
    ctx = app_client.app.state.ctx  # type: ignore[attr-defined]
    assert isinstance(ctx.engine.pool, QueuePool)
    fake = PoolWatchingScheduler(HOSTS, ctx.engine.pool)
    tl = Timeline(app_client, tokens, clock, fake)
    await tl.beats()
    clock.advance(10)
    await tl.post("node3", [xid(79, gpu=2, when=clock.now())])
    # decide (sinfo for the spare hosts), drain, requeue, reboot, then see whether it is back
    await tl.loops()
    r = await app_client.post(
        "/api/v1/hosts/node3/repaired",
        headers=auth(tokens["operator"]),
        json={"comment": "GPU swapped"},
    )
    assert r.status_code == 200, r.text
    assert fake.seen == [
        ("nodes", 0),
        ("drain", 0),
        ("requeue", 0),
        ("reboot", 0),
        ("nodes", 0),
        ("resume", 0),
    ]
