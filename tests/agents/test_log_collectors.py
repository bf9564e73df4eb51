"""The kernel and training log collectors, on real-format lines: what they ship and how."""

from __future__ import annotations

from pathlib import Path

from agent_helpers import context

from agents.clock import ManualClock
from agents.collectors.kernel_log import KernelLogCollector
from agents.collectors.logs import normalize_pci
from agents.collectors.training_log import TrainingLogCollector
from sentinel.wire import LogRecord, XidEvent

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
