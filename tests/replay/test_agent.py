"""A recording's printed lines reach the service as the agent's collectors ship them: when,
grouped how, and with what the agent knows of the host (its GPUs, its job)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from sentinel.replay.agent import SEQ_BASE, through_the_agents
from sentinel.replay.recording import Line, Printed
from sentinel.replay.synth import Fleet


def replayed(f: Fleet, duration: float = 30.0) -> list[Line]:
    return through_the_agents([Line.model_validate(x) for x in f.lines(duration)])


def shipped(f: Fleet, lines: list[Line]) -> list[tuple[float, str, dict[str, Any]]]:
    """(seconds into the recording, host, observation) for what the agents shipped."""
    return [
        ((line.at - f.start).total_seconds(), line.batch["host_id"], obs)
        for line in lines
        if line.batch is not None and line.batch["seq"] > SEQ_BASE
        for obs in line.batch["observations"]
    ]


def test_an_xid_is_shipped_at_once_naming_the_gpu_the_host_samples_at_its_address() -> None:
    f = Fleet(hosts=2, seed=1)
    f.kernel_log(
        20.0, 1, "NVRM: Xid (PCI:0000:5d:00): 79, pid=0, name=python, GPU has fallen off the bus."
    )
    ((at, host, xid),) = shipped(f, replayed(f))
    assert (at, host) == (20.0, "node-0001")
    assert xid["kind"] == "xid" and xid["xid"] == 79
    assert (xid["gpu_index"], xid["pci_bus_id"]) == (3, "00000000:5D:00.0")
    assert datetime.fromisoformat(xid["observed_at"]) == f.at(20.0)


def test_what_a_host_prints_at_one_instant_is_read_by_one_poll_into_one_batch() -> None:
    f = Fleet(hosts=1, seed=6)
    for bus in ("18", "2a"):
        f.kernel_log(20.0, 0, f"NVRM: Xid (PCI:0000:{bus}:00): 13, pid=7, name=python, Ch 0008")
    f.training_log(20.0, 0, "[rank1]: RuntimeError: CUDA error: an illegal memory access")
    batches = [line.batch for line in replayed(f) if line.batch and line.batch["seq"] > SEQ_BASE]
    assert [[o["kind"] for o in b["observations"]] for b in batches] == [["xid", "xid", "log"]]


def test_a_machine_check_block_is_one_record_once_the_kernel_is_quiet_for_a_poll() -> None:
    f = Fleet(hosts=1, seed=2)
    f.kernel_log(
        20.0,
        0,
        "mce: [Hardware Error]: CPU 12: Machine Check: 0 Bank 5: be00000000800400",
        "mce: [Hardware Error]: TSC 0 ADDR 7f1234567000 MISC 0 ",
        "mce: [Hardware Error]: Machine check events logged",
    )
    ((at, _, record),) = shipped(f, replayed(f))
    assert at == 21.0
    assert record["kind"] == "log" and record["source"] == "kernel"
    assert record["message"].count("\n") == 2


def test_a_cut_off_traceback_is_shipped_after_its_idle_time_with_the_rank_and_the_job() -> None:
    f = Fleet(hosts=1, seed=3)
    f.training_log(
        20.0,
        0,
        "[rank5]: Traceback (most recent call last):",
        '[rank5]:   File "/workspace/train.py", line 3, in <module>',
        file="rank5.log",
    )
    ((at, _, record),) = shipped(f, replayed(f))
    assert at == 25.0
    assert (record["rank"], record["job_id"], record["path"].endswith("rank5.log")) == (
        5,
        f.job,
        True,
    )


def test_what_the_agent_would_not_ship_never_reaches_the_service() -> None:
    f = Fleet(hosts=1, seed=4)
    f.training_log(20.0, 0, "node-0000:1:2 [0] NCCL INFO Channel 00/32 : 0[0] -> 1[0] via P2P")
    f.kernel_log(21.0, 0, "usb 1-1: new high-speed USB device number 2 using xhci_hcd")
    lines = replayed(f)
    assert shipped(f, lines) == []
    assert all(line.lines is None for line in lines)


def test_a_recording_without_printed_lines_is_replayed_as_it_is() -> None:
    f = Fleet(hosts=2, seed=5)
    recorded = [Line.model_validate(x) for x in f.lines(30)]
    assert through_the_agents(recorded) is recorded


@pytest.mark.parametrize(
    "printed",
    [
        {"host": "h", "log": "training", "text": "x"},
        {"host": "h", "log": "kernel", "file": "kern.log", "text": "x"},
        {"host": "h", "log": "training", "file": "../etc/passwd", "text": "x"},
    ],
)
def test_a_training_log_is_named_by_a_file_name_and_the_kernel_log_by_none(
    printed: dict[str, str],
) -> None:
    with pytest.raises(ValidationError):
        Printed.model_validate(printed)
