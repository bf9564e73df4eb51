"""Every fake-NVML scenario, run by real agents, arrives at the REAL service as it should."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sentinel_agent.config import AgentConfig
from sentinel_agent.heartbeat import Heartbeat
from sentinel_agent.sim import fleet_configs, run_fleet

Obs = list[dict[str, Any]]


def _of(obs: Obs, kind: str, gpu: int | None = None) -> Obs:
    return [
        o["data"]
        for o in obs
        if o["kind"] == kind and (gpu is None or o["data"].get("gpu_index") == gpu)
    ]


def healthy(obs: Obs) -> None:
    samples = _of(obs, "gpu_sample")
    assert {s["gpu_index"] for s in samples} == set(range(8))
    assert not any(s["lost"] for s in samples)
    assert not _of(obs, "xid") and not _of(obs, "ecc")
    assert all(s["temperature_c"] is not None and s["uuid"] for s in samples)


def xid79(obs: Obs) -> None:
    (xid,) = _of(obs, "xid")
    assert (xid["xid"], xid["gpu_index"], xid["source"], xid["pci_bus_id"]) == (
        79,
        3,
        "nvml",
        "00000000:5D:00.0",
    )
    assert any(s["lost"] for s in _of(obs, "gpu_sample", 3))
    assert not any(s["lost"] for g in (0, 1, 2, 4) for s in _of(obs, "gpu_sample", g))


def hbm_remap_failure(obs: Obs) -> None:
    assert sorted(x["xid"] for x in _of(obs, "xid", 5)) == [48, 63, 64]
    counters = {(e["counter"], e["previous"], e["current"]) for e in _of(obs, "ecc", 5)}
    assert counters == {
        ("ecc_volatile_uncorrected", 0, 1),
        ("remapped_rows_uncorrectable", 0, 1),
        ("remap_pending", 0, 1),
        ("remap_failure", 0, 1),
    }
    assert any(s["remap_failure"] for s in _of(obs, "gpu_sample", 5))


def gpu_lost(obs: Obs) -> None:
    assert not _of(obs, "xid")
    lost = [s for s in _of(obs, "gpu_sample") if s["lost"]]
    assert lost and {s["gpu_index"] for s in lost} == {6}
    assert lost[0]["uuid"]  # a lost GPU is still named
    # Its rank stopped beating; the others go on.
    ranks = {h["local_rank"] for h in _of(obs, "heartbeat")}
    assert ranks == set(range(8))
    last = max(_of(obs, "heartbeat"), key=lambda h: h["step"])["step"]
    assert max(h["step"] for h in _of(obs, "heartbeat") if h["local_rank"] == 6) < last


def nvlink_climb(obs: Obs) -> None:
    flits = sorted(s["nvlink"]["crc_flit"] for s in _of(obs, "gpu_sample", 2))
    assert flits[0] < flits[-1] and flits[-1] == 7060
    assert all(s["nvlink"]["crc_flit"] == 0 for s in _of(obs, "gpu_sample", 1))


def thermal_slowdown(obs: Obs) -> None:
    hot = [s for s in _of(obs, "gpu_sample", 4) if s["temperature_c"] == 92]
    assert hot and hot[-1]["clock_event_reasons"] == 0x20 | 0x40
    assert all(s["clock_event_reasons"] == 0 for s in _of(obs, "gpu_sample", 0))


CHECKS: dict[str, Callable[[Obs], None]] = {
    "healthy": healthy,
    "xid79": xid79,
    "hbm_remap_failure": hbm_remap_failure,
    "gpu_lost": gpu_lost,
    "nvlink_climb": nvlink_climb,
    "thermal_slowdown": thermal_slowdown,
}
DUMP = b"\x80\x05" + b"flight recorder bytes, never unpickled " * 2000


def _wired(config: AgentConfig, tmp_path: Path) -> AgentConfig:
    """The same agent with every host source switched on, fed from files in tmp_path."""
    (tmp_path / "fr").mkdir()
    for name in ("kern.log", "train.log"):
        (tmp_path / name).write_text("")
    data = config.model_dump(mode="json")
    data["host_id"] = "scn-wired"
    data["outbox"]["path"] = str(tmp_path / "scn-wired" / "outbox.db")
    data["intervals"].update(logs_s=0.1, flight_recorder_s=0.1)
    data["collectors"].update(
        # from_start: the files are created empty before the agent starts, and however late
        # its first poll comes, nothing written after that may be skipped.
        kernel_log={"enabled": True, "path": str(tmp_path / "kern.log"), "from_start": True},
        training_logs={
            "enabled": True,
            "paths": [str(tmp_path / "train.log")],
            "from_start": True,
        },
        heartbeat={"enabled": True, "address": f"unix://{tmp_path}/hb.sock"},
        flight_recorder={
            "enabled": True,
            "prefix": str(tmp_path / "fr" / "nccl_trace_rank_"),
            "settle_s": 0.2,
        },
    )
    return AgentConfig.model_validate(data)


async def _feed(tmp_path: Path) -> None:
    """What a sick host's kernel, job and ranks would produce."""
    deadline = time.monotonic() + 20
    while not (tmp_path / "hb.sock").exists():  # ranks start after the agent's socket exists
        assert time.monotonic() < deadline, "the agent never bound its heartbeat socket"
        await asyncio.sleep(0.05)
    with (tmp_path / "kern.log").open("a") as f:
        f.write(
            "[ 5032.3] NVRM: Xid (PCI:0000:ab:00): 79, pid=4242, name=python, "
            "GPU has fallen off the bus.\n[ 5032.4] nothing to see\n"
        )
    with (tmp_path / "train.log").open("a") as f:
        f.write(
            "[rank13]:[E626 06:24:44.903881913 ProcessGroupNCCL.cpp:616] [Rank 13] Watchdog "
            "caught collective operation timeout: WorkNCCL(SeqNum=808, OpType=ALLREDUCE, "
            "NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600020 milliseconds before "
            "timing out.\n"
        )
    hb = Heartbeat("job-live", 13, 5, 16, gpu_index=5, address=f"unix://{tmp_path}/hb.sock")
    for step in range(1, 6):
        hb.beat(step, step_time_s=0.2, checkpoint_step=4 if step > 4 else None)
        await asyncio.sleep(0.05)
    (tmp_path / "fr" / "nccl_trace_rank_13").write_bytes(DUMP)


def wired(obs: Obs) -> None:
    (xid,) = _of(obs, "xid")
    assert (xid["xid"], xid["source"], xid["pci_bus_id"], xid["gpu_index"], xid["pid"]) == (
        79,
        "kernel_log",
        "00000000:AB:00.0",
        5,
        4242,
    )
    (log,) = _of(obs, "log")
    assert (log["family"], log["source"], log["rank"], log["job_id"]) == (
        "pytorch",
        "nccl",
        13,
        "job-live",
    )
    beats = [h for h in _of(obs, "heartbeat") if h["rank"] == 13]
    assert sum(h["beats"] for h in beats) == 5 and max(h["step"] for h in beats) == 5
    (dump,) = _of(obs, "flight_recorder_dump")
    assert (dump["rank"], dump["job_id"], dump["size_bytes"]) == (13, "job-live", len(DUMP))
    assert dump["upload_id"] == dump["sha256"] == hashlib.sha256(DUMP).hexdigest()


async def _check_all(url: str, viewer_token: str, hosts: dict[str, str]) -> list[str]:
    failures = []
    headers = {"Authorization": f"Bearer {viewer_token}"}
    async with httpx.AsyncClient(timeout=10) as client:
        for host, name in hosts.items():
            response = await client.get(
                f"{url}/api/v1/hosts/{host}/observations", params={"limit": 5000}, headers=headers
            )
            if response.status_code != 200:
                failures.append(f"{name}: HTTP {response.status_code} {response.text[:200]}")
                continue
            obs = response.json()
            try:
                ids = Counter(o["id"] for o in obs)
                assert max(ids.values()) == 1, "an observation stored twice"
                assert _of(obs, "agent_status"), "no agent status"
                (wired if name == "wired" else CHECKS[name])(obs)
            except (AssertionError, ValueError) as exc:
                failures.append(f"{name}: {exc!r}")
    return failures


@pytest.mark.slow
async def test_scenarios_arrive_at_the_real_service(live_service: Any, tmp_path: Path) -> None:
    hosts = {f"scn-{i:04d}": name for i, name in enumerate(CHECKS)}
    configs = fleet_configs(
        len(hosts),
        service_url=live_service.url,
        token=live_service.agent_token,
        workdir=tmp_path,
        scenarios=hosts,
        host_prefix="scn-",
        gpu_interval_s=0.25,
        send_interval_s=0.25,
        heartbeat_interval_s=0.25,
        status_interval_s=1.0,
    )
    configs.append(_wired(configs[0], tmp_path))
    hosts["scn-wired"] = "wired"
    stop = asyncio.Event()
    fleet = asyncio.create_task(run_fleet(configs, stop=stop, job_id="job-live"))
    await _feed(tmp_path)
    await asyncio.sleep(2.5)  # every scenario's timeline is over by now
    failures: list[str] = ["not checked"]
    deadline = time.monotonic() + 20
    while failures and time.monotonic() < deadline:  # patient on a loaded machine
        failures = await _check_all(live_service.url, live_service.viewer_token, hosts)
        if failures:
            await asyncio.sleep(0.5)
    stop.set()
    await fleet
    assert not failures, failures
