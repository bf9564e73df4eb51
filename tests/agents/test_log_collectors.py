"""The kernel and training log collectors, on real-format lines: what they ship and how."""

from __future__ import annotations

from pathlib import Path

from agent_helpers import context

from sentinel.triage import extract_signals
from sentinel.wire import LogRecord, XidEvent
from sentinel.wire.identity import normalize_pci
from sentinel_agent.clock import ManualClock
from sentinel_agent.collectors.kernel_log import KernelLogCollector
from sentinel_agent.collectors.logs import RateLimit
from sentinel_agent.collectors.training_log import TrainingLogCollector

# (line, expected family) -- one or more per family, in the formats real hosts print.
KERNEL_LINES = [
    (
        "[ 5032.332109] NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, "
        "GPU has fallen off the bus.",
        "kernel_xid",
    ),
    (
        "[87201.440001] EDAC MC1: 1 UE memory read error on CPU_SrcID#1_Ha#0_Chan#2_DIMM#0 "
        "(channel:2 slot:0 page:0x1c4a2 offset:0x0 grain:32)",
        "edac",
    ),
    ("[ 3312.900000] nvme nvme1: I/O 736 QID 12 timeout, aborting", "nvme"),
    (
        "[ 3313.000000] blk_update_request: I/O error, dev nvme1n1, sector 88 op 0x0:(READ) "
        "flags 0x0 phys_seg 1 prio class 0",
        "block_io",
    ),
    ("[  77.100000] mlx5_core 0000:5e:00.0 ens1f0: Link down", "mlx5"),
    (
        "[  80.000000] mlx5_core 0000:3b:00.0: poll_health:800:(pid 0): Fatal error 1 detected",
        "mlx5",
    ),
    (
        "[ 8123.100000] CPU12: Core temperature above threshold, cpu clock throttled "
        "(total events = 1)",
        "thermal",
    ),
    (
        "[  12.000000] pcieport 0000:00:01.0: AER: Uncorrected (Fatal) error received: "
        "0000:01:00.0",
        "pcie",
    ),
    ("[ 9001.000000] watchdog: BUG: soft lockup - CPU#12 stuck for 22s! [python:12345]", "host"),
    ("[ 9002.000000] EXT4-fs error (device nvme0n1p2): ext4_find_entry:1455: comm x", "filesystem"),
]

NOISE = [
    "[    0.000000] Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org)",
    "[   12.345678] NVRM: loading NVIDIA UNIX x86_64 Kernel Module  550.54.15",
    "[   14.000000] mlx5_core 0000:5e:00.0: firmware version: 28.39.1002",
    "[   15.000000] EXT4-fs (nvme0n1p2): mounted filesystem with ordered data mode.",
    "[   16.000000] mlx5_core 0000:ab:00.0 mlx5_5: Port: 1 Link ACTIVE",
]


def test_kernel_collector_ships_what_the_knowledge_knows_and_nothing_else(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text("old line before the agent started: NVRM: Xid (PCI:0000:aa:00): 48, x\n")
    clock = ManualClock()
    ctx, _ = context(clock)
    ctx.state.gpu_by_pci["00000000:3B:00.0"] = 2
    collector = KernelLogCollector(ctx, path=log, interval_s=1)
    assert collector.poll() == []  # starts at the end
    with log.open("a") as f:
        for line, _ in KERNEL_LINES:
            f.write(line + "\n")
            f.write(NOISE[len(KERNEL_LINES) % len(NOISE)] + "\n")
        for line in NOISE:
            f.write(line + "\n")
    out = list(collector.poll())
    clock.advance(2)
    out += collector.poll()
    assert len(out) == len(KERNEL_LINES)
    first = out[0]
    assert isinstance(first, XidEvent)
    assert (first.xid, first.pci_bus_id, first.gpu_index, first.pid, first.process_name) == (
        79,
        "00000000:3B:00.0",
        2,
        1234,
        "python",
    )
    assert first.source == "kernel_log" and first.message == KERNEL_LINES[0][0]
    records = [o for o in out[1:] if isinstance(o, LogRecord)]
    assert [r.family for r in records] == [family for _, family in KERNEL_LINES[1:]]
    assert all(r.source == "kernel" and r.pattern for r in records)
    assert [r.message for r in records] == [line for line, _ in KERNEL_LINES[1:]]


def test_xid_without_pid_and_with_unknown_pid(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text("")
    ctx, _ = context()
    collector = KernelLogCollector(ctx, path=log, interval_s=1)
    collector.poll()
    log.write_text(
        "NVRM: Xid (PCI:0000:44:00): 79, GPU has fallen off the bus.\n"
        "NVRM: Xid (PCI:0000:18:00): 48, pid='<unknown>', name=<unknown>, "
        "An uncorrectable double bit error (DBE) has been detected\n"
    )
    plain, unknown = collector.poll()
    assert isinstance(plain, XidEvent) and isinstance(unknown, XidEvent)
    assert (plain.xid, plain.pid, plain.pci_bus_id) == (79, None, "00000000:44:00.0")
    assert (unknown.xid, unknown.pid, unknown.process_name) == (48, None, "<unknown>")


def test_normalize_pci_to_nvml_format() -> None:
    assert normalize_pci("PCI:0000:3b:00") == "00000000:3B:00.0"
    assert normalize_pci("0000:b3:00.0") == "00000000:B3:00.0"


TRACEBACK = """\
[rank3]: Traceback (most recent call last):
[rank3]:   File "/workspace/train.py", line 211, in <module>
[rank3]:     main()
[rank3]:   File "/workspace/train.py", line 187, in main
[rank3]:     loss.backward()
[rank3]: RuntimeError: CUDA error: an illegal memory access was encountered
"""

TRAINING_LINES = """\
node-17:12345:12399 [3] NCCL INFO Channel 00/0 : 3[3] -> 4[4] via P2P/IPC
[rank1]:[E626 06:24:44.903881913 ProcessGroupNCCL.cpp:616] [Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=808, OpType=ALLREDUCE, NumelIn=9801523, NumelOut=9801523, Timeout(ms)=600000) ran for 600020 milliseconds before timing out.
step 1200 loss 2.31 lr 3e-4
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 3 has a total capacity of 79.10 GiB of which 1.02 GiB is free.
"""  # noqa: E501


def test_training_log_families_and_one_record_per_traceback(tmp_path: Path) -> None:
    log = tmp_path / "train-0.log"
    log.write_text("")
    ctx, _ = context()
    ctx.state.job_id = "job-7"
    collector = TrainingLogCollector(ctx, paths=[str(tmp_path / "train-*.log")], interval_s=1)
    assert collector.poll() == []
    with log.open("a") as f:
        f.write(TRAINING_LINES + TRACEBACK)
    out = [o for o in collector.poll() if isinstance(o, LogRecord)]
    assert [(o.source, o.family, o.pattern) for o in out] == [
        ("nccl", "pytorch", "torch_watchdog_timeout"),
        ("application", "oom", "cuda_oom"),
        ("application", "cuda", "cuda_illegal_address"),
    ]
    tb = out[-1]
    assert tb.message == TRACEBACK.rstrip("\n")  # the lines as the job printed them
    assert (tb.rank, tb.job_id) == (3, "job-7")
    assert out[0].rank == 1


def test_chained_traceback_is_one_record_and_an_unknown_exception_is_python_traceback(
    tmp_path: Path,
) -> None:
    log = tmp_path / "train.log"
    log.write_text("")
    ctx, _ = context()
    collector = TrainingLogCollector(ctx, paths=[str(log)], interval_s=1)
    collector.poll()
    log.write_text(
        "Traceback (most recent call last):\n"
        '  File "a.py", line 1, in <module>\n'
        "KeyError: 'x'\n"
        "\n"
        "During handling of the above exception, another exception occurred:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "a.py", line 3, in <module>\n'
        "StopIteration: bad shard index\n"
        "next unrelated line\n"
    )
    out = collector.poll()
    assert len(out) == 1
    record = out[0]
    assert isinstance(record, LogRecord)
    assert record.family == "python_traceback" and record.source == "application"
    assert "KeyError" in record.message and record.message.endswith("bad shard index")


def test_unfinished_traceback_is_flushed_after_a_quiet_period(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("")
    clock = ManualClock()
    ctx, _ = context(clock)
    collector = TrainingLogCollector(ctx, paths=[str(log)], interval_s=1)
    collector.poll()
    log.write_text('Traceback (most recent call last):\n  File "a.py", line 1, in f\n')
    assert collector.poll() == []
    clock.advance(6)
    out = collector.poll()
    assert len(out) == 1 and "a.py" in out[0].message  # type: ignore[union-attr]


def test_fallen_off_the_bus_without_xid_names_the_gpu(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text("")
    ctx, _ = context()
    ctx.state.gpu_by_pci["00000000:B3:00.0"] = 7
    collector = KernelLogCollector(ctx, path=log, interval_s=1)
    collector.poll()
    log.write_text("[ 1843.3] NVRM: GPU 0000:b3:00.0: GPU has fallen off the bus.\n")
    (record,) = collector.poll()
    assert isinstance(record, LogRecord)
    assert (record.family, record.severity, record.pci_bus_id, record.gpu_index) == (
        "kernel_xid",
        "critical",
        "00000000:B3:00.0",
        7,
    )


# ---------------------------------------------------------------- what may matter (issue 13, 2)


def test_kernel_errors_no_pattern_knows_are_shipped_within_the_rate_limit(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text("")
    clock = ManualClock()
    ctx, _ = context(clock)
    collector = KernelLogCollector(
        ctx, path=log, interval_s=1, unmatched=RateLimit(per_s=0.5, burst=3)
    )
    collector.poll()
    with log.open("a") as f:
        f.write("<6>[ 1.0] frobnicator: all is well\n")  # info: not shipped
        f.write("<2>[ 2.0] frobnicator: controller wedged, giving up\n")  # crit
        for i in range(4):
            f.write(f"<3>[ 3.{i}] frobnicator: request {i} went wrong\n")  # err
        for i in range(5):  # known: never limited
            f.write(f"<4>[ 4.{i}] nvme nvme0: I/O {i} QID 3 timeout, aborting\n")
    out = [o for o in collector.poll() if isinstance(o, LogRecord)]
    unmatched = [o for o in out if o.family == "unmatched"]
    assert [(o.pattern, o.severity, o.message) for o in unmatched] == [
        (None, "critical", "[ 2.0] frobnicator: controller wedged, giving up"),
        (None, "error", "[ 3.0] frobnicator: request 0 went wrong"),
        (None, "error", "[ 3.1] frobnicator: request 1 went wrong"),
    ]
    assert [o.family for o in out if o not in unmatched] == ["nvme"] * 5
    assert collector.poll() == []  # the limit still holds: nothing to say yet
    clock.advance(2)  # a record would be admitted again: what was withheld is counted
    (summary,) = collector.poll()
    assert isinstance(summary, LogRecord)
    assert (summary.family, summary.pattern, summary.severity, summary.source) == (
        "suppressed",
        None,
        "info",
        "kernel",
    )
    assert summary.message.startswith("sentinel-agent: 2 kernel messages at err or worse")
    assert extract_signals(summary.message) == []  # evidence of volume, not of a fault
    with log.open("a") as f:
        f.write("<3>[ 9.0] frobnicator: request 9 went wrong\n")
    (late,) = collector.poll()
    assert isinstance(late, LogRecord) and late.message.endswith("request 9 went wrong")


def test_training_lines_that_look_like_errors_are_shipped_per_source(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("")
    clock = ManualClock()
    ctx, _ = context(clock)
    collector = TrainingLogCollector(
        ctx, paths=[str(log)], interval_s=1, unmatched=RateLimit(per_s=0.1, burst=2)
    )
    collector.poll()
    with log.open("a") as f:
        f.write("step 1200 loss 2.31 lr 3e-4 errors=0\n")  # nothing like an error
        for i in range(3):
            f.write(f"[rank{i}]: FATAL: shard {i} checksum unreadable\n")
            f.write(f"gpu-7:881:{1020 + i} [{i}] NCCL WARN Unexpected peer state {i}\n")
        f.write("[rank4]: MyLoaderError: the shard index is gone\n")
    out = list(collector.poll())
    clock.advance(1)  # NCCL's warnings wait a moment for their context lines
    out += collector.poll()
    records = [o for o in out if isinstance(o, LogRecord)]
    assert len(records) == len(out)
    assert [(o.source, o.family, o.rank, o.message[:30]) for o in records] == [
        ("application", "unmatched", 0, "[rank0]: FATAL: shard 0 checks"),
        ("application", "unmatched", 1, "[rank1]: FATAL: shard 1 checks"),
        ("nccl", "unmatched", None, "gpu-7:881:1020 [0] NCCL WARN U"),
        ("nccl", "unmatched", None, "gpu-7:881:1021 [1] NCCL WARN U"),
    ]
    clock.advance(10)
    summaries = [o for o in collector.poll() if isinstance(o, LogRecord)]
    assert sorted((o.source, o.family, o.message.split(" ")[1]) for o in summaries) == [
        ("application", "suppressed", "2"),
        ("nccl", "suppressed", "1"),
    ]


# ---------------------------------------------------------------- whole messages (issue 13, 3)


def _kernel(tmp_path: Path, clock: ManualClock | None = None) -> tuple[KernelLogCollector, Path]:
    log = tmp_path / "kern.log"
    log.write_text("")
    ctx, _ = context(clock)
    ctx.state.gpu_by_pci["00000000:3B:00.0"] = 3
    ctx.state.gpu_by_pci["00000000:B3:00.0"] = 7
    collector = KernelLogCollector(ctx, path=log, interval_s=1)
    collector.poll()
    return collector, log


def test_a_driver_report_over_several_lines_is_one_xid_and_the_next_xid_another(
    tmp_path: Path,
) -> None:
    collector, log = _kernel(tmp_path)
    report = [
        "[ 5031.1] NVRM: GPU at PCI:0000:3b:00: GPU-5f2a9c1e-8d3b-4e57-a1b2-c3d4e5f60718",
        "[ 5031.1] NVRM: GPU Board Serial Number: 1654123456789",
        "[ 5031.1] NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, "
        "GPU has fallen off the bus.",
    ]
    log.write_text(
        "\n".join(report)
        + "\n[ 5031.2] NVRM: Xid (PCI:0000:3b:00): 45, pid=1234, name=python, Ch 00000010\n"
    )
    first, second = collector.poll()
    assert isinstance(first, XidEvent) and isinstance(second, XidEvent)
    assert (first.xid, first.gpu_index, first.message) == (79, 3, "\n".join(report))
    assert (second.xid, second.gpu_index) == (45, 3)


def test_fallen_off_the_bus_over_three_lines_is_one_record_naming_the_gpu(tmp_path: Path) -> None:
    clock = ManualClock()
    collector, log = _kernel(tmp_path, clock)
    report = [
        "[ 1843.3] NVRM: The NVIDIA GPU 0000:b3:00.0",
        "[ 1843.3] NVRM: (PCI ID: 10de:26b5) installed in this system has",
        "[ 1843.3] NVRM: fallen off the bus and is not responding to commands.",
    ]
    log.write_text("\n".join(report) + "\n[ 1843.4] usb 1-1: new high-speed USB device\n")
    (record,) = collector.poll()
    assert isinstance(record, LogRecord) and record.message == "\n".join(report)
    assert (record.pattern, record.pci_bus_id, record.gpu_index, record.severity) == (
        "nvrm_fallen_off_bus",
        "00000000:B3:00.0",
        7,
        "critical",
    )
    (signal,) = extract_signals(record.message)  # the service reads the whole report
    assert (signal.category_hint, signal.gpu) == ("faulty_gpu", "00000000:B3:00.0")


def test_a_kmsg_record_of_several_lines_is_one_message(tmp_path: Path) -> None:
    collector, _ = _kernel(tmp_path)

    class Kmsg:
        path = tmp_path / "kmsg"

        def read_lines(self) -> list[str]:
            return [
                "<3>NVRM: The NVIDIA GPU 0000:b3:00.0\n NVRM: (PCI ID: 10de:26b5) installed in "
                "this system has\n NVRM: fallen off the bus and is not responding to commands.",
                "<6>usb 1-1: new high-speed USB device",
            ]

        def position(self) -> str | None:
            return None

        def close(self) -> None:
            pass

    collector._source = Kmsg()
    (record,) = collector.poll()
    assert isinstance(record, LogRecord) and record.message.count("\n") == 2
    assert (record.pattern, record.gpu_index) == ("nvrm_fallen_off_bus", 7)


def test_a_machine_check_block_is_one_record_flushed_when_quiet(tmp_path: Path) -> None:
    clock = ManualClock()
    collector, log = _kernel(tmp_path, clock)
    block = [
        "[ 77.1] mce: [Hardware Error]: Machine check events logged",
        "[ 77.1] mce: [Hardware Error]: CPU 12: Machine Check: 0 Bank 5: be00000000800400",
        "[ 77.1] mce: [Hardware Error]: RIP !INEXACT! 10:<ffffffff8100b5b6> {mwait_idle+0x36}",
        "[ 77.1] mce: [Hardware Error]: TSC 1a2b3c4d5e ADDR 3fff8000 MISC 8c",
        "[ 77.1] mce: [Hardware Error]: PROCESSOR 0:50654 TIME 1589 SOCKET 0 APIC 18",
    ]
    log.write_text("\n".join(block) + "\n")
    assert collector.poll() == []  # it may go on
    clock.advance(1)
    (record,) = collector.poll()
    assert isinstance(record, LogRecord) and record.message == "\n".join(block)
    assert (record.family, record.pattern, record.severity) == ("mce", "mce_bank", "error")
    log.write_text(log.read_text() + "\n".join(block * 20) + "\n")  # a storm: bounded
    records = list(collector.poll())
    clock.advance(1)
    records += collector.poll()
    assert len(records) == 2 and all(
        isinstance(r, LogRecord) and r.message.count("\n") < 64 for r in records
    )


def test_an_nccl_warning_is_one_record_with_the_lines_that_unwind_it(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("")
    clock = ManualClock()
    ctx, _ = context(clock)
    collector = TrainingLogCollector(ctx, paths=[str(log)], interval_s=1)
    collector.poll()
    warning = [
        "node1:1234:5678 [0] transport/net_ib.cc:1295 NCCL WARN NET/IB : Got completion from "
        "peer 10.0.0.2<52035> with error 12, opcode 0, len 0, vendor err 129 (Recv)",
        "node1:1234:5678 [0] NCCL INFO transport/net.cc:1049 -> 6",
        "node1:1234:5678 [0] NCCL INFO proxy.cc:733 -> 6 [Proxy Thread]",
    ]
    log.write_text(
        f"{warning[0]}\n"
        "node1:1234:4321 [1] NCCL INFO Channel 00/0 : 1[1] -> 2[2] via P2P/IPC\n"
        f"{warning[1]}\n{warning[2]}\nstep 7 loss 2.3\n"
    )
    assert collector.poll() == []  # more context may follow
    clock.advance(1)
    (record,) = collector.poll()
    assert isinstance(record, LogRecord) and record.message == "\n".join(warning)
    assert (record.source, record.pattern) == ("nccl", "nccl_ib_completion_error")
