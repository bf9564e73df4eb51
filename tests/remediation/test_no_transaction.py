"""No scheduler command (sinfo, scontrol) runs inside a database transaction: while one runs,
no connection of the service's pool is in a transaction. (The ingest writer keeps one connection
checked out between its group commits, idle: counting checked-out connections would not say.)"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import httpx
from builders import xid
from conftest import auth
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.pool import QueuePool

from remediation.timeline import HOSTS, Timeline
from sentinel.clock import VirtualClock
from sentinel.schedulers.base import NodesResult, OpResult
from sentinel.schedulers.fake import FakeScheduler


class Transactions:
    """The service's connections in a transaction now (the engine's begin, commit and rollback
    events: a session begins one at its first statement and ends it at commit or rollback)."""

    def __init__(self) -> None:
        self.open: set[int] = set()
        self.begun = 0  # the watch sees transactions at all (else the test proves nothing)

    def watch(self, engine: object) -> None:
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "commit", self._end)
        event.listen(engine, "rollback", self._end)

    def _begin(self, conn: Connection) -> None:
        self.begun += 1
        self.open.add(id(conn.connection))

    def _end(self, conn: Connection) -> None:
        self.open.discard(id(conn.connection))


class PoolWatchingScheduler(FakeScheduler):
    """The fake cluster, noting for every command how many of the service's connections were
    in a transaction."""

    def __init__(self, nodes: Iterable[str], transactions: Transactions) -> None:
        super().__init__(nodes)
        self._transactions = transactions
        self.seen: list[tuple[str, int]] = []

    def _note(self, op: str) -> None:
        self.seen.append((op, len(self._transactions.open)))

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
    transactions = Transactions()
    transactions.watch(ctx.engine.sync_engine)
    fake = PoolWatchingScheduler(HOSTS, transactions)
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
    assert transactions.begun > 0
