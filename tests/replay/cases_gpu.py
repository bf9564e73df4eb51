"""Replay cases whose cause is a GPU or its baseboard: a GPU off the bus, HBM and SRAM ECC,
the GSP, heat, a PCIe or NVLink switch (python tests/replay/build_cases.py writes them)."""

from __future__ import annotations

from pathlib import Path

from tests.replay.fleet import CaseFleet, case, incident, write
from tests.replay.shapes import (
    CUDA_ASYNC,
    CUDA_ECC,
    DCGM_HEALTH_DBE,
    IB_RETRY_S,
    driver_xid,
    gpu_falls_off,
    gpu_overheats,
    gsp_timeout,
    hbm_dbe,
    job_stalls,
    noise,
    rank_fails,
    row_remapped,
    xid_line,
)

# ==================================================================== faulty_gpu


@case
def faulty_gpu_xid79_with_peer_timeouts(folder: Path) -> None:
    """XID 79 on one GPU; 47 peers then report NCCL watchdog timeouts. One incident, faulty_gpu on
    that host and GPU; the timeouts are symptoms."""
    f = CaseFleet(hosts=48, seed=1)
    noise(f, 180)
    gpu_falls_off(f, 95.0, 17, 3, pid=44112)
    job_stalls(f, 95.0, on=17)
    write(f, folder, 180, [incident("faulty_gpu", 100, host=17, gpu=3)])


@case
def faulty_gpu_xid62_pmu_halt(folder: Path) -> None:
    """XID 62 (PMU halt) on one GPU, then XID 45 and XID 154 (GPU reset required) on the same GPU
    and a CUDA launch failure on its rank; the peers time out a minute later."""
    f = CaseFleet(hosts=16, seed=3)
    noise(f, 160)
    h, g = 9, 6
    driver_xid(f, 70.0, h, g, 62, "0000(0000) 00000000 00000000", pid=1905)
    driver_xid(f, 70.4, h, g, 45, "Ch 00000010", pid=1905)
    f.kernel_log(
        71.0,
        h,
        f"NVRM: Xid (PCI:{f.bus(g)}): 154, GPU recovery action changed from 0x0 (None) to 0x1 "
        "(GPU Reset Required)",
    )
    rank_fails(f, 72.0, h, g, f"RuntimeError: CUDA error: unspecified launch failure\n{CUDA_ASYNC}")
    job_stalls(f, 70.0, on=h)
    write(f, folder, 160, [incident("faulty_gpu", 76, host=h, gpu=g)])


@case
def faulty_gpu_lost_without_xid(folder: Path) -> None:
    """A GPU is lost (NVML GPU_IS_LOST in its samples) with no Xid at all; its rank fails with 'CUDA
    error: unknown error' and the peers time out."""
    f = CaseFleet(hosts=24, seed=4)
    noise(f, 170)
    h, g = 21, 1
    # Newer drivers may print no Xid for a GPU that dropped off the bus: NVML says GPU_IS_LOST.
    f.gpu(88.0, h, g, lost=True, temperature_c=None, power_w=None, utilization_pct=None)
    rank_fails(f, 89.0, h, g, "RuntimeError: CUDA error: unknown error")
    job_stalls(f, 88.0, on=h)
    write(f, folder, 170, [incident("faulty_gpu", 100, host=h, gpu=g, after_s=85)])


@case
def faulty_gpu_xid79_then_gsp_timeouts(folder: Path) -> None:
    """XID 79 on one GPU, then XID 119 GSP RPC timeouts on the same GPU as nvidia-smi keeps polling
    it: the GSP timeouts are the dead GPU's, not the cause."""
    f = CaseFleet(hosts=16, seed=36)
    noise(f, 160)
    h, g = 4, 5
    gpu_falls_off(f, 70.0, h, g, pid=0)
    # nvidia-smi and the DCGM exporter keep polling the dead GPU: its GSP never answers.
    for n in range(3):
        call = "103 (GSP_RM_ALLOC) (0x2081 0x4)"
        gsp_timeout(f, 76.0 + 6 * n, h, g, call, pid=2024380 + n, process="nvidia-smi")
    job_stalls(f, 70.0, on=h)
    write(f, folder, 160, [incident("faulty_gpu", 75, host=h, gpu=g)])


@case
def faulty_gpu_xid79_delivered_after_the_peer_timeouts(folder: Path) -> None:
    """The job hangs at 60 s with no error (a provisional hang incident from the heartbeats); the
    peers' NCCL watchdogs fire 600 s later; then the culprit's XID 79, observed at 60 s, is
    delivered. The hang incident is refined to faulty_gpu on that GPU: one incident, opened at the
    hang."""
    f = CaseFleet(hosts=16, seed=40)
    noise(f, 75)
    h, g = 11, 2
    # NCCL's default 10-minute watchdog: the peers time out 600 s after the hang began.
    job_stalls(f, 60.0, on=h, timeout_s=600)
    # The culprit's kernel-log collector was stuck behind the driver tearing the GPU down (its
    # NVML collector hung on the lost GPU too): the Xid it saw at 60 s is shipped at 672 s.
    # A wire-level record, since its delivery is the point (the record itself is one the agent
    # ships: test_recordings_hold_what_the_agent_ships).
    f.late(
        60.0,
        672.0,
        h,
        {
            "kind": "xid",
            "xid": 79,
            "gpu_index": g,
            "pci_bus_id": f.pci(g),
            "message": xid_line(f, g, 79, "GPU has fallen off the bus.", pid=0),
            "source": "kernel_log",
        },
    )
    write(f, folder, 690, [incident("faulty_gpu", 80, host=h, gpu=g, after_s=60)])


@case
def faulty_gpu_xid79_then_peers_ib_retry_exceeded(folder: Path) -> None:
    """XID 79 on node-0021; 30 s later twelve peers report IB retry-exceeded (status 12) and flushed
    completions naming node-0021's addresses on several rails. One faulty_gpu incident on node-0021:
    the completions are its shadow, not the peers' NICs nor the fabric."""
    f = CaseFleet(hosts=32, seed=43)
    noise(f, 85)
    h, g = 21, 4
    gpu_falls_off(f, 90.0, h, g, pid=0)
    job_stalls(f, 90.0, on=h)
    # Its ranks are gone, so are their queue pairs: IB retries toward all eight of its ports
    # run out 30 s later on the peers (retry exceeded, then the flushed work requests).
    for n, peer in enumerate([2, 5, 7, 10, 12, 15, 18, 20, 23, 26, 28, 31]):
        port = (3 * n) % 8
        for k, (status, opcode, err) in enumerate([(12, 0, 129), (5, 32616, 249)]):
            t = 90 + IB_RETRY_S + n * 0.6 + k * 0.01
            f.training_log(
                t,
                peer,
                f"{f.name(peer)}:{3100 + peer}:{3180 + peer} [{port}] ib_plugin.c:1615 NCCL "
                f"WARN NET/IB : Got completion from peer {f.ip(h, port)}<{50000 + n}> with "
                f"status={status} opcode={opcode} len=0 vendor err {err} (Recv) localGid "
                f"::ffff:{f.ip(peer, port)} remoteGids::ffff:{f.ip(h, port)}",
            )
    write(
        f,
        folder,
        170,
        [incident("faulty_gpu", 95, host=h, gpu=g, after_s=89)],
        decisions=[{"action": "exclude_and_restart", "exclude_hosts": [f.name(h)], "by_s": 100}],
    )


# ==================================================================== gpu_hbm_memory


@case
def gpu_hbm_xid48_dbe(folder: Path) -> None:
    """XID 48 (double-bit ECC error) on one GPU, XID 63 row remap and XID 45 after it, the rank
    fails with an uncorrectable ECC CUDA error; peers time out."""
    f = CaseFleet(hosts=24, seed=5)
    noise(f, 160)
    h, g = 12, 4
    hbm_dbe(f, 64.0, h, g, partition=6, subpartition=0)
    row_remapped(f, 64.1, h, g, 0x45A1E)
    driver_xid(f, 64.9, h, g, 45, "Ch 00000010")
    f.gpu(64.0, h, g, ecc_volatile_uncorrected=1, remap_pending=True)
    rank_fails(f, 65.0, h, g, CUDA_ECC)
    job_stalls(f, 64.0, on=h)
    write(f, folder, 160, [incident("gpu_hbm_memory", 68, host=h, gpu=g)])


@case
def gpu_hbm_xid64_remap_failure(folder: Path) -> None:
    """XID 63 at 40 s (a remap event, no incident), then XID 64 (row remapper failure) with
    remap_failure in the GPU's samples at 90 s; peers time out."""
    f = CaseFleet(hosts=16, seed=6)
    noise(f, 170)
    h, g = 3, 0
    # A first remap event, harmless on its own (a warning; no incident)...
    row_remapped(f, 40.0, h, g, 0x1B2F10, pid=0)
    # ...then the bank runs out of spare rows.
    f.kernel_log(
        90.0,
        h,
        "NVRM: Xid (PCI:0000:18:00): 64, pid='<unknown>', name=<unknown>, Row Remapper Error: "
        "(0x0000000101d5f5a0) - All reserved rows for bank are remapped",
    )
    f.gpu(90.5, h, g, remap_failure=True, remapped_rows_uncorrectable=8)
    job_stalls(f, 90.0, on=h)
    write(f, folder, 170, [incident("gpu_hbm_memory", 95, host=h, gpu=g, after_s=88)])


@case
def gpu_hbm_uncorrectable_ecc_counter(folder: Path) -> None:
    """No Xid reaches the log: the agent sees the volatile uncorrectable ECC counter go 0 -> 2 on
    one GPU and its rank fails with 'uncorrectable ECC error encountered'."""
    f = CaseFleet(hosts=24, seed=7)
    noise(f, 160)
    h, g = 17, 7
    f.observation(
        80.0,
        h,
        {
            "kind": "ecc",
            "gpu_index": g,
            "pci_bus_id": f.pci(g),
            "counter": "ecc_volatile_uncorrected",
            "previous": 0,
            "current": 2,
        },
    )
    f.gpu(80.0, h, g, ecc_volatile_uncorrected=2)
    # (This CUDA build prints its asynchronous-error note without the space after the comma.)
    rank_fails(f, 80.5, h, g, f"{CUDA_ECC}\n{CUDA_ASYNC.replace('call, so', 'call,so')}")
    job_stalls(f, 80.0, on=h)
    write(f, folder, 160, [incident("gpu_hbm_memory", 95, host=h, gpu=g, after_s=78)])


@case
def gpu_hbm_dcgm_health_dbe_then_xid48(folder: Path) -> None:
    """DCGM's health watch reports volatile double-bit ECC errors on GPU 4 of one host, then the
    driver logs XID 48 on it and the job stalls. One gpu_hbm_memory incident on that GPU, not a
    second one for the XID."""
    f = CaseFleet(hosts=16, seed=63)
    noise(f, 160)
    h, g = 12, 4
    # DCGM's memory watch sees the double-bit errors; the agent's health poll reads it.
    f.dcgm_health(70.0, h, DCGM_HEALTH_DBE.format(gpu=g))
    hbm_dbe(f, 71.5, h, g, partition=0, subpartition=0)
    f.gpu(71.0, h, g, ecc_volatile_uncorrected=2)
    job_stalls(f, 71.5, on=h)
    write(f, folder, 160, [incident("gpu_hbm_memory", 85, host=h, gpu=g, after_s=69)])


# ==================================================================== other GPU parts


@case
def gpu_sram_xid94_contained(folder: Path) -> None:
    """XID 94 (contained SRAM ECC error) on one GPU; CUDA reports it to the rank as an uncorrectable
    ECC error, which names no memory: the Xid says it is SRAM, not HBM."""
    f = CaseFleet(hosts=16, seed=17)
    noise(f, 160)
    h, g = 4, 7
    driver_xid(f, 80.0, h, g, 94, "Contained ECC error", pid=1234)
    driver_xid(f, 80.2, h, g, 45, "Ch 00000008", pid=1234)
    rank_fails(f, 80.5, h, g, CUDA_ECC)
    job_stalls(f, 80.0, on=h)
    write(f, folder, 160, [incident("gpu_sram_memory", 85, host=h, gpu=g)])


@case
def gpu_sram_xid95_uncontained(folder: Path) -> None:
    """XID 95 (uncontained SRAM ECC error) then XID 45 on one GPU; peers time out."""
    f = CaseFleet(hosts=16, seed=18)
    noise(f, 150)
    h, g = 13, 2
    driver_xid(f, 60.0, h, g, 95, "Uncontained: SM SRAM ECC error. RST: Yes, D-RST: No", pid=3310)
    driver_xid(f, 60.1, h, g, 45, "Ch 00000018", pid=3310)
    job_stalls(f, 60.0, on=h)
    write(f, folder, 150, [incident("gpu_sram_memory", 65, host=h, gpu=g)])


@case
def gpu_system_processor_xid119(folder: Path) -> None:
    """XID 119 (GSP RPC timeout) twice on one GPU, then the driver rate-limits GSP errors and asks
    for a reset; peers time out."""
    f = CaseFleet(hosts=24, seed=19)
    noise(f, 160)
    h, g = 19, 5
    for n, (t, fn) in enumerate([(70.0, "76 (GSP_RM_CONTROL)"), (76.0, "10 (FREE)")]):
        gsp_timeout(f, t, h, g, f"{fn} (0x20800a4c 0x4)", pid=2024380 + n)
    f.kernel_log(
        90.0,
        h,
        f"NVRM: Rate limiting GSP RPC error prints for GPU at PCI:{f.bus(g)} (printing 1 of "
        "every 30).  The GPU likely needs to be reset.",
    )
    job_stalls(f, 70.0, on=h)
    write(f, folder, 160, [incident("gpu_system_processor", 75, host=h, gpu=g)])


@case
def gpu_thermal_slowdown(folder: Path) -> None:
    """One GPU overheats (91 C, HW thermal slowdown in its clock event reasons) and the job stalls
    on it; the kernel also throttles a CPU package. Peers time out."""
    f = CaseFleet(hosts=24, seed=20)
    noise(f, 150)
    h, g = 15, 3
    gpu_overheats(f, 60.0, h, g, temperature_c=91.0)
    f.kernel_log(
        60.5,
        h,
        "CPU12: Package temperature above threshold, cpu clock throttled (total events = 1)",
    )
    job_stalls(f, 61.0, on=h)
    write(f, folder, 150, [incident("gpu_thermal", 75, host=h, gpu=g, after_s=59)])


# ==================================================================== the GPUs' baseboard


@case
def io_expansion_board_pcie_switch_fatal(folder: Path) -> None:
    """A fatal AER error on a PCIe switch port (Broadcom PEX, 1000:c030) of one host and the two
    GPUs behind it fall off the bus (XID 79 on both); the peers time out. The switch, not two GPUs.
    """
    f = CaseFleet(hosts=16, seed=24)
    noise(f, 160)
    h = 8
    f.kernel_log(
        80.0,
        h,
        "pcieport 0000:16:02.0: AER: Uncorrected (Fatal) error received: 0000:16:02.0",
        "pcieport 0000:16:02.0: PCIe Bus Error: severity=Uncorrected (Fatal), type=Transaction "
        "Layer, (Receiver ID)",
        "pcieport 0000:16:02.0:   device [1000:c030] error status/mask=00040000/00400000",
        "pcieport 0000:16:02.0:    [18] MalfTLP                (First)",
    )
    # The two GPUs behind that switch drop off the bus with it.
    for g in (0, 1):
        gpu_falls_off(f, 80.3, h, g, pid=0, lost_at=80.5)
    job_stalls(f, 80.0, on=h)
    write(f, folder, 160, [incident("io_expansion_board", 92, host=h, after_s=79)])


@case
def io_expansion_board_nvswitch_sxid_fatal_nvlink_xids_on_all_gpus(folder: Path) -> None:
    """A fatal SXid on NVSwitch 2 of one host, then NVLink XID 74 on all 8 of its GPUs; the peers
    time out. One incident on the NVSwitch (io_expansion_board), not 8 GPUs."""
    f = CaseFleet(hosts=16, seed=64)
    noise(f, 160)
    h = 3
    f.kernel_log(
        80.0,
        h,
        "nvidia-nvswitch2: SXid (PCI:0000:c7:00.0): 24007, Fatal, Link 32 sourcetrack timeout "
        "error (First)",
        "nvidia-nvswitch2: SXid (PCI:0000:c7:00.0): 24007, Severity 5 Engine instance 32 "
        "Sub-engine instance 00",
    )
    # Every GPU of the baseboard loses NVLink traffic through that switch.
    for g in range(f.gpus):
        link = f"{g + 4}(0x0, 0x0, 0x10000, 0x0, 0x0, 0x0, 0x0)"
        fatal = f"NVLink: fatal error detected on link {link}"
        driver_xid(f, 80.6 + g * 0.05, h, g, 74, fatal, pid=20410 + g)
    job_stalls(f, 80.0, on=h)
    write(f, folder, 160, [incident("io_expansion_board", 92, host=h, after_s=79)])
