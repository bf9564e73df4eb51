"""Repairs on the virtual clock: a host excluded for a fault NVIDIA says a reboot or a GPU
reset cures is rebooted (or has its GPU reset) once the job has left, and returns to service
by itself when the scheduler has it back and its agent reports no hard fault since."""

from __future__ import annotations

from builders import gpu_sample, xid
from sqlalchemy import select

from remediation.timeline import Timeline
from sentinel.db.engine import unit_of_work
from sentinel.db.models import AuditEntry, Host


async def drain_state(tl: Timeline, host: str) -> str:
    async with unit_of_work(tl.ctx.sessions) as s:
        row = await s.get(Host, host)
        assert row is not None
        return row.drain_state


async def audit(tl: Timeline, host: str) -> list[str]:
    async with unit_of_work(tl.ctx.sessions) as s:
        rows = await s.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.target == f"host:{host}")
            .order_by(AuditEntry.id)
        )
        return list(rows.all())


async def test_xid79_reboots_the_host_and_it_returns_when_back_and_healthy(tl: Timeline) -> None:
    # t=10 s: node3 reports XID 79 (NVIDIA: RESTART_BM).
    tl.clock.advance(10)
    await tl.post("node3", [xid(79, gpu=2, when=tl.clock.now())])
    await tl.loops()

    # → drained, the job requeued without it, then the reboot asked for.
    [d] = await tl.decisions()
    assert [s["op"] for s in d.outcome["steps"]] == ["drain", "requeue", "reboot"]
    assert d.outcome["repair"]["rule"] == "RebootWhereNvidiaSaysRestart"
    assert "RebootWhereNvidiaSaysRestart" in d.reason and d.status == "done"
    assert "node3" not in await tl.job_nodes()
    assert await drain_state(tl, "node3") == "repairing"
    assert [args[0] for op, args in tl.fake.calls if op == "reboot"] == ["node3"]

    # t=20 s: still rebooting: nothing changes.
    tl.clock.advance(10)
    await tl.loops()
    assert await drain_state(tl, "node3") == "repairing"

    # t=80 s: Slurm has it back (nextstate=RESUME), but its agent has not reported since.
    tl.clock.advance(60)
    tl.fake.boot("node3")
    await tl.loops()
    assert await drain_state(tl, "node3") == "repairing"

    # t=85 s: the agent reports healthy GPUs → repaired, with no human.
    tl.clock.advance(5)
    await tl.post("node3", [gpu_sample(2, tl.clock.now())])
    await tl.loops()
    assert await drain_state(tl, "node3") == "none"
    assert await audit(tl, "node3") == ["host.drain", "host.reboot", "host.repaired"]


async def test_a_host_that_faults_again_after_its_reboot_is_not_repaired(tl: Timeline) -> None:
    tl.clock.advance(10)
    await tl.post("node3", [xid(79, gpu=2, when=tl.clock.now())])
    await tl.loops()
    tl.clock.advance(60)
    tl.fake.boot("node3")
    tl.clock.advance(5)
    await tl.post("node3", [xid(79, gpu=2, when=tl.clock.now())])
    await tl.ctx.stages.run(await tl.ctx.triage_worker.run_once())
    assert await tl.ctx.remediation.follow_repairs(tl.ctx.sessions) == []

    assert await drain_state(tl, "node3") == "repairing"
    assert "host.repaired" not in await audit(tl, "node3")


async def test_reset_gpu_where_nvidia_says_so(tl: Timeline) -> None:
    # XID 95 (uncontained ECC): NVIDIA says RESET_GPU.
    tl.clock.advance(10)
    await tl.post("node2", [xid(95, gpu=5, when=tl.clock.now())])
    await tl.loops()

    [d] = await tl.decisions()
    assert d.outcome["host_action"] == "RESET_GPU"
    assert [s["op"] for s in d.outcome["steps"]] == ["drain", "requeue", "reset_gpu"]
    assert d.outcome["repair"]["rule"] == "ResetGpuWhereNvidiaSaysReset"
    gpu = d.outcome["repair"]["gpu"]
    assert [args[:2] for op, args in tl.fake.calls if op == "reset_gpu"] == [("node2", gpu)]
    assert await drain_state(tl, "node2") == "repairing"

    tl.clock.advance(5)
    await tl.post("node2", [gpu_sample(5, tl.clock.now())])
    await tl.loops()
    assert await drain_state(tl, "node2") == "none"
    assert await audit(tl, "node2") == ["host.drain", "host.gpu_reset", "host.repaired"]


async def test_a_failed_gpu_reset_leaves_the_host_drained_for_a_human(tl: Timeline) -> None:
    tl.fake.fail_next("reset_gpu", "nvidia-smi: GPU in use")
    tl.clock.advance(10)
    await tl.post("node2", [xid(95, gpu=5, when=tl.clock.now())])
    await tl.loops()

    [d] = await tl.decisions()
    assert d.status == "done"  # the job was restarted without the host
    assert [(s["op"], s["ok"]) for s in d.outcome["steps"]] == [
        ("drain", True),
        ("requeue", True),
        ("reset_gpu", False),
    ]
    assert await drain_state(tl, "node2") == "drained"


async def test_reboot_cap_leaves_the_host_drained(tl: Timeline) -> None:
    tl.ctx.remediation._settings = tl.ctx.settings.remediation.model_copy(
        update={"max_reboots_per_hour": 0}
    )
    tl.clock.advance(10)
    await tl.post("node3", [xid(79, gpu=2, when=tl.clock.now())])
    await tl.loops()

    [d] = await tl.decisions()
    assert [s["op"] for s in d.outcome["steps"]] == ["drain", "requeue"]
    assert d.outcome["repair"]["rule"] == "CapRebootsPerHour"
    assert d.outcome["repair"]["step"] is None
    assert await drain_state(tl, "node3") == "drained"
