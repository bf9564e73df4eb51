"""Log lines written around an agent crash or restart arrive exactly once.

Issue 14, finding 9: a restarted agent lost the lines written while it was down (its tail
offset lived in memory), or, with ``from_start``, stored them all a second time. The read
positions now live in the outbox, written in the same transaction as the observations made
from the lines before them, and a restart resumes there -- also across a rotation that
happened while the agent was down.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_helpers import (
    agent_process_config,
    context,
    eventually,
    service_observations,
    start_agent,
)

from sentinel.wire import LogRecord
from sentinel_agent.collectors.training_log import TrainingLogCollector
from sentinel_agent.tail import FileTailer, KmsgPosition, KmsgReader, decode_position, open_source
from tests.harness.service import LiveService

HOST = "resume-host"


def _config(tmp_path: Path, service: Any, collector: dict[str, Any], name: str) -> Path:
    config = tmp_path / "agent.yaml"
    data = agent_process_config(tmp_path, service, HOST, **{f"collectors.{name}": collector})
    config.write_text(yaml.safe_dump(data))
    return config


def _messages(service: Any, kind: str) -> Counter[str]:
    return Counter(o["data"]["message"] for o in service_observations(service, HOST, kind))


class Writer(threading.Thread):
    """Appends a numbered NCCL warning (one triage knows) every few ms, as a job's stderr would."""

    def __init__(self, path: Path, every_s: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.path, self.every_s = path, every_s
        self.written: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with self.path.open("a", buffering=1) as f:
            while not self.stopping.is_set():
                line = f"[rank{len(self.written) % 8}]:NCCL WARN Cuda failure {len(self.written)}"
                f.write(line + "\n")
                self.written.append(line)
                time.sleep(self.every_s)

    def stop(self) -> list[str]:
        self.stopping.set()
        self.join(5)
        return self.written


@pytest.mark.slow
@pytest.mark.parametrize("from_start", [False, True])
def test_lines_written_around_a_kill_9_arrive_exactly_once(
    live_service: LiveService,
    tmp_path: Path,
    agent_processes: list[subprocess.Popen[bytes]],
    from_start: bool,
) -> None:
    train = tmp_path / "train.log"
    before = [f"[rank0]:NCCL WARN Cuda failure before the agent {i}" for i in range(5)]
    train.write_text("".join(line + "\n" for line in before))
    config = _config(
        tmp_path,
        live_service,
        {"enabled": True, "paths": [str(train)], "from_start": from_start},
        "training_logs",
    )
    log = tmp_path / "agent.log"
    writer = Writer(train)
    agent_processes.append(start_agent(config, log))
    eventually(lambda: service_observations(live_service, HOST), 20, "the agent's start", log)
    time.sleep(0.5)  # its tailer has opened the file: lines from now on are new
    writer.start()
    eventually(lambda: len(_messages(live_service, "log")) >= 50, 20, "the first lines", log)
    agent_processes[0].send_signal(signal.SIGKILL)  # a crash, mid-stream
    agent_processes[0].wait(10)
    time.sleep(1.5)  # lines keep coming while the agent is down
    agent_processes.append(start_agent(config, log))
    time.sleep(1.5)
    expected = (before if from_start else []) + writer.stop()
    eventually(
        lambda: len(_messages(live_service, "log")) >= len(expected),
        30,
        f"{len(expected)} lines",
        log,
    )
    time.sleep(1.0)  # a line stored twice would show up now
    got = _messages(live_service, "log")
    assert set(got) == set(expected), sorted(set(expected) - set(got))[:10]
    assert [m for m, n in got.items() if n > 1] == []


XID = "NVRM: Xid (PCI:0000:3b:00): 79, pid={n}, name=python, GPU has fallen off the bus.\n"


def _append(path: Path, numbers: range) -> None:
    with path.open("a") as f:
        f.write("".join(XID.format(n=n) for n in numbers))


@pytest.mark.slow
@pytest.mark.parametrize("old_file_kept", [True, False])
def test_a_log_rotated_while_the_agent_was_down_is_finished_then_followed(
    live_service: LiveService,
    tmp_path: Path,
    agent_processes: list[subprocess.Popen[bytes]],
    old_file_kept: bool,
) -> None:
    kern = tmp_path / "kern.log"
    kern.write_text("")
    config = _config(tmp_path, live_service, {"enabled": True, "path": str(kern)}, "kernel_log")
    log = tmp_path / "agent.log"

    def pids() -> Counter[int]:
        return Counter(o["data"]["pid"] for o in service_observations(live_service, HOST, "xid"))

    agent_processes.append(start_agent(config, log))
    eventually(lambda: service_observations(live_service, HOST), 20, "the agent's start", log)
    time.sleep(0.5)
    _append(kern, range(1, 6))
    eventually(lambda: len(pids()) == 5, 10, "XIDs 1-5", log)
    agent_processes[0].send_signal(signal.SIGKILL)
    agent_processes[0].wait(10)
    # While the agent is down: more lines, then logrotate moves the file and starts anew.
    _append(kern, range(6, 9))
    os.rename(kern, tmp_path / "kern.log.1")
    if not old_file_kept:  # compressed or deleted: what it held after the position is gone
        os.unlink(tmp_path / "kern.log.1")
    _append(kern, range(9, 11))
    agent_processes.append(start_agent(config, log))
    _append(kern, range(11, 13))
    expected = set(range(1, 13)) if old_file_kept else set(range(1, 6)) | set(range(9, 13))
    eventually(lambda: set(pids()) >= expected, 15, f"XIDs {sorted(expected)}", log)
    time.sleep(1.0)
    got = pids()
    assert set(got) == expected and set(got.values()) == {1}, got


# -- the read positions themselves --------------------------------------------------------


def _reopened(tailer: FileTailer, path: Path) -> FileTailer:
    position = tailer.position()
    tailer.close()
    return FileTailer(path, resume=position)


def test_an_unfinished_line_is_read_whole_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("")
    tail = FileTailer(path)
    assert tail.read_lines() == []
    with path.open("a") as f:
        f.write("one\ntw")
    assert tail.read_lines() == ["one"]
    tail = _reopened(tail, path)
    with path.open("a") as f:
        f.write("o\n")
    assert tail.read_lines() == ["two"]


def test_a_file_truncated_or_replaced_while_down_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("a first line\nanother\n")
    tail = FileTailer(path, from_start=True)
    assert len(tail.read_lines()) == 2
    position = tail.position()
    tail.close()
    with path.open("w") as f:  # copytruncate, then the job writes again
        f.write("b\n")
    assert FileTailer(path, resume=position).read_lines() == ["b"]
    # Rewritten in place to a longer file with other contents: not the file we had read.
    path.write_text("c rewritten, longer than before\nd\n")
    assert FileTailer(path, resume=position).read_lines() == [
        "c rewritten, longer than before",
        "d",
    ]


def test_a_file_that_appeared_while_down_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "later.log"
    tail = FileTailer(path)
    assert tail.read_lines() == []
    position = tail.position()  # "not there yet": whatever shows up later is new
    tail.close()
    path.write_text("written while the agent was down\n")
    assert FileTailer(path, resume=position).read_lines() == ["written while the agent was down"]


def test_an_open_traceback_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    path.write_text("")
    ctx, _ = context()
    first = TrainingLogCollector(ctx, paths=[str(path)], interval_s=1)
    first.poll()
    with path.open("a") as f:
        f.write('[rank2]: Traceback (most recent call last):\n[rank2]:   File "t.py", line 3\n')
    assert first.poll() == []  # the traceback is still open
    saved = {k: v for k, v in first.positions().items() if v is not None}
    first.close()
    ctx, _ = context()
    second = TrainingLogCollector(
        dataclasses.replace(ctx, positions=saved),
        paths=[str(path)],
        interval_s=1,
    )
    with path.open("a") as f:
        f.write("[rank2]: RuntimeError: CUDA error: an illegal memory access was encountered\n")
    (record,) = second.poll()
    assert isinstance(record, LogRecord)
    assert record.message.startswith("[rank2]: Traceback") and record.message.count("\n") == 2
    assert record.rank == 2 and record.pattern == "cuda_illegal_address"


def test_kmsg_resumes_after_the_last_record_it_returned() -> None:
    try:
        reader = open_source(Path("/dev/kmsg"), from_start=True)
    except OSError:
        pytest.skip("/dev/kmsg is not readable here")
    assert isinstance(reader, KmsgReader)
    lines = reader.read_lines()
    position = decode_position(reader.position())
    reader.close()
    assert isinstance(position, KmsgPosition) and len(lines) > 5
    # Restarted five records back: exactly those five come again, then whatever is new.
    back = KmsgPosition(position.boot_id, position.seq - 5).encode()
    again = KmsgReader(Path("/dev/kmsg"), resume=back)
    assert again.read_lines()[:5] == lines[-5:]
    again.close()
    # A position from another boot: sequence numbers started again, everything is new.
    other_boot = KmsgPosition("another-boot", position.seq).encode()
    fresh = KmsgReader(Path("/dev/kmsg"), resume=other_boot)
    assert fresh.read_lines()[: len(lines)] == lines
    fresh.close()
    # No position and not from the start: what is there is skipped, yet its place is known,
    # so that a restart before the next kernel message still resumes from here.
    at_end = KmsgReader(Path("/dev/kmsg"))
    kept = decode_position(at_end.position())
    assert isinstance(kept, KmsgPosition) and kept.seq >= position.seq
    at_end.close()
