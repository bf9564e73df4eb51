"""Fault templates for the demo: real-format lines a failing host writes, by root cause.

Each template says which log it goes to (the kernel log or the training job's log) and
whether it appears on the culprit alone, on the culprit's rack (a fabric fault) or on every
host of the job it interrupts (a bug in the code). The agents tail these files exactly as on a
real host; nothing bypasses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from sentinel.triage.taxonomy import Category


@dataclass(frozen=True)
class Fault:
    category: Category
    log: Literal["kernel", "train"]
    lines: tuple[str, ...]
    spread: Literal["culprit", "rack", "all"] = "culprit"


@dataclass(frozen=True)
class Injection:
    """One fault as the injector wrote it: when, what, which host is to blame, where it went."""

    at: float  # wall-clock time (time.time()) just before the first line was written
    fault: Fault
    culprit: str | None  # the one host at fault; None for rack-wide and job-wide faults
    hosts: tuple[str, ...]  # the hosts whose logs got the lines
    where: str  # for people: "gpu-0042", "rack of gpu-0042", "every host" (of its job)
    job_id: str  # the training job it interrupted (its hosts are that job's)

    @property
    def category(self) -> Category:
        return self.fault.category

    def describe(self) -> str:
        return f"{self.fault.category.value} on {self.where} of {self.job_id}"


# Placeholders: {host}, {bus} (GPU PCI bus, dmesg form "0000:5d:00"), {pid}, {rank}, and
# {peer} (the tail of a peer's IP address: each host has its own peers).
FAULTS: Final[tuple[Fault, ...]] = (
    Fault(
        Category.FAULTY_GPU,
        "kernel",
        (
            "NVRM: Xid (PCI:{bus}): 79, pid={pid}, name=python3, GPU has fallen off the bus.",
            "NVRM: GPU at PCI:{bus}: GPU-5e71ad0c-8d7e-4a41-93f2-17c0b1e9a3d2",
            "NVRM: GPU Board Serial Number: 1654922006453",
        ),
    ),
    Fault(
        Category.GPU_HBM_MEMORY,
        "kernel",
        (
            "NVRM: Xid (PCI:{bus}): 48, pid={pid}, name=python3, An uncorrectable double bit error "
            "(DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0.",
            "NVRM: Xid (PCI:{bus}): 63, pid={pid}, name=python3, Row Remapper: New row (0x0000000"
            "00c3fa8) Marked for Remapping, reset gpu to activate.",
        ),
    ),
    Fault(
        Category.SOFTWARE_BUG,
        "train",
        (
            "[rank{rank}]: Traceback (most recent call last):",
            '[rank{rank}]:   File "/workspace/llama/train.py", line 412, in <module>',
            "[rank{rank}]:     main()",
            '[rank{rank}]:   File "/workspace/llama/model.py", line 233, in forward',
            "[rank{rank}]:     scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.dim)",
            "[rank{rank}]: RuntimeError: The size of tensor a (8192) must match the size of "
            "tensor b (4096) at non-singleton dimension 3",
        ),
        spread="all",
    ),
    Fault(
        Category.NETWORK_SWITCH_CABLE,
        "train",
        (
            "{host}:{pid}:{pid} [3] NCCL WARN NET/IB : Got completion from peer 10.8.{peer}<49152> "
            "with status=12 opcode=0 len=0 vendor err 129 (Recv) localGid ::ffff:10.8.3.9 "
            "remoteGidsfe80::1270:fd03:69:aa3b hca mlx5_3",
            "{host}:{pid}:{pid} [3] NCCL WARN NET/IB : Got completion from peer 10.8.{peer}<49153> "
            "with status=IBV_WC_RETRY_EXC_ERR(12) opcode=0 len=0 vendor err 129 (Recv)",
        ),
        spread="rack",
    ),
    Fault(
        Category.GPU_SRAM_MEMORY,
        "kernel",
        (
            "NVRM: Xid (PCI:{bus}): 95, pid={pid}, name=python3, Uncontained: SM (0x1). RST: Yes, "
            "D-RST: No",
        ),
    ),
    Fault(
        Category.GPU_SYSTEM_PROCESSOR,
        "kernel",
        (
            "NVRM: Xid (PCI:{bus}): 119, pid={pid}, name=python3, Timeout after 6s of waiting for "
            "RPC response from GPU0 GSP! Expected function 76 (GSP_RM_CONTROL) (0x20801348 0x4).",
        ),
    ),
    Fault(
        Category.NIC,
        "kernel",
        (
            "mlx5_core 0000:0c:00.0: mlx5_port_module_event:1166:(pid 0): Port module event: "
            "module 0, Cable unplugged",
            "mlx5_core 0000:0c:00.0 ibp12s0: Link down",
        ),
    ),
    Fault(
        Category.NCCL_WATCHDOG_TIMEOUT,
        "train",
        (
            "[rank{rank}]:[E1128 03:10:00.000000 ProcessGroupNCCL.cpp:616] [Rank {rank}] Watchdog "
            "caught collective operation timeout: WorkNCCL(SeqNum=88123, OpType=ALLREDUCE, "
            "NumelIn=262144, NumelOut=262144, Timeout(ms)=600000) ran for 600015 milliseconds "
            "before timing out.",
        ),
        spread="all",
    ),
    Fault(
        Category.SSD,
        "kernel",
        (
            "nvme nvme0: I/O 412 QID 7 timeout, aborting",
            "nvme nvme0: I/O 412 QID 7 timeout, reset controller",
            "blk_update_request: I/O error, dev nvme0n1, sector 4189184 op 0x1:(WRITE) flags 0x800 "
            "phys_seg 32 prio class 0",
        ),
    ),
    Fault(
        Category.SYSTEM_MEMORY,
        "kernel",
        (
            "EDAC MC1: 1 UE memory read error on CPU_SrcID#1_MC#0_Chan#2_DIMM#0 (channel:2 slot:0 "
            "page:0x3f1a2c offset:0x0 grain:32 - err_code:0x00a0:0x0091 SystemAddress:0x3f1a2c000)",
        ),
    ),
    Fault(
        Category.CPU,
        "kernel",
        (
            "mce: [Hardware Error]: CPU 37: Machine Check Exception: 5 Bank 4: f600000000070f0f",
            "mce: [Hardware Error]: TSC 0 ADDR fef1a140 MISC 0 SYND 4d000000 IPID 5b000000000",
            "Kernel panic - not syncing: Fatal machine check",
        ),
    ),
    Fault(
        Category.IO_EXPANSION_BOARD,
        "kernel",
        (
            "pcieport 0000:40:01.1: AER: Uncorrected (Fatal) error received: 0000:41:00.0",
            "pcieport 0000:41:00.0: PCIe Bus Error: severity=Uncorrected (Fatal), type=Transaction "
            "Layer, (Receiver ID)",
        ),
    ),
    Fault(
        Category.SILENT_DATA_CORRUPTION,
        "train",
        (
            "[rank{rank}]: step 48211 | loss nan | grad_norm inf | lr 8.0e-05",
            "[rank{rank}]: WARNING: loss is NaN at step 48211, skipping update",
        ),
        spread="all",
    ),
)
