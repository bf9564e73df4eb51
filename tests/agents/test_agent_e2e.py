"""A whole agent, in process, against the stand-in service: every source reaches it."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import (
    SCENARIOS,
    Receiver,
    agent_config,
    ecc,
    free_port,
    running,
    wait_for,
    xid,
)

from sentinel.wire import AgentStatus
from sentinel_agent.agent import Agent
from sentinel_agent.heartbeat import Heartbeat


async def test_every_source_arrives(tmp_path: Path, receiver: Receiver) -> None:
    (tmp_path / "kern.log").write_text("")
    (tmp_path / "train-0.log").write_text("")
    (tmp_path / "fr").mkdir()
    port = free_port()
    config = agent_config(
        tmp_path,
        receiver.url,
        receiver.agent_token,
        **{"metrics.enabled": True, "metrics.port": port},
    )
    agent = Agent(config)
    async with running(agent):
        await wait_for(lambda: receiver.observations("gpu_sample"))
        with (tmp_path / "kern.log").open("a") as f:
            f.write(
                "[ 99.1] NVRM: Xid (PCI:0000:9a:00): 94, pid=77, name=python, Contained: "
                "SM ECC error (0x1)\n[ 99.2] random noise\n"
            )
        with (tmp_path / "train-0.log").open("a") as f:
            f.write(
                "[rank0]: Traceback (most recent call last):\n"
                '[rank0]:   File "t.py", line 3, in <module>\n'
                "[rank0]: RuntimeError: CUDA error: unspecified launch failure\n"
            )
        hb = Heartbeat("job-e2e", 0, 0, 8, address=f"unix://{tmp_path}/hb.sock")
        await wait_for(lambda: (tmp_path / "hb.sock").exists())
        for step in range(1, 4):
            hb.beat(step, step_time_s=0.1)
        (tmp_path / "fr" / "nccl_trace_rank_0").write_bytes(b"\x80\x05not unpickled" * 100)
        await wait_for(
            lambda: (
                receiver.observations("flight_recorder_dump")
                and receiver.observations("heartbeat")
                and len(receiver.observations("log")) >= 1
                and receiver.observations("xid")
            )
        )
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    (xid,) = receiver.observations("xid")
    assert (xid.xid, xid.source, xid.gpu_index, xid.pci_bus_id) == (
        94,
        "kernel_log",
        4,
        "00000000:9A:00.0",
    )  # mapped to the GPU NVML saw at that address
    (log,) = receiver.observations("log")
    assert log.family == "cuda" and log.rank == 0 and log.job_id == "job-e2e"
    assert sum(h.beats for h in receiver.observations("heartbeat")) == 3
    (dump,) = receiver.observations("flight_recorder_dump")
    assert dump.job_id == "job-e2e" and dump.rank == 0
    for name in (
        "sentinel_agent_gpu_temperature_celsius",
        "sentinel_agent_gpu_power_watts",
        "sentinel_agent_gpu_last_xid",
        "sentinel_agent_gpu_nvlink_crc_flit_errors",
        "sentinel_agent_outbox_depth",
        "sentinel_agent_send_failures_total",
        "sentinel_agent_dropped_samples_total",
    ):
        assert name in metrics, name
    # its own names by default: none of dcgm-exporter's, which may run beside it
    assert "DCGM_FI_" not in metrics
    assert 'sentinel_agent_gpu_temperature_celsius{gpu="0",hostname="host-1"' in metrics
    assert 'sentinel_agent_gpu_last_xid{gpu="4",hostname="host-1"' in metrics


async def test_replacing_dcgm_exporter_serves_its_names(tmp_path: Path, receiver: Receiver) -> None:
    """metrics.mode: replace-dcgm-exporter: the agent's /metrics has dcgm-exporter's names and
    labels, for dashboards written for it; the agent's own health metrics keep theirs."""
    port = free_port()
    config = agent_config(
        tmp_path,
        receiver.url,
        receiver.agent_token,
        **{
            "metrics.enabled": True,
            "metrics.mode": "replace-dcgm-exporter",
            "metrics.port": port,
        },
    )
    async with running(Agent(config)):
        await wait_for(lambda: receiver.observations("gpu_sample"))
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    assert 'DCGM_FI_DEV_GPU_TEMP{Hostname="host-1",UUID="GPU-' in metrics
    assert "DCGM_FI_DEV_FB_USED" in metrics
    assert "sentinel_agent_gpu_temperature_celsius" not in metrics
    assert "sentinel_agent_outbox_depth" in metrics


async def test_critical_xid_skips_the_send_interval(tmp_path: Path, receiver: Receiver) -> None:
    config = agent_config(
        tmp_path,
        receiver.url,
        receiver.agent_token,
        **{
            "intervals.send_s": 30.0,
            "intervals.gpu_s": 30.0,
            "collectors.nvml.scenario": str(SCENARIOS / "xid79.yaml"),
            "collectors.kernel_log.enabled": False,
            "collectors.training_logs.enabled": False,
            "collectors.heartbeat.enabled": False,
            "collectors.flight_recorder.enabled": False,
        },
    )
    async with running(Agent(config)):
        await wait_for(lambda: receiver.batches)  # the start-up batch (send interval 0)
        # XID 79 fires 1 s after start; only the critical path can deliver it this soon.
        await wait_for(lambda: receiver.observations("xid"), timeout=3.0)
    (xid,) = receiver.observations("xid")
    assert xid.xid == 79


class Exploding:
    name = "exploding"
    interval_s = 0.05

    def __init__(self) -> None:
        self.calls = 0

    def poll(self) -> list[Any]:
        self.calls += 1
        raise RuntimeError("boom")

    def close(self) -> None:
        pass


async def test_a_failing_collector_is_counted_retried_and_isolated(
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    config = agent_config(
        tmp_path, receiver.url, receiver.agent_token, **{"intervals.status_s": 0.3}
    )
    agent = Agent(config)
    bad = Exploding()
    agent.collectors.append(bad)
    async with running(agent):
        await wait_for(
            lambda: any(
                s.collectors_failing == ["exploding"] for s in receiver.observations("agent_status")
            )
        )
        await asyncio.sleep(1.0)
    errors = agent.metrics.registry.get_sample_value(
        "sentinel_agent_collector_errors_total", {"collector": "exploding"}
    )
    assert errors is not None and 2 <= errors <= 6  # backed off: 0.1, 0.2, 0.4, 0.8 s ...
    assert receiver.observations("gpu_sample")  # the others kept working
    status = receiver.observations("agent_status")[-1]
    assert isinstance(status, AgentStatus) and "nvml" in status.collectors_ok


async def test_service_down_then_up_delivers_everything_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.fail(503, 10_000)
    config = agent_config(
        tmp_path,
        receiver.url,
        receiver.agent_token,
        **{"collectors.nvml.scenario": str(SCENARIOS / "xid79.yaml")},
    )
    agent = Agent(config)
    async with running(agent):
        await asyncio.sleep(1.5)
        assert agent.outbox.depth > 0 and not receiver.batches
        receiver.faults.clear()
        await wait_for(lambda: receiver.observations("xid") and agent.outbox.depth == 0)
    ids = [o.id for o in receiver.observations()]
    assert len(ids) == len(set(ids))
    seqs = [b.seq for b in receiver.batches]
    assert seqs == sorted(seqs) and seqs == list(range(seqs[0], seqs[0] + len(seqs)))


@pytest.mark.parametrize("status", [400, 404, 409])
async def test_poison_answers_do_not_loop(tmp_path: Path, receiver: Receiver, status: int) -> None:
    receiver.fail(status, 1)
    config = agent_config(tmp_path, receiver.url, receiver.agent_token)
    agent = Agent(config)
    async with running(agent):
        await wait_for(lambda: len(receiver.batches) >= 2)
    assert receiver.statuses.count(status) == 1
    assert agent.metrics.registry.get_sample_value("sentinel_agent_dead_letters_total") == 1


@pytest.mark.parametrize("status", [401, 403, 413, 422])
async def test_answers_that_are_not_final_lose_nothing(
    tmp_path: Path, receiver: Receiver, status: int
) -> None:
    """401/403 are retried; 413/422 split the batch, whose halves then get through."""
    config = agent_config(tmp_path, receiver.url, receiver.agent_token)
    agent = Agent(config)
    agent.outbox.put([xid(), ecc(), xid()])
    receiver.fail(status, 1)
    async with running(agent):
        await wait_for(
            lambda: len(receiver.observations("xid")) == 2 and receiver.observations("ecc")
        )
    assert receiver.statuses[0] == status
    assert agent.metrics.registry.get_sample_value("sentinel_agent_dead_letters_total") == 0


async def test_full_outbox_drops_samples_keeps_events_and_says_so(
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    receiver.fail(503, 10_000)
    scenario = tmp_path / "early.yaml"
    scenario.write_text(
        "timeline:\n"
        "  - {at: 0.05, gpu: 5, xid: 48, add: {ecc_volatile_uncorrected: 1}}\n"
        "  - {at: 0.1, gpu: 5, xid: 63, set: {remap_pending: true}, "
        "add: {remapped_rows_uncorrectable: 1}}\n"
        "  - {at: 0.15, gpu: 5, xid: 64, set: {remap_failure: true}}\n"
    )
    config = agent_config(
        tmp_path,
        receiver.url,
        receiver.agent_token,
        **{
            "outbox.max_bytes": 64 * 1024,
            "intervals.gpu_s": 0.02,
            "intervals.status_s": 0.2,
            "collectors.nvml.scenario": str(scenario),
        },
    )
    agent = Agent(config)
    queued: set[str] = set()
    write = agent.outbox.write

    def recording_write(rows: Any, *args: Any, **kwargs: Any) -> int:
        queued.update(json.loads(r.body)["id"] for r in rows if r.kind in ("xid", "ecc"))
        return write(rows, *args, **kwargs)

    agent.outbox.write = recording_write  # type: ignore[method-assign]
    async with running(agent):
        await wait_for(lambda: agent.outbox.dropped_samples > 0)
        receiver.faults.clear()
        await wait_for(
            lambda: (
                len(receiver.observations("xid")) == 3
                and any(s.outbox_dropped_samples > 0 for s in receiver.observations("agent_status"))
            )
        )
    assert sorted(x.xid for x in receiver.observations("xid")) == [48, 63, 64]
    delivered = {str(o.id) for o in receiver.observations() if o.kind in ("xid", "ecc")}
    assert delivered == queued  # events are never dropped
    dropped = agent.metrics.registry.get_sample_value("sentinel_agent_dropped_samples_total")
    assert dropped is not None and dropped >= agent.outbox.dropped_samples > 0
