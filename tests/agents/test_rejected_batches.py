"""Real service, real agent process: a batch the service refuses never blocks the host.

Issue 14, finding 1: a value the service refuses used to hold up everything behind it (or,
refused with a 4xx, took the XID queued beside it to the dead letters). Now a refused batch
is split until the refused observation is alone; only it is dead-lettered, with the
service's answer, and what the host reports next arrives within seconds. A 413 is split the
same way instead of being thrown away.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from agent_helpers import (
    agent_process_config,
    eventually,
    free_port,
    metric,
    service_observations,
    start_agent,
)

from sentinel.wire import LogRecord, XidEvent
from sentinel_agent.clock import SystemClock
from sentinel_agent.transport.outbox import Outbox
from tests.harness.service import LiveService

HOST = "refused-host"
XID_LINE = (
    "[ 5032.3] NVRM: Xid (PCI:0000:3b:00): 79, pid={pid}, name=python, "
    "GPU has fallen off the bus.\n"
)


def _write_config(tmp_path: Path, service: Any, **over: Any) -> Path:
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump(agent_process_config(tmp_path, service, HOST, **over)))
    return config


def _refused_row() -> tuple[str, tuple[str, bool, str]]:
    """A kernel-log record carrying a value the service refuses with 422.

    It stands for any such value (the issue's was a NUL byte on PostgreSQL): the wire
    accepts only four severities, so the service names ``severity`` in its answer.
    """
    record = LogRecord(
        id=uuid.uuid4(),
        observed_at=datetime.now(UTC),
        source="kernel",
        pattern="nvme_io_error",
        family="ssd",
        severity="error",
        message="nvme0n1: I/O error",
    )
    body = json.loads(record.model_dump_json())
    body["severity"] = "catastrophic"
    return str(record.id), ("log", False, json.dumps(body))


def test_a_refused_observation_is_dead_lettered_alone_and_the_xids_get_through(
    live_service: LiveService, tmp_path: Path, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    # Queued during an outage, so they travel in one batch: the refused line, then an XID.
    queued_xid = XidEvent(id=uuid.uuid4(), observed_at=datetime.now(UTC), xid=79, gpu_index=3)
    refused_id, refused = _refused_row()
    Outbox(tmp_path / "outbox.db", host_id=HOST, clock=SystemClock(), max_bytes=1 << 24).close()
    with contextlib.closing(sqlite3.connect(tmp_path / "outbox.db")) as db, db:
        db.executemany(
            "INSERT INTO pending (kind, periodic, body) VALUES (?, ?, ?)",
            [refused, ("xid", False, queued_xid.model_dump_json())],
        )
    kern = tmp_path / "kern.log"
    kern.write_text("")
    port = free_port()
    config = _write_config(
        tmp_path,
        live_service,
        **{
            "intervals.send_s": 30.0,  # only the XIDs wake the sender
            "collectors.kernel_log": {"enabled": True, "path": str(kern)},
            "metrics": {"enabled": True, "port": port},
        },
    )
    log = tmp_path / "agent.log"
    agent_processes.append(start_agent(config, log))

    def xid_ids() -> set[str]:
        return {o["id"] for o in service_observations(live_service, HOST, "xid")}

    eventually(lambda: str(queued_xid.id) in xid_ids(), 10, "the XID queued with it", log)
    with kern.open("a") as f:  # the host goes on reporting: a fresh XID from the kernel
        f.write(XID_LINE.format(pid=4242))
    eventually(
        lambda: any(
            o["data"].get("pid") == 4242 for o in service_observations(live_service, HOST, "xid")
        ),
        5,
        "the kernel XID written after the refusal",
        log,
    )
    with contextlib.closing(sqlite3.connect(tmp_path / "outbox.db", timeout=5)) as db:
        letters = db.execute("SELECT status, reason, body FROM dead_letters").fetchall()
    assert len(letters) == 1, letters
    status, reason, body = letters[0]
    assert status == 422 and "severity" in reason  # the service's answer, kept on disk
    assert [o["id"] for o in json.loads(body)["observations"]] == [refused_id]  # alone
    assert metric(port, "sentinel_agent_dead_letters_total") == 1
    assert (metric(port, "sentinel_agent_batches_split_total") or 0) >= 1
    assert refused_id not in {o["id"] for o in service_observations(live_service, HOST)}


def test_a_batch_over_the_services_body_limit_is_split_not_thrown_away(
    tmp_path: Path, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    data = tmp_path / "service"
    service = LiveService(
        database_url=f"sqlite:///{data / 'sentinel.db'}",
        data_dir=data,
        extra_env={"SENTINEL_SERVER__MAX_BODY_BYTES": str(16 * 1024)},
    )
    service.start()
    try:
        train = tmp_path / "train.log"
        train.write_text("")
        config = _write_config(
            tmp_path,
            service,
            **{"collectors.training_logs": {"enabled": True, "paths": [str(train)]}},
        )
        log = tmp_path / "agent.log"
        agent_processes.append(start_agent(config, log))
        eventually(lambda: service_observations(service, HOST), 15, "the agent's first batch", log)
        # Read in one poll, so they leave in one batch of about 60 KiB.
        lines = [
            f"[rank{i % 8}]:host NCCL WARN Cuda failure line {i} " + "x" * 200 for i in range(250)
        ]
        train.write_text("".join(line + "\n" for line in lines))

        def shipped() -> Counter[str]:
            return Counter(o["data"]["message"] for o in service_observations(service, HOST, "log"))

        eventually(lambda: len(shipped()) == len(lines), 20, "every line", log)
        assert set(shipped().values()) == {1}
        with contextlib.closing(sqlite3.connect(tmp_path / "outbox.db", timeout=5)) as db:
            assert db.execute("SELECT COUNT(*) FROM dead_letters").fetchone() == (0,)
        assert "resending it as two halves" in log.read_text()
    finally:
        service.stop()


def test_a_kernel_line_with_nul_bytes_does_not_cost_the_xids_around_it(
    db_url: str, tmp_path: Path, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    """The issue's measurement, on both databases: NUL bytes in a kernel line (PostgreSQL
    cannot store them, the wire refuses them), an XID in the same read, another after."""
    data = tmp_path / "service"
    service = LiveService(database_url=db_url, data_dir=data)
    service.start()
    try:
        kern = tmp_path / "kern.log"
        kern.write_text("")
        config = _write_config(
            tmp_path, service, **{"collectors.kernel_log": {"enabled": True, "path": str(kern)}}
        )
        log = tmp_path / "agent.log"
        agent_processes.append(start_agent(config, log))
        eventually(lambda: service_observations(service, HOST), 20, "the agent's start", log)
        time.sleep(0.5)  # its tailer has opened the file
        with kern.open("ab") as f:
            f.write(b"[87201.44] EDAC MC1: 1 UE memory read error on CPU_SrcID#1\0\0\0 (chan:2)\n")
            f.write(XID_LINE.format(pid=1).encode())
        time.sleep(1.0)
        with kern.open("a") as f:
            f.write(XID_LINE.format(pid=2))

        def pids() -> list[int]:
            return sorted(o["data"]["pid"] for o in service_observations(service, HOST, "xid"))

        eventually(lambda: pids() == [1, 2], 10, "both XIDs", log)
        (edac,) = service_observations(service, HOST, "log")
        assert edac["data"]["message"].endswith("CPU_SrcID#1 (chan:2)")  # the line, minus NULs
    finally:
        service.stop()
