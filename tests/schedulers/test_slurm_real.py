"""The Slurm adapter against a real Slurm 22.05 cluster of five fake 8-GPU nodes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sentinel.schedulers import make_scheduler
from sentinel.schedulers.base import NodeInfo
from sentinel.schedulers.slurm import SlurmScheduler
from tests.harness.slurm import SlurmCluster

pytestmark = pytest.mark.slurm


def adapter(cluster: SlurmCluster) -> SlurmScheduler:
    scheduler = make_scheduler(cluster.settings())
    assert isinstance(scheduler, SlurmScheduler)
    return scheduler


async def test_nodes_of_an_idle_cluster(slurm: SlurmCluster) -> None:
    result = await adapter(slurm).nodes()

    assert result.ok, result.error
    assert result.commands == ("sinfo -N --json",)
    assert [n.name for n in result.nodes] == ["node1", "node2", "node3", "node4", "node5"]
    assert {(n.state, n.gpus, n.gpus_used, n.responding) for n in result.nodes} == {
        ("idle", 8, 0, True)
    }
    counts = result.counts()
    assert (counts.total, counts.idle, counts.drained, counts.down) == (5, 5, 0, 0)
    assert counts.spare_gpus == 40


async def test_xid79_host_drained_and_job_runs_again_on_the_others(slurm: SlurmCluster) -> None:
    """The acceptance scenario: a job on 4 of 5 hosts; one host fails; it is drained, the job
    is requeued and runs again, resumed from its checkpoint, on the 4 healthy hosts."""
    scheduler = adapter(slurm)
    job_id = slurm.submit_job(nodes=4)
    first = slurm.wait_running(job_id)
    state = await scheduler.job_state(job_id)
    assert state.ok and state.job is not None
    assert (state.job.state, list(state.job.nodes)) == ("running", first)
    culprit = first[1]

    drained = await scheduler.drain(culprit, 'XID 79 on GPU 3: "fell off the bus"\nstep 1200')
    requeued = await scheduler.requeue(job_id, [culprit])

    assert drained.ok, drained.error
    assert requeued.ok, requeued.error
    assert f"scontrol requeue {job_id}" in requeued.commands
    assert f"scontrol update JobId={job_id} ExcNodeList={culprit}" in requeued.commands
    again = slurm.wait_running(job_id, avoid=(culprit,), restarts=1, timeout=15)
    assert len(again) == 4 and culprit not in again
    assert "start restart=1" in slurm.job_output(job_id)
    assert "resumed_from_step=0" not in slurm.job_output(job_id).splitlines()[-1]

    state = await scheduler.job_state(job_id)
    assert state.job is not None
    assert state.job.restarts == 1 and state.job.excluded_nodes == (culprit,)
    nodes = await scheduler.nodes()
    node = nodes.node(culprit)
    assert node is not None and node.state == "drained"
    assert node.reason == "XID 79 on GPU 3: fell off the bus step 1200"
    sinfo = slurm.sinfo()[culprit]
    assert "DRAIN" in sinfo["state_flags"] and sinfo["reason"] == node.reason
    assert nodes.counts().drained == 1 and nodes.counts().idle == 0


async def test_drain_of_a_busy_node_shows_draining_then_resume(slurm: SlurmCluster) -> None:
    scheduler = adapter(slurm)
    job_id = slurm.submit_job(nodes=1)
    (busy,) = slurm.wait_running(job_id)

    assert (await scheduler.drain(busy, "suspect")).ok
    node = (await scheduler.nodes()).node(busy)
    assert node is not None and (node.state, node.reason) == ("draining", "suspect")

    resumed = await scheduler.resume(busy)
    node = (await scheduler.nodes()).node(busy)
    assert resumed.ok, resumed.error
    assert node is not None and node.state in ("mixed", "allocated") and node.reason == ""


async def test_resume_of_a_node_in_service_is_a_success(slurm: SlurmCluster) -> None:
    result = await adapter(slurm).resume("node5")

    assert result.ok, result.error
    assert "already in service" in result.output


async def test_requeue_of_a_pending_job_only_adds_the_exclusion(slurm: SlurmCluster) -> None:
    scheduler = adapter(slurm)
    job_id = slurm.submit_job(nodes=2, hold=True)

    result = await scheduler.requeue(job_id, ["node3"])
    again = await scheduler.requeue(job_id, ["node1"])

    assert result.ok and again.ok, (result.error, again.error)
    assert "pending" in result.output
    assert not any("scontrol requeue" in c for c in result.commands)
    state = await scheduler.job_state(job_id)
    assert state.job is not None
    assert (state.job.state, state.job.reason, state.job.restarts) == ("pending", "JobHeldUser", 0)
    assert state.job.excluded_nodes == ("node1", "node3")


async def test_expected_failures_are_results_not_exceptions(slurm: SlurmCluster) -> None:
    scheduler = adapter(slurm)
    job_id = slurm.submit_job(nodes=4)
    slurm.wait_running(job_id)

    unknown_job = await scheduler.job_state("987654")
    requeue_unknown = await scheduler.requeue("987654", ["node1"])
    unknown_node = await scheduler.drain("node99", "x")
    hostile = await scheduler.drain("node1 State=DOWN", "x")
    unknown_exclusion = await scheduler.requeue(job_id, ["node77"])

    assert not unknown_job.ok and "unknown job 987654" in (unknown_job.error or "")
    assert not requeue_unknown.ok and not requeue_unknown.retryable
    assert not unknown_node.ok and "Invalid node name" in (unknown_node.error or "")
    assert not unknown_node.retryable
    assert not hostile.ok and hostile.commands == ()
    assert not unknown_exclusion.ok and "node77" in (unknown_exclusion.error or "")
    # The refused requeue left the job alone.
    state = await scheduler.job_state(job_id)
    assert state.job is not None and (state.job.state, state.job.restarts) == ("running", 0)


async def test_requeue_of_an_ended_job_is_refused(slurm: SlurmCluster) -> None:
    scheduler = adapter(slurm)
    job_id = slurm.submit_job(nodes=1, hold=True)
    slurm.run("scancel", job_id)

    result = await scheduler.requeue(job_id, [])

    assert not result.ok and not result.retryable
    assert "CANCELLED" in (result.error or "")


async def _wait_node(
    scheduler: SlurmScheduler, host: str, done: Callable[[NodeInfo], bool], timeout: float = 30
) -> NodeInfo:
    deadline = time.monotonic() + timeout
    while True:
        node = (await scheduler.nodes()).node(host)
        assert node is not None
        if done(node) or time.monotonic() > deadline:
            return node
        await asyncio.sleep(0.2)


async def test_reboot_asap_returns_the_node_to_service(slurm: SlurmCluster) -> None:
    """The test cluster's RebootProgram restarts the node's slurmd as from a new boot."""
    scheduler = adapter(slurm)
    await scheduler.drain("node2", "sentinel: faulty_gpu (RESTART_BM)")

    result = await scheduler.reboot("node2", "sentinel: faulty_gpu (RESTART_BM) decision 1")

    assert result.ok, result.error
    assert result.commands[-1] == (
        "scontrol reboot ASAP nextstate=RESUME "
        "'reason=sentinel: faulty_gpu (RESTART_BM) decision 1' node2"
    )
    again = await scheduler.reboot("node2", "again")
    assert again.ok and (
        "its reboot was asked for already" in again.output or slurm.rebooted("node2")
    )
    node = await _wait_node(scheduler, "node2", lambda n: n.state == "idle" and not n.flags)
    assert (node.state, node.raw_state, node.reason) == ("idle", "IDLE", "")
    assert slurm.rebooted("node2")


def _reservations(slurm: SlurmCluster) -> str:
    return slurm.run("scontrol", "show", "reservation", check=False).stdout


async def test_gpu_reset_runs_on_the_drained_node_and_returns_it(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\necho "$SLURMD_NODENAME $*" >> {tmp_path}/resets.log\n')
    smi.chmod(0o755)
    scheduler = SlurmScheduler(conf=slurm.conf, timeout_s=10, nvidia_smi=str(smi))
    await scheduler.drain("node3", "sentinel: gpu_hbm_memory (RESET_GPU)")

    result = await scheduler.reset_gpu("node3", "5", "sentinel: gpu_hbm_memory (RESET_GPU)")

    assert result.ok, (result.error, result.commands, result.output)
    assert (tmp_path / "resets.log").read_text() == "node3 -r -i 5\n"
    assert any(c.startswith("srun --reservation=sentinel-reset-node3") for c in result.commands)
    node = (await scheduler.nodes()).node("node3")
    assert node is not None and (node.state, node.raw_state) == ("idle", "IDLE")
    assert "sentinel-reset-node3" not in _reservations(slurm)


async def test_a_failed_gpu_reset_drains_the_node_again(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    scheduler = SlurmScheduler(
        conf=slurm.conf, timeout_s=10, nvidia_smi=str(tmp_path / "no-nvidia-smi")
    )
    await scheduler.drain("node4", "sentinel: gpu_hbm_memory (RESET_GPU)")

    result = await scheduler.reset_gpu("node4", "2", "sentinel")

    assert not result.ok and (result.error or "").startswith("GPU 2 reset: ")
    node = (await scheduler.nodes()).node("node4")
    assert node is not None and node.state == "drained"
    assert node.reason.startswith("sentinel: GPU 2 reset failed")
    assert "sentinel-reset-node4" not in _reservations(slurm)
