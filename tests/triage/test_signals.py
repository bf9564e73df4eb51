"""Excerpts become records and signals: prefixes stripped, hosts and ranks kept."""

from __future__ import annotations

import pytest

from sentinel.knowledge.lines import parse_line
from sentinel.triage import Category, extract_signals, log_signals, normalize_pci, xid_signal
from sentinel.triage.records import split_records


@pytest.mark.parametrize(
    ("raw", "body", "host", "rank"),
    [
        (
            "Nov 28 07:38:56 gpu-0042 kernel: [12345.678901] NVRM: Xid x",
            "NVRM: Xid x",
            "gpu-0042",
            None,
        ),
        ("[12345.678901] NVRM: Xid x", "NVRM: Xid x", None, None),
        ("[Sun Feb 23 16:24:18 2025] NVRM: Xid x", "NVRM: Xid x", None, None),
        ("2024-05-01T10:00:00.123+00:00 gpu-7 kernel: mlx5_core x", "mlx5_core x", "gpu-7", None),
        (
            "[rank3]: Traceback (most recent call last):",
            "Traceback (most recent call last):",
            None,
            3,
        ),
        ('[default5]:  File "a.py", line 1, in f', ' File "a.py", line 1, in f', None, 5),
        ("[1,6]<stderr>:RuntimeError: x", "RuntimeError: x", None, 6),
        (
            "node017: [  12.5] nvme nvme0: I/O 1 QID 2 timeout",
            "nvme nvme0: I/O 1 QID 2 timeout",
            "node017",
            None,
        ),
        ("node1:1234:5678 [3] NCCL WARN x", "node1:1234:5678 [3] NCCL WARN x", "node1", None),
        ("RuntimeError: CUDA error: x", "RuntimeError: CUDA error: x", None, None),
        # syslog's tag for the kernel's messages is not a host
        ("kernel: NVRM: Xid x", "kernel: NVRM: Xid x", None, None),
    ],
)
def test_prefixes_are_stripped_and_remembered(
    raw: str, body: str, host: str | None, rank: int | None
) -> None:
    line = parse_line(raw)
    assert (line.body, line.host, line.rank) == (body, host, rank)


def test_nccl_origin_gives_host_and_device() -> None:
    line = parse_line("node1:1234:5678 [3] transport/net_ib.cc:1295 NCCL WARN NET/IB : x")
    assert (line.host, line.gpu) == ("node1", "3")


def test_traceback_is_one_record_per_rank_even_interleaved() -> None:
    text = "\n".join(
        [
            "[rank0]: Traceback (most recent call last):",
            "[rank1]: Traceback (most recent call last):",
            '[rank0]:   File "/a.py", line 3, in <module>',
            '[rank1]:   File "/a.py", line 3, in <module>',
            "[rank0]: KeyError: 'input_ids'",
            "[rank1]: KeyError: 'input_ids'",
        ]
    )
    records = [r for r in split_records(text) if r.kind == "traceback"]
    assert [r.rank for r in records] == [0, 1]
    assert all(len(r.lines) == 3 for r in records)


def test_traceback_signal_carries_exception_and_frame() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "/x/train.py", line 10, in main\n'
        "    f()\n"
        "ValueError: bad"
    )
    (signal,) = extract_signals(text)
    assert signal.family == "python_traceback"
    assert signal.role == "cause"
    assert signal.attrs["exc_type"] == "ValueError"
    assert signal.attrs["last_frame"] == "train.py:10 in main"


def test_traceback_explained_by_an_inner_pattern_is_context() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "/x.py", line 1, in f\n'
        "RuntimeError: CUDA error: uncorrectable ECC error encountered"
    )
    signals = extract_signals(text)
    assert {s.pattern: s.role for s in signals} == {
        "python_traceback": "context",
        "cuda_ecc_uncorrectable": "cause",
    }


def test_xid_line_is_enriched_from_the_catalog() -> None:
    (signal,) = extract_signals("NVRM: Xid (PCI:0000:9b:00): 48, pid=1, name=python, DBE")
    assert signal.kind == "xid"
    assert signal.xid == 48
    assert signal.gpu == "00000000:9B:00.0"
    assert signal.category_hint == Category.GPU_HBM_MEMORY
    assert signal.attrs["action"] == "WORKFLOW_XID_48"
    assert signal.severity == "critical"


def test_multi_line_driver_report_names_the_gpu() -> None:
    text = (
        "NVRM: The NVIDIA GPU 0000:b3:00.0\n"
        "NVRM: (PCI ID: 10de:26b5) installed in this system has\n"
        "NVRM: fallen off the bus and is not responding to commands."
    )
    (signal,) = extract_signals(text)
    assert signal.gpu == "00000000:B3:00.0"
    assert signal.category_hint == Category.FAULTY_GPU


def test_pcie_error_category_follows_the_driver() -> None:
    gpu, switch = extract_signals(
        "nvidia 0000:b3:00.0: PCIe Bus Error: severity=Uncorrected (Fatal), type=Transaction\n"
        "pcieport 0000:16:02.0: AER: Uncorrected (Fatal) error received: 0000:16:02.0"
    )
    assert gpu.category_hint == Category.FAULTY_GPU
    assert switch.category_hint == Category.IO_EXPANSION_BOARD


def test_elastic_root_cause_block_names_host_and_rank() -> None:
    text = "\n".join(
        [
            "Root Cause (first observed failure):",
            "[0]:",
            "  time      : 2024-07-26_10:59:45",
            "  host      : SH-IDC1-10-140-24-95",
            "  rank      : 10 (local_rank: 2)",
            "  exitcode  : -6 (pid: 214033)",
            "  traceback : Signal 6 (SIGABRT) received by PID 214033",
            "=======================================================",
        ]
    )
    root = next(s for s in extract_signals(text) if s.pattern == "elastic_root_cause")
    assert (root.host, root.rank, root.attrs["exitcode"]) == ("SH-IDC1-10-140-24-95", 10, "-6")


def test_default_host_fills_unnamed_lines() -> None:
    (signal,) = extract_signals("EDAC MC0: 1 UE memory read error on DIMM#0", default_host="h9")
    assert signal.host == "h9"


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("00000000:9B:00.0", "00000000:9B:00.0"), ("PCI:0000:9b:00", "00000000:9B:00.0"), ("3", "3")],
)
def test_pci_addresses_are_normalised(raw: str, normal: str) -> None:
    assert normalize_pci(raw) == normal


def test_unknown_xid_is_a_weak_gpu_signal() -> None:
    signal = xid_signal(999)
    assert signal.category_hint == Category.FAULTY_GPU
    assert signal.severity == "warning"
    assert signal.attrs["unknown_xid"] == "true"


def test_huge_lines_are_cut_not_choked_on() -> None:
    text = "x" * 2_000_000 + "\nNVRM: Xid (PCI:0000:44:00): 79, GPU has fallen off the bus"
    assert [s.xid for s in extract_signals(text)] == [79]


def test_a_zone_less_timestamp_is_utc_so_that_times_compare() -> None:
    naive = parse_line("[2026-03-02 04:01:40,441] torch.distributed.elastic: [ERROR] failed")
    zulu = parse_line("2026-03-02T04:01:41Z gpu-0001 kernel: EDAC MC0: 1 UE memory read error")
    assert naive.time is not None and zulu.time is not None
    assert naive.time < zulu.time


def test_a_stored_record_is_its_hosts_whatever_hostname_its_lines_name() -> None:
    text = (
        "Dec  6 04:16:26 gpu-node-17 kernel: nvme nvme0: I/O 12 QID 3 timeout, aborting\n"
        "gpu-node-99:1234:5678 [3] misc/socket.cc:30 NCCL WARN socketProgressOpt: Call to recv "
        "from 10.1.1.2<52036> failed : Connection reset by peer"
    )
    pasted = extract_signals(text)
    assert [s.host for s in pasted] == ["gpu-node-17", "gpu-node-99"]
    stored = log_signals(text, host="gpu-0003")
    assert [(s.host, s.attrs.get("line_host")) for s in stored] == [
        ("gpu-0003", "gpu-node-17"),
        ("gpu-0003", "gpu-node-99"),
    ]
    assert [s.host for s in log_signals("nvme nvme0: I/O 12 QID 3 timeout", host="h")] == ["h"]
