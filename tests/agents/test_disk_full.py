"""A full outbox disk: the agent holds what it reads, says it is degraded, and recovers.

Issue 14, finding 3: with the outbox's disk full for 30 s the agent's sender died for good
(the process still "running"), the lines read meanwhile were dropped, and a ROLLBACK error
hid the real one. Now a refused write is logged as what it is, what the collectors read
waits in memory, the agent reports itself degraded (metrics, and ``outbox`` among the
failing components of its AgentStatus), and all of it is stored and sent once the disk
takes writes again.
"""

from __future__ import annotations

import errno
import logging
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from agent_helpers import (
    SCENARIOS,
    Receiver,
    agent_config,
    agent_process_config,
    eventually,
    free_port,
    metric,
    running,
    service_observations,
    start_agent,
    wait_for,
)

from sentinel_agent.agent import Agent
from sentinel_agent.transport.outbox import Row
from sentinel_agent.transport.spill import Spill
from tests.harness.service import LiveService

HOST = "diskfull-host"
_UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]
# Run the rest of the command line with an 8 MiB tmpfs of its own over the folder in $1.
_MOUNT_THEN_EXEC = 'mount -t tmpfs -o size=8m tmpfs "$1" && shift && exec "$@"'
LINES = [
    f"[rank{i % 8}]:NCCL WARN Cuda failure written while the disk was full {i}" for i in range(30)
]


def _can_mount_tmpfs(where: Path) -> bool:
    """An unprivileged user (or root) can mount a tmpfs in its own user+mount namespace."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        [*_UNSHARE, "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$1"', "sh", str(where)],
        capture_output=True,
        timeout=10,
    )
    return probe.returncode == 0


def _fill(path: Path) -> None:
    """Write until the file system says ENOSPC."""
    chunk = b"\0" * 65536
    with path.open("wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


@pytest.mark.slow
def test_a_real_enospc_on_the_outbox_disk_loses_nothing_and_heals(
    live_service: LiveService, tmp_path: Path, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    if not _can_mount_tmpfs(state):
        pytest.skip("cannot mount a tmpfs in a user namespace here (unshare)")
    train = tmp_path / "train.log"
    train.write_text("")
    port = free_port()
    data = agent_process_config(
        tmp_path,
        live_service,
        HOST,
        **{
            "intervals.gpu_s": 0.2,
            "intervals.status_s": 0.3,
            "collectors.nvml": {"provider": "fake", "scenario": str(SCENARIOS / "healthy.yaml")},
            "collectors.training_logs": {"enabled": True, "paths": [str(train)]},
            "outbox.path": str(state / "outbox.db"),
            "metrics": {"enabled": True, "port": port},
        },
    )
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump(data))
    log = tmp_path / "agent.log"
    # The agent's state folder is an 8 MiB tmpfs of its own: a disk that can really fill up.
    mount = [*_UNSHARE, "sh", "-c", _MOUNT_THEN_EXEC, "sh", str(state)]
    agent = start_agent(config, log, argv_prefix=mount)
    agent_processes.append(agent)
    eventually(lambda: service_observations(live_service, HOST), 20, "the agent's start", log)
    filler = Path(f"/proc/{agent.pid}/root") / state.relative_to("/") / "filler"
    _fill(filler)
    eventually(
        lambda: metric(port, "sentinel_agent_outbox_degraded") == 1, 20, "a refused write", log
    )
    with train.open("a") as f:
        f.write("".join(line + "\n" for line in LINES))
    eventually(
        lambda: (metric(port, "sentinel_agent_spilled_observations") or 0) >= len(LINES),
        10,
        "the lines held in memory",
        log,
    )
    time.sleep(3)  # the disk stays full a while; the agent keeps reading, holding, retrying
    assert agent.poll() is None
    filler.unlink()  # the operator frees the disk

    def shipped() -> set[str]:
        return {o["data"]["message"] for o in service_observations(live_service, HOST, "log")}

    eventually(lambda: shipped() >= set(LINES), 20, "the lines read while the disk was full", log)
    eventually(lambda: metric(port, "sentinel_agent_outbox_degraded") == 0, 10, "the recovery", log)
    assert (metric(port, "sentinel_agent_outbox_write_errors_total") or 0) >= 1
    statuses = sorted(
        service_observations(live_service, HOST, "agent_status"), key=lambda o: o["observed_at"]
    )
    assert any("outbox" in s["data"]["collectors_failing"] for s in statuses)
    eventually(
        lambda: (
            "outbox"
            in max(
                service_observations(live_service, HOST, "agent_status"),
                key=lambda o: o["observed_at"],
            )["data"]["collectors_ok"]
        ),
        10,
        "an AgentStatus saying the outbox is fine again",
        log,
    )
    text = log.read_text()
    assert "database or disk is full" in text  # the real error...
    assert "cannot rollback" not in text  # ...not a ROLLBACK error in its place


def _disk_full(agent: Agent, full: bool) -> None:
    """SQLite's own SQLITE_FULL: while ``full`` the database may not grow by a page (SQLite
    clamps the limit to the current size)."""
    outbox = agent.outbox
    with outbox._lock:  # the test reaches into the outbox: the fault is SQLite's, not a mock
        outbox._db.execute(f"PRAGMA max_page_count = {1 if full else 1 << 30}")


async def test_a_full_outbox_in_process_holds_lines_and_recovers(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "train-0.log").write_text("")
    config = agent_config(
        tmp_path,
        receiver.url,
        receiver.agent_token,
        **{
            "intervals.gpu_s": 0.05,
            "intervals.status_s": 0.2,
            "collectors.heartbeat.enabled": False,
            "collectors.flight_recorder.enabled": False,
            "collectors.kernel_log.enabled": False,
        },
    )
    agent = Agent(config)
    value = agent.metrics.registry.get_sample_value
    caplog.set_level(logging.INFO)
    async with running(agent):
        await wait_for(lambda: receiver.observations("gpu_sample"))
        # Nothing acknowledged meanwhile either, so no page is freed for reuse: the outbox
        # must grow, and cannot.
        receiver.fail(503, 100_000)
        _disk_full(agent, True)
        await wait_for(lambda: value("sentinel_agent_outbox_degraded") == 1)
        with (tmp_path / "train-0.log").open("a") as f:
            f.write("".join(line + "\n" for line in LINES))
        await wait_for(lambda: (value("sentinel_agent_spilled_observations") or 0) >= len(LINES))
        assert "outbox" in agent.status().collectors_failing
        _disk_full(agent, False)
        receiver.faults.clear()
        await wait_for(
            lambda: (
                {o.message for o in receiver.observations("log")} >= set(LINES)
                and value("sentinel_agent_outbox_degraded") == 0
            )
        )
        await wait_for(lambda: "outbox" in receiver.observations("agent_status")[-1].collectors_ok)
    assert any("outbox" in s.collectors_failing for s in receiver.observations("agent_status"))
    assert (value("sentinel_agent_outbox_write_errors_total") or 0) >= 1
    logged = [r.getMessage() for r in caplog.records]
    assert any("database or disk is full" in m for m in logged)
    assert not any("cannot rollback" in m for m in logged)
    ids = [o.id for o in receiver.observations()]
    assert len(ids) == len(set(ids))


def _row(kind: str, size: int) -> Row:
    return Row(kind, kind in ("gpu_sample", "heartbeat", "agent_status"), "x" * size)


def test_the_memory_bound_drops_oldest_samples_first_and_counts_every_drop() -> None:
    spill = Spill(max_bytes=10_000)
    assert spill.add([_row("gpu_sample", 1000) for _ in range(6)], {}, urgent=False).samples == 0
    events = [_row("xid", 1000) for _ in range(3)]
    dropped = spill.add(events, {"kernel_log:/x": "p1"}, urgent=True)
    assert dropped.samples == 0
    dropped = spill.add(
        [_row("log", 1000) for _ in range(3)], {"kernel_log:/x": "p2"}, urgent=False
    )
    # Over 10,000 bytes: the oldest samples go first, down to 90% of the bound.
    assert (dropped.samples, dropped.events) == (3, 0)
    assert [r.kind for r in spill.rows] == ["gpu_sample"] * 3 + ["xid"] * 3 + ["log"] * 3
    # Events alone over the bound: the newest are refused, and counted.
    dropped = spill.add([_row("log", 1000) for _ in range(5)], {}, urgent=False)
    assert dropped.samples == 3 and dropped.events == 1
    assert all(r.kind != "gpu_sample" for r in spill.rows) and spill.size_bytes <= 10_000
    assert spill.rows[:3] == events  # the first fault is kept
    assert spill.positions == {"kernel_log:/x": "p2"} and spill.urgent
    assert spill.dropped_samples == 6
