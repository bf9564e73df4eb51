"""Write the replay cases in tests/replay/cases/ (run: python tests/replay/build_cases.py).

Each case is a small fleet training one job with realistic noise and one or more injected
faults, plus what triage must conclude. Faults are log lines as the hosts print them into their
kernel and training logs (`kernel_log`, `training_log`: the replay reads them through the
agent's own collectors, so a case holds no record the agent would not ship) and GPU samples,
heartbeats and API calls as the agents and operators send them. Log lines are in the formats
the real tools print (NVRM, NCCL, PyTorch, mlx5, EDAC, nvme, ...), most of them taken from the
real excerpts in tests/triage/excerpts/.

The fleet and the case registry are in fleet.py, the log-line formats and fault shapes the
cases compose in shapes.py.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (python tests/replay/build_cases.py): the repo root is where `tests` is.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.replay import cases_gpu  # noqa: F401  (registers its cases)
from tests.replay.fleet import BUILDERS, HELD_BACK, CaseFleet, case, incident, write
from tests.replay.shapes import (
    IB_RETRY_S,
    MCELOG_UC_DIMM,
    NCCL_TIMEOUT_S,
    NIC_BUS,
    TRAIN_STEP,
    alertmanager,
    ib_port_down,
    noise,
    peer_timeouts,
    redfish_entry,
    scontrol_nodes,
    sel_entry,
    traceback,
    xid_line,
)

CASES = Path(__file__).parent / "cases"


# ==================================================================== faulty_gpu


# ==================================================================== gpu_hbm_memory


# ==================================================================== software_bug


@case
def software_bug_same_traceback_xid13_every_gpu(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=8)
    noise(f, 150)
    t = 95.0
    for h in range(f.hosts):
        for g in range(f.gpus):
            f.kernel_log(
                t + h * 0.05,
                h,
                xid_line(
                    f,
                    g,
                    13,
                    "Graphics SM Warp Exception on (GPC 1, TPC 2, SM 0): Out Of Range Address",
                    pid=51234 + g,
                ),
            )
            r = f.rank(h, g)
            f.training_log(
                t + 0.5,
                h,
                traceback(
                    r,
                    [
                        *TRAIN_STEP[:2],
                        ("/workspace/llama/model/moe.py", 233, "forward", "out = self.dispatch(x)"),
                    ],
                    "RuntimeError: CUDA error: an illegal memory access was encountered\nCUDA "
                    "kernel errors might be asynchronously reported at some other API call, so "
                    "the stacktrace below might be incorrect.",
                ),
            )
    f.stall(t)
    write(
        f,
        folder,
        150,
        "A new MoE dispatch kernel indexes out of range: XID 13 on every GPU of every host and "
        "the same illegal-memory-access traceback on every rank. The program, not 128 GPUs.",
        [incident("software_bug", 100, after_s=94)],
    )


@case
def software_bug_cuda_oom_one_rank(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=9)
    noise(f, 170)
    h, g = 6, 5
    r = f.rank(h, g)
    f.training_log(
        90.0,
        h,
        traceback(
            r,
            TRAIN_STEP,
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 5 has a "
            "total capacity of 79.15 GiB of which 1.23 GiB is free. Including non-PyTorch memory, "
            "this process has 77.91 GiB memory in use.",
        ),
    )
    f.training_log(
        93.0,
        h,
        "[2026-03-02 04:01:33,118] torch.distributed.elastic.multiprocessing.api: [ERROR] failed "
        f"(exitcode: 1) local_rank: {g} (pid: 88231) of binary: /usr/bin/python3",
    )
    f.stall(90.0)
    peer_timeouts(f, 90 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        170,
        "One rank runs out of GPU memory (a long sequence in the batch); torchrun reports the "
        "worker failed; the other hosts time out a minute later.",
        [incident("software_bug", 102, host=h, after_s=89)],
    )


@case
def software_bug_host_oom_killer(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=37)
    noise(f, 160)
    h = 12
    # The data loader workers' pinned-memory queues grow until the kernel kills a rank.
    f.kernel_log(
        85.0,
        h,
        "python invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, "
        "oom_score_adj=0",
        "Out of memory: Killed process 412231 (python) total-vm:1834522112kB, "
        "anon-rss:1972334128kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:3921012kB "
        "oom_score_adj:0",
    )
    f.training_log(
        86.0,
        h,
        "[2026-03-02 04:01:26,002] torch.distributed.elastic.multiprocessing.api: [ERROR] failed "
        "(exitcode: -9) local_rank: 2 (pid: 412231) of binary: /usr/bin/python3",
    )
    f.stall(85.0)
    peer_timeouts(f, 85 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        160,
        "The host's OOM killer kills a rank (the data loaders' pinned memory grew unbounded); "
        "torchrun reports exit -9 and the peers time out. The program, on that host.",
        [incident("software_bug", 98, host=h, after_s=84)],
    )


@case
def software_bug_illegal_memory_access(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=10)
    noise(f, 160)
    h, g = 14, 2
    r = f.rank(h, g)
    f.kernel_log(
        77.0,
        h,
        xid_line(
            f,
            g,
            31,
            "Ch 0000000b, intr 00000000. MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ "
            "0x7f2a_e0000000. Fault is of type FAULT_PDE ACCESS_TYPE_VIRT_READ",
            pid=224422,
        ),
    )
    f.training_log(
        77.5,
        h,
        f"[rank{r}]: terminate called after throwing an instance of 'c10::Error'\n"
        f"[rank{r}]:   what():  CUDA error: an illegal memory access was encountered\n"
        f"[rank{r}]: CUDA kernel errors might be asynchronously reported at some other API call, "
        "so the stacktrace below might be incorrect.\n"
        f"[rank{r}]: Exception raised from c10_cuda_check_implementation at "
        "../c10/cuda/CUDAException.cpp:44 (most recent call first):",
    )
    f.stall(77.0)
    peer_timeouts(f, 77 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        160,
        "XID 31 (MMU fault, an application illegal address) on one GPU and the illegal memory "
        "access abort on its rank; peers time out.",
        [incident("software_bug", 80, host=h, gpu=g)],
    )


# ==================================================================== network and NIC


@case
def network_flap_one_rack(folder: Path) -> None:
    f = CaseFleet(hosts=32, seed=11)
    noise(f, 180)
    rack = range(16, 24)
    for h in rack:
        g = h % 8
        t = 100.0 + (h - 16) * 0.1
        dev = f"mlx5_core 0000:{NIC_BUS[g]:02x}:00.0 mlx5_{g}"
        f.kernel_log(t, h, f"{dev}: Port: 1 Link DOWN")
        f.kernel_log(t + 3.5, h, f"{dev}: Port: 1 Link ACTIVE")
    for n, h in enumerate([3, 9, 17, 20, 22, 27, 30]):
        peer = [18, 23, 5, 29, 16, 21, 19][n]
        g = (h + n) % 8
        f.training_log(
            IB_RETRY_S + 100.0 + n * 0.4,
            h,
            f"{f.name(h)}:{3100 + h}:{3180 + h} [{g}] transport/net_ib.cc:1295 NCCL WARN "
            f"NET/IB : Got completion from peer {f.ip(peer)}<{52000 + n}> with error 12, "
            "opcode 0, len 0, vendor err 129 (Recv)",
        )
    f.stall(101.0)
    peer_timeouts(f, 101 + NCCL_TIMEOUT_S, skip=set(rack))
    write(
        f,
        folder,
        180,
        "The leaf switch of one rack flaps: all 8 hosts of the rack log Link DOWN then ACTIVE, "
        "hosts inside and outside the rack get IB retry-exceeded completions from various peers.",
        [incident("network_switch_cable", 112, after_s=99)],
    )


@case
def nic_port_down_one_host(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=12)
    noise(f, 160)
    h, g = 6, 3
    dev = f"mlx5_core 0000:{NIC_BUS[g]:02x}:00.0"
    f.kernel_log(
        75.0,
        h,
        f"{dev}: mlx5_port_module_event:1151:(pid 0): Port module event: module {g}, "
        "Cable unplugged",
    )
    f.kernel_log(75.1, h, f"{dev} mlx5_{g}: Port: 1 Link DOWN")
    # The peers whose QPs went to that port see their work requests fail once the IB retries
    # run out (NCCL_IB_TIMEOUT=20, NCCL_IB_RETRY_CNT=7: about 30 s).
    for n, peer in enumerate([5, 7, 12, 14]):
        pg = (g + n) % 8
        f.training_log(
            IB_RETRY_S + 75.0 + n * 2.1,
            peer,
            f"{f.name(peer)}:{4100 + peer}:{4180 + peer} [{pg}] transport/net_ib.cc:1295 NCCL "
            f"WARN NET/IB : Got completion from peer {f.ip(h)}<{43000 + n}> with error 12, "
            "opcode 0, len 0, vendor err 129 (Recv)",
        )
    f.stall(76.0)
    peer_timeouts(f, 76 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        160,
        "One host's ConnectX cable is pulled (module event, Link DOWN); four peers report IB "
        "completion errors naming that host's address; the rest time out.",
        [incident("nic", 90, host=h, after_s=74)],
    )


# ==================================================================== hangs


@case
def silent_hang_no_error(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=2, interval=10.0)
    noise(f, 160)
    f.stall(120.0)
    write(
        f,
        folder,
        160,
        "Every rank stops advancing at t=120 s with no error anywhere (a hung collective before "
        "NCCL's 10-minute watchdog): detected from heartbeats within 2 heartbeat intervals.",
        [incident("nccl_watchdog_timeout", 140, after_s=120)],
    )


@case
def nccl_watchdog_timeout_laggard_rank(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=13)
    noise(f, 170)
    f.stall(80.0)
    # Rank 104 never entered the all-reduce the others wait in: its watchdog fires on the
    # collective before (one sequence number lower).
    peer_timeouts(f, 80 + NCCL_TIMEOUT_S, odd=13)
    write(
        f,
        folder,
        170,
        "The job hangs with no hardware or application error; a minute later every host's rank "
        "reports a watchdog timeout on SeqNum 88123 except node-0013's, stuck on 88122.",
        [incident("nccl_watchdog_timeout", 100, host=13, after_s=80)],
    )


# ==================================================================== hosts


@case
def host_maintenance_silent_host(folder: Path) -> None:
    f = CaseFleet(hosts=24, seed=14)
    noise(f, 180)
    h = 19
    f.silence(90.0, h)
    for n, peer in enumerate([18, 20]):
        f.training_log(
            120.0 + n,
            peer,
            f"{f.name(peer)}:{5100 + peer}:{5180 + peer} [0] misc/socket.cc:49 NCCL WARN "
            f"socketProgress: Connection closed by remote peer {f.name(h)}<57557>",
        )
    peer_timeouts(f, 90 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        180,
        "A host loses power: its agent sends nothing from 90 s on, the job stalls, two neighbours "
        "see their sockets closed by it and the rest time out. Host loss, named after 60 s of "
        "silence.",
        [incident("host_maintenance", 160, host=h, after_s=90)],
    )


@case
def host_maintenance_soft_lockup_then_silent(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=15)
    noise(f, 160)
    h = 11
    f.kernel_log(
        70.0,
        h,
        "watchdog: BUG: soft lockup - CPU#12 stuck for 22s! [python:12345]",
        "Modules linked in: nvidia_uvm(POE) nvidia_drm(POE) nvidia_modeset(POE) nvidia(POE)",
    )
    f.stall(70.0)
    f.silence(75.0, h)
    peer_timeouts(f, 70 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        160,
        "A host's kernel reports a soft lockup and the host then stops answering; the job "
        "stalls and the peers time out.",
        # The job stalls at 70 s: a hang is seen once the hosts have reported again a
        # heartbeat interval on with no progress, within two intervals (by 90 s).
        [incident("host_maintenance", 90, host=h, after_s=69)],
    )


@case
def planned_maintenance_reboot(folder: Path) -> None:
    f = CaseFleet(hosts=24, seed=16)
    noise(f, 240)
    h = 11
    f.api(
        20.0,
        "POST",
        "/api/v1/maintenance",
        {
            "hosts": [f.name(h)],
            "starts_at": f.at(100).isoformat(),
            "ends_at": f.at(100 + 3600).isoformat(),
            "reason": "GPU firmware and BIOS update (ticket OPS-4412)",
        },
    )
    f.training_log(
        98.0,
        h,
        "[2026-03-02 04:01:38,004] torch.distributed.elastic.agent.server.api: [WARNING] "
        "Received Signals.SIGTERM death signal, shutting down workers",
    )
    f.silence(100.0, h)
    peer_timeouts(f, 100 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        240,
        "An operator announces maintenance on one host at 20 s; at 100 s it is rebooted for it: "
        "the job stalls, the host goes silent, peers time out. Planned, not a fault.",
        [incident("planned", 130, host=h, after_s=99)],
    )


@case
def planned_stop_for_config_change(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=35)
    noise(f, 160)
    f.api(
        20.0,
        "POST",
        "/api/v1/maintenance",
        {
            "job_id": f.job,
            "starts_at": f.at(95).isoformat(),
            "ends_at": f.at(95 + 1800).isoformat(),
            "reason": "planned stop: switch the data mix to phase 2 and raise the LR warmup "
            "(change CHG-2231)",
        },
    )
    for h in range(f.hosts):
        f.training_log(
            100.0 + h * 0.05,
            h,
            f"slurmstepd: error: *** STEP 812345.0 ON {f.name(h)} CANCELLED AT "
            "2026-03-02T04:01:40 BY mlops ***",
        )
    f.stall(100.0)
    write(
        f,
        folder,
        160,
        "The training team announces a stop of the whole job for a config and data-mix change; "
        "at 100 s the job step is cancelled on every host and the ranks stop. Planned.",
        [incident("planned", 120, after_s=99)],
    )


# ==================================================================== other GPU parts


# ==================================================================== other host parts


@case
def ssd_nvme_timeouts(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=21)
    noise(f, 160)
    h = 2
    # The data loader reads shards from local NVMe: its read hangs for the 30 s I/O timeout.
    f.stall(60.0)
    for t, line in [
        (90.0, "nvme nvme0: I/O 900 (I/O Cmd) QID 2 timeout, aborting"),
        (90.1, "nvme nvme0: Abort status: 0x0"),
        (120.0, "nvme nvme0: I/O 900 QID 2 timeout, reset controller"),
        (120.1, "nvme0n1: I/O Cmd(0x2) @ LBA 1336320, 32 blocks, I/O Error (sct 0x3 / sc 0x71)"),
        (
            120.1,
            "I/O error, dev nvme0n1, sector 1336320 op 0x0:(READ) flags 0x80700 phys_seg 4 prio "
            "class 2",
        ),
    ]:
        f.kernel_log(t, h, line)
    r = f.rank(h, 0)
    f.training_log(
        121.0,
        h,
        traceback(
            r,
            [
                (
                    "/usr/local/lib/python3.10/dist-packages/torch/utils/data/_utils/worker.py",
                    308,
                    "_worker_loop",
                    "data = fetcher.fetch(index)",
                ),
                ("/workspace/llama/data/shards.py", 97, "read", "buf = f.read(n)"),
            ],
            "OSError: [Errno 5] Input/output error",
        ),
    )
    write(
        f,
        folder,
        160,
        "A host's NVMe drive stops answering: the job stalls on its data loader at 60 s, the "
        "kernel logs I/O timeouts at 90 s, a controller reset and I/O errors at 120 s.",
        [incident("ssd", 100, host=h, after_s=60)],
    )


@case
def ssd_nvme_timeout_while_still_training(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=34)
    noise(f, 170)
    h = 9
    # The first read times out while the job still trains on prefetched batches; the loader
    # runs dry and the job stalls on it 30 s later.
    f.kernel_log(60.0, h, "nvme nvme0: I/O 900 (I/O Cmd) QID 2 timeout, aborting")
    f.kernel_log(90.0, h, "nvme nvme0: I/O 900 QID 2 timeout, reset controller")
    f.stall(90.0)
    peer_timeouts(f, 90 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        170,
        "A host's NVMe drive times out at 60 s while the job still trains on prefetched data; "
        "at 90 s the controller is reset and the job stalls on it. One ssd incident.",
        [incident("ssd", 75, host=h, after_s=59)],
    )


@case
def power_supply_failure_with_power_brake(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=22)
    noise(f, 170)
    h = 10
    for g in range(f.gpus):
        f.gpu(90.0, h, g, clock_event_reasons=0x88, power_w=180.0)
    f.kernel_log(93.0, h, xid_line(f, 6, 79, "GPU has fallen off the bus."))
    f.gpu(93.5, h, 6, lost=True)
    f.stall(90.0)
    alertmanager(
        f,
        100.0,
        h,
        "IPMIPowerSupplyFailure",
        f"PSU failure on {f.name(h)}",
        "   1 | 03/02/2026 | 04:01:29 | Power Supply #0x50 | Failure detected () | Asserted",
    )
    peer_timeouts(f, 90 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        170,
        "A PSU fails: all 8 GPUs of the host hit HW power brake, one falls off the bus (XID 79), "
        "and the BMC's SEL entry arrives through Alertmanager. The PSU, not the GPU.",
        [incident("power_supply", 95, host=h, after_s=89)],
    )


@case
def server_chassis_fan_failure(folder: Path) -> None:
    f = CaseFleet(hosts=24, seed=23)
    noise(f, 170)
    h = 20
    for g in range(f.gpus):
        f.gpu(95.0 + g * 0.1, h, g, temperature_c=93.0 + g * 0.2, clock_event_reasons=0x48)
    f.stall(96.0)
    alertmanager(
        f,
        104.0,
        h,
        "IPMIFanCritical",
        f"Fan failure on {f.name(h)}",
        "  12 | 03/02/2026 | 04:01:29 | Fan FAN3 | Lower Critical going low | Asserted",
    )
    peer_timeouts(f, 96 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        170,
        "A chassis fan dies: every GPU of the host goes into thermal slowdown and the job "
        "stalls; the BMC's SEL fan alert arrives a few seconds later. The chassis, not 8 GPUs.",
        [incident("server_chassis", 110, host=h, after_s=94)],
    )


@case
def cpu_machine_check(folder: Path) -> None:
    f = CaseFleet(hosts=24, seed=25)
    noise(f, 170)
    h = 21
    f.kernel_log(
        100.0,
        h,
        "mce: [Hardware Error]: CPU 12: Machine Check: 0 Bank 5: be00000000800400",
        "mce: [Hardware Error]: TSC 0 ADDR 7f1234567000 MISC 0 ",
        "mce: [Hardware Error]: PROCESSOR 0:606a6 TIME 1772424100 SOCKET 0 APIC 18 microcode "
        "d0003a5",
        "mce: [Hardware Error]: Machine check events logged",
    )
    f.stall(100.0)
    peer_timeouts(f, 100 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        170,
        "A machine check on one host's CPU (bank 5); its ranks die and the peers time out.",
        [incident("cpu", 112, host=h, after_s=99)],
    )


@case
def system_memory_edac_ue(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=26)
    noise(f, 160)
    # A healthy host logs corrected DIMM errors now and then: noise, not the cause.
    f.kernel_log(
        30.0,
        2,
        "EDAC MC0: 1 CE memory read error on CPU_SrcID#0_MC#0_Chan#0_DIMM#0 (channel:0 slot:0 "
        "page:0x123 offset:0x0 grain:32 syndrome:0x0)",
    )
    h = 7
    f.kernel_log(
        80.0,
        h,
        "EDAC MC3: 1 UE memory read error on CPU_SrcID#1_MC#1_Chan#2_DIMM#0 (channel:2 slot:0 "
        "page:0xb757589 offset:0x140 grain:32 -  OVERFLOW err_code:0101:0092 socket:1 imc:1 "
        "rank:0 bg:3 ba:0 row:1a1e8 col:180)",
        "mce: Uncorrected hardware memory error in user-access at 2c2cbc8c00",
        "Memory failure: 0x2c2cbc8: Sending SIGBUS to python:88412 due to hardware memory "
        "corruption",
    )
    f.training_log(81.0, h, f"[rank{f.rank(h, 4)}]: Bus error (core dumped)")
    f.stall(80.0)
    peer_timeouts(f, 80 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        160,
        "An uncorrectable DIMM error on one host: EDAC UE, the kernel kills the rank with "
        "SIGBUS ('Bus error (core dumped)'); another host's corrected errors are noise.",
        [incident("system_memory", 92, host=h, after_s=79)],
    )


# ==================================================================== outside the job


@case
def dependency_lustre_down(folder: Path) -> None:
    f = CaseFleet(hosts=32, seed=27)
    noise(f, 150)
    for h in range(0, 32, 2):
        t = 90.0 + h * 0.2
        f.kernel_log(
            t,
            h,
            "LustreError: 11-0: scratch-OST0001-osc-ffff8803bd1d9800: operation ost_write to "
            "node 10.0.0.1@o2ib failed: rc = -107",
        )
        f.kernel_log(
            t + 0.5,
            h,
            "Lustre: scratch-MDT0000-mdc-ffff88103d2a7000: Connection to scratch-MDT0000 (at "
            "10.1.1.1@o2ib) was lost; in progress operations using this service will wait for "
            "recovery to complete",
        )
    f.stall(90.0)
    write(
        f,
        folder,
        150,
        "The Lustre file system the job checkpoints to goes away: half the hosts log LustreError "
        "and lost MDT connections during a checkpoint write, and the job stalls.",
        [incident("dependency", 102, after_s=89)],
    )


@case
def dependency_object_store_refused(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=28)
    noise(f, 150)
    for h in range(f.hosts):
        r = f.rank(h, 0)
        f.training_log(
            110.0 + h * 0.1,
            h,
            traceback(
                r,
                [
                    ("/workspace/llama/data/stream.py", 144, "__iter__", "obj = self._get(key)"),
                    (
                        "/usr/local/lib/python3.10/dist-packages/botocore/client.py",
                        553,
                        "_api_call",
                        "return self._make_api_call(operation_name, kwargs)",
                    ),
                ],
                "botocore.exceptions.EndpointConnectionError: Could not connect to the endpoint "
                'URL: "http://datastore.internal:9000/shards/train-00412.bin"',
            ),
        )
    f.stall(110.0)
    write(
        f,
        folder,
        150,
        "The object store the data loaders stream shards from refuses connections: every "
        "host's loader fails to reach it and the job stalls.",
        [incident("dependency", 125, after_s=109)],
    )


@case
def silent_data_corruption_nan_grad(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=29)
    noise(f, 160)
    h, g = 5, 2
    r = f.rank(h, g)
    f.training_log(
        80.0,
        h,
        traceback(
            r,
            [
                *TRAIN_STEP[:2],
                (
                    "/workspace/megatron/core/distributed/param_and_grad_buffer.py",
                    187,
                    "start_grad_sync",
                    "assert not torch.isnan(norm).any(), (",
                ),
            ],
            f"AssertionError: Rank {r}: found NaN in local grad norm in backward pass before "
            f"data-parallel communication collective. Device: {g}, node: {f.name(h)}",
        ),
    )
    f.stall(80.0)
    peer_timeouts(f, 80 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        160,
        "Megatron's NaN check fires on one rank (NaN in its local grad norm) with no hardware "
        "error anywhere; that rank exits and the others hang until their watchdogs fire.",
        [incident("silent_data_corruption", 100, host=h, after_s=79)],
    )


@case
def unknown_worker_exit_without_reason(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=33)
    noise(f, 160)
    h, g = 9, 3
    r = f.rank(h, g)
    # The rank's last words say nothing usable; torchrun sees it exit with code 1.
    f.training_log(89.5, h, f"[rank{r}]: step 12045: giving up, exiting")
    f.training_log(
        90.0,
        h,
        "[2026-03-02 04:01:30,441] torch.distributed.elastic.multiprocessing.api: [ERROR] failed "
        f"(exitcode: 1) local_rank: {g} (pid: 8812) of binary: /usr/bin/python3",
    )
    f.training_log(
        90.1,
        h,
        "[2026-03-02 04:01:30,512] torch.distributed.elastic.multiprocessing.api: [WARNING] "
        "Sending process 8813 closing signal SIGTERM",
    )
    f.stall(90.0)
    peer_timeouts(f, 90 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        160,
        "One worker exits with code 1 and nothing says why (no traceback, no kernel or GPU "
        "error); the job stalls and the peers time out a minute later. Unknown, on that host.",
        [incident("unknown", 110, host=h, after_s=89)],
    )


# ==================================================================== several faults, none


@case
def two_faults_xid48_and_nvme(folder: Path) -> None:
    f = CaseFleet(hosts=24, seed=30)
    noise(f, 170)
    f.kernel_log(
        80.0,
        5,
        xid_line(
            f,
            2,
            48,
            "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer "
            "at partition 2, subpartition 1.",
        ),
    )
    f.stall(80.0)
    peer_timeouts(f, 80 + NCCL_TIMEOUT_S, skip={5})
    # Unrelated, on another host, while the job is down: its boot drive fails.
    for t, line in [
        (130.0, "nvme nvme1: I/O 211 QID 7 timeout, aborting"),
        (130.2, "nvme nvme1: I/O 211 QID 7 timeout, reset controller"),
        (130.4, "nvme nvme1: controller is down; will reset: CSTS=0xffffffff, PCI_STATUS=0xffff"),
    ]:
        f.kernel_log(t, 22, line)
    write(
        f,
        folder,
        170,
        "XID 48 on node-0005 stops the job; 50 s later node-0022's NVMe controller goes down. "
        "Two unrelated faults in one window: two incidents.",
        [
            incident("gpu_hbm_memory", 85, host=5, gpu=2),
            incident("ssd", 145, host=22, after_s=129),
        ],
    )


@case
def two_faults_xid79_and_edac_ue(folder: Path) -> None:
    f = CaseFleet(hosts=24, seed=31)
    noise(f, 150)
    f.kernel_log(60.0, 3, xid_line(f, 5, 79, "GPU has fallen off the bus."))
    f.gpu(60.5, 3, 5, lost=True)
    f.kernel_log(
        62.0,
        18,
        "EDAC MC1: 1 UE memory read error on CPU_SrcID#0_MC#1_Chan#1_DIMM#0 (channel:1 slot:0 "
        "page:0x5d3a11 offset:0x80 grain:32 - err_code:0101:0091 socket:0 imc:1 rank:0)",
    )
    f.stall(60.0)
    peer_timeouts(f, 60 + NCCL_TIMEOUT_S, skip={3})
    write(
        f,
        folder,
        150,
        "Within two seconds a GPU of node-0003 falls off the bus and node-0018 logs an "
        "uncorrectable DIMM error: two faults, two incidents.",
        [
            incident("faulty_gpu", 65, host=3, gpu=5),
            incident("system_memory", 75, host=18, after_s=61),
        ],
    )


@case
def noisy_healthy_fleet(folder: Path) -> None:
    f = CaseFleet(hosts=32, seed=32)
    noise(f, 150, hosts=range(0, 32, 3))
    f.kernel_log(
        50.0,
        9,
        "EDAC MC0: 2 CE memory read error on CPU_SrcID#0_MC#0_Chan#2_DIMM#0 (channel:2 slot:0 "
        "page:0x0 offset:0x0 grain:8 syndrome:0x0)",
    )
    f.kernel_log(
        60.0,
        14,
        "nvidia-peermem nv_get_p2p_free_callback:127 ERROR detected invalid context, skipping "
        "further processing",
    )
    f.training_log(
        75.0,
        20,
        f"{f.name(20)}:6120:6200 [4] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB "
        "[2]mlx5_2:1/IB [3]mlx5_3:1/IB ; OOB ib0:10.128.2.14<0>",
    )
    f.training_log(
        90.0,
        31,
        f"[rank{f.rank(31, 0)}]: saving checkpoint at iteration 12100 to /ckpt/llama3-405b/step-"
        "12100 in torch_dist format",
    )
    write(
        f,
        folder,
        150,
        "A healthy fleet's everyday noise: corrected PCIe AER, corrected DIMM errors, "
        "nvidia-peermem chatter, NCCL INFO, checkpoint messages. No incident.",
        [],
        # Ranks count as stalled 15 s after their last step, and the last beats are up to one
        # interval (10 s) before the end: stop before the recording's end looks like a hang.
        run_for_s=4,
    )


# ==================================================================== the right culprit


@case
def silent_hang_with_corrected_dimm_errors_elsewhere(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=41)
    noise(f, 95)
    f.stall(100.0)
    # A healthy host's DIMM corrects a few errors while the job hangs: it explains nothing.
    for t in (108.0, 131.0):
        f.kernel_log(
            t,
            5,
            "EDAC MC0: 3 CE memory read error on CPU_SrcID#0_MC#0_Chan#1_DIMM#0 (channel:1 "
            "slot:0 page:0x4f2a1 offset:0x540 grain:32 syndrome:0x0 - err_code:0x0000:0x009f "
            "socket:0 imc:0 rank:1 bg:2 ba:1 row:3e1 col:2a8)",
        )
    write(
        f,
        folder,
        150,
        "Every rank stops at 100 s with no error; node-0005 logs corrected DIMM errors during "
        "the hang. The hang incident (no culprit), not system_memory on a healthy host.",
        [incident("nccl_watchdog_timeout", 120, after_s=100)],
    )


@case
def dependency_lustre_down_everywhere_and_one_nvme_fault(folder: Path) -> None:
    f = CaseFleet(hosts=32, seed=42)
    noise(f, 75)
    oss = "scratch-OST0003-osc-ffff9a4c3e5f1000"
    # The OSS holding the checkpoint's stripes stops answering at 80 s: every client logs it,
    # and keeps logging its reconnection attempts for minutes.
    for n in range(6):
        for h in range(f.hosts):
            t = 80.0 + 30 * n + h * 0.1
            if n == 0:
                line = (
                    f"LustreError: 11-0: {oss}: operation ost_write to node 10.0.0.3@o2ib "
                    "failed: rc = -110"
                )
            elif n % 2:
                line = (
                    f"Lustre: {oss}: Connection to scratch-OST0003 (at 10.0.0.3@o2ib) was "
                    "lost; in progress operations using this service will wait for recovery "
                    "to complete"
                )
            else:
                line = (
                    f"Lustre: 3254:0:(client.c:2133:ptlrpc_expire_one_request()) @@@ Request "
                    f"sent has timed out for slow reply: [sent {1772424080 + 30 * n}/real "
                    f"{1772424080 + 30 * n}]  req@ffff9a4c1e5b{h:04x} x17925544{n:05d}/t0(0) "
                    f"o4->{oss}@10.0.0.3@o2ib:6/4 lens 488/448 e 0 to 1 dl "
                    f"{1772424087 + 30 * n} ref 2 fl Rpc:X/0/ffffffff rc 0/-1"
                )
            f.kernel_log(t, h, line)
    f.stall(82.0)
    # Meanwhile node-0013's local NVMe (its shard cache) fails: a fault of its own.
    h = 13
    for t, line in [
        (120.0, "nvme nvme0: I/O 417 QID 5 timeout, aborting"),
        (150.0, "nvme nvme0: I/O 417 QID 5 timeout, reset controller"),
        (150.4, "nvme nvme0: controller is down; will reset: CSTS=0xffffffff, PCI_STATUS=0xffff"),
        (150.5, "nvme0n1: I/O Cmd(0x2) @ LBA 20480, 256 blocks, I/O Error (sct 0x3 / sc 0x71)"),
        (
            150.5,
            "blk_update_request: I/O error, dev nvme0n1, sector 20480 op 0x0:(READ) flags "
            "0x80700 phys_seg 32 prio class 0",
        ),
    ]:
        f.kernel_log(t, h, line)
    write(
        f,
        folder,
        250,
        "Shared Lustre goes away at 80 s: all 32 hosts log it every 30 s for minutes and the "
        "job stalls; at 120 s node-0013's local NVMe times out, then its controller goes down. "
        "One dependency incident (no culprit) and one ssd incident on node-0013, and no more "
        "through every later evaluation.",
        [
            incident("dependency", 95, after_s=79),
            incident("ssd", 135, host=h, after_s=119),
        ],
        run_for_s=50,
    )


@case
def nccl_watchdog_timeout_2048_hosts_one_stops_first(folder: Path) -> None:
    f = CaseFleet(hosts=2048, seed=44)
    h = 1377
    # Its ranks stop stepping at 12 s; the rest of the job runs on for 23 s before every
    # collective waits on it. No error anywhere. (Kept short: 2,048 hosts' batches every 10 s.)
    f.stall(12.0, host=h)
    f.stall(35.0)
    write(
        f,
        folder,
        55,
        "2,048 hosts of 8 ranks train; node-1377's ranks stop at 12 s, the other 2,047 hosts' "
        "23 s later, and nothing reports an error. One hang incident naming node-1377, from "
        "the heartbeats (its last step and beat against the rest's), detected within two "
        "heartbeat intervals of its stop and still one incident once the whole job has stalled.",
        [incident("nccl_watchdog_timeout", 32, host=h, after_s=26)],
    )


@case
def two_jobs_fail_at_once_xid48_and_a_bug(folder: Path) -> None:
    moe = CaseFleet(hosts=16, seed=46, job="moe-32x8b", first_host=16)
    f = CaseFleet(hosts=16, seed=45, also=[moe])
    noise(f, 65)
    noise(moe, 65)
    h, g = 6, 1
    f.kernel_log(
        70.0,
        h,
        xid_line(
            f,
            g,
            48,
            "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer "
            "at partition 1, subpartition 0.",
        ),
    )
    f.stall(70.0)
    peer_timeouts(f, 70 + NCCL_TIMEOUT_S, skip={h})
    # In the same seconds the other job's new data pipeline fails on every rank.
    for mh in range(moe.hosts):
        for mg in range(moe.gpus):
            r = moe.rank(mh, mg)
            moe.training_log(
                70.4 + mh * 0.05,
                mh,
                traceback(
                    r,
                    [
                        *TRAIN_STEP[:2],
                        (
                            "/workspace/moe/data/packing.py",
                            88,
                            "pack",
                            'seq = doc["tokens"][: self.seq_len]',
                        ),
                    ],
                    "KeyError: 'tokens'",
                ),
            )
    moe.stall(70.4)
    write(
        f,
        folder,
        150,
        "Two jobs on disjoint hosts: XID 48 on node-0006 in llama3-405b and, in the same "
        "second, the same KeyError traceback on every rank of moe-32x8b (node-0016..0031). "
        "Two incidents, one per job.",
        [
            incident("gpu_hbm_memory", 75, host=h, gpu=g, job_id=f.job, after_s=69),
            incident("software_bug", 85, job_id=moe.job, after_s=69),
        ],
    )


@case
def straggler_one_host_slow_without_error(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=47)
    noise(f, 150)
    h = 9
    # From 60 s node-0009's ranks take three times as long per step; nothing logs an error.
    f.slow_down(60.0, h, 3.0)
    write(
        f,
        folder,
        150,
        "node-0009's ranks slow to a third of the job's pace at 60 s (step time 6 s vs 2 s, "
        "their steps falling behind) with no error, thermal or link sign anywhere: the job "
        "waits on it in every collective. One incident naming node-0009.",
        [incident("nccl_watchdog_timeout", 85, host=h, after_s=60)],
        decisions=[{"action": "exclude_and_restart", "exclude_hosts": [f.name(h)], "by_s": 90}],
    )


# ==================================================================== other sources (issue 16)
# The cause reaches the service from a source beyond NVML and the kernel log (the BMC's SEL,
# mcelog, InfiniBand sysfs, DCGM's health watches, the scheduler's node state), read by the
# agent's own collector for it (or the leader's scheduler view); the GPUs' and the job's
# failures are its symptoms.


@case
def power_supply_sel_failure_takes_four_gpus_off_the_bus(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=60)
    noise(f, 170)
    h = 10
    # The supply feeding half the baseboard fails: its four GPUs drop off the bus at once.
    for g in range(4):
        f.kernel_log(90.0 + g * 0.1, h, xid_line(f, g, 79, "GPU has fallen off the bus.", pid=0))
        f.gpu(90.5, h, g, lost=True)
    f.stall(90.0)
    # The agent's next SEL poll (collectors.ipmi, every hardware_s: 10 s) reads the BMC's
    # entries nearly a poll after the fault.
    f.sel(
        99.5,
        h,
        sel_entry(f, 89.8, 0x1A, "Power Supply PS2 Status", "Failure detected ()"),
        sel_entry(f, 89.9, 0x1B, "Power Unit Pwr Unit Redund", "Redundancy Lost"),
    )
    peer_timeouts(f, 90 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        170,
        "A PSU fails: four GPUs of the host fall off the bus (XID 79 on each), the BMC's SEL "
        "(read by the agent over IPMI nearly 10 s later) says PS2 failed and redundancy is "
        "lost, the peers time out. One power_supply incident on the host, not four GPUs.",
        [incident("power_supply", 110, host=h, after_s=89)],
    )


@case
def power_supply_redfish_event_read_after_the_gpus_fell_off(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=66)
    noise(f, 180)
    h = 6
    for g in range(4, 8):
        f.kernel_log(100.0 + g * 0.1, h, xid_line(f, g, 79, "GPU has fallen off the bus.", pid=0))
        f.gpu(100.5, h, g, lost=True)
    f.stall(100.0)
    # The agent polls the BMC over Redfish every redfish_s (30 s): the entry is read late.
    f.redfish(
        124.0,
        h,
        redfish_entry(f, 99.9, 0, "Power supply PSU2 failed.", "OpenBMC.0.1.PowerSupplyFailed"),
    )
    peer_timeouts(f, 100 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        180,
        "A PSU fails: GPUs 4-7 of the host fall off the bus at once (XID 79 each); the BMC's "
        "Redfish event log says PSU2 failed, read by the agent's next Redfish poll 24 s later; "
        "the peers time out. One power_supply incident on the host, not four GPUs.",
        [incident("power_supply", 130, host=h, after_s=99)],
    )


@case
def network_leaf_switch_down_ib_sysfs(folder: Path) -> None:
    f = CaseFleet(hosts=32, seed=61)
    noise(f, 180)
    # The leaf switch of rail 5 for hosts 16-31 fails: port mlx5_5 of each goes down, read by
    # each host's agent on its next InfiniBand poll (every hardware_s, 10 s, each at its phase).
    rail, leaf = 5, range(16, 32)
    for n, h in enumerate(leaf):
        f.sysfs(100.0 + n * 0.6, h, *ib_port_down(rail))
    for n, h in enumerate([2, 7, 18, 21, 26, 30]):
        peer = [17, 25, 29, 16, 19, 23][n]
        g = rail
        f.training_log(
            IB_RETRY_S + 100.0 + n * 0.4,
            h,
            f"{f.name(h)}:{3100 + h}:{3180 + h} [{g}] transport/net_ib.cc:1295 NCCL WARN "
            f"NET/IB : Got completion from peer {f.ip(peer, rail)}<{52000 + n}> with error 12, "
            "opcode 0, len 0, vendor err 129 (Recv)",
        )
    f.stall(100.0)
    peer_timeouts(f, 100 + NCCL_TIMEOUT_S, skip=set(leaf))
    write(
        f,
        folder,
        180,
        "The rail-5 leaf switch of hosts 16-31 fails: each of those hosts' agents sees its "
        "mlx5_5 port leave ACTIVE in sysfs (link_downed 0 -> 1); IB retry-exceeded completions "
        "and NCCL timeouts follow. One network_switch_cable incident, not 16 NICs.",
        [incident("network_switch_cable", 115, after_s=99)],
    )


@case
def system_memory_mcelog_uc_names_the_dimm(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=62)
    noise(f, 160)
    h = 5
    when = f.at(80.0)
    # mcelog logs the machine check at 80 s; the agent's mcelog collector (every hardware_s,
    # 10 s) reads it at 89 s, after the rank's death from SIGBUS.
    f.mcelog(
        89.0,
        h,
        MCELOG_UC_DIMM.format(
            time=int(when.timestamp()), date=when.strftime("%a %b %d %H:%M:%S %Y")
        ),
    )
    f.training_log(80.5, h, f"[rank{f.rank(h, 2)}]: Bus error (core dumped)")
    f.stall(80.0)
    peer_timeouts(f, 80 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        160,
        "mcelog logs an uncorrected memory read error on DIMM C1 (socket 1, channel 2), read by "
        "the agent 9 s later; the rank using that page dies of SIGBUS first and the peers time "
        "out. system_memory on the host, naming the DIMM.",
        [incident("system_memory", 92, host=h, after_s=79, reason_has=["CPU1_DIMM_C1"])],
    )


@case
def nic_nhc_drains_the_node_and_the_job_hangs(folder: Path) -> None:
    f = CaseFleet(hosts=16, seed=65)
    noise(f, 170)
    h = 11
    f.slurm_nodes(0.0, scontrol_nodes(f, {}))
    # NHC's periodic check finds the host's IB port down and drains it; nothing else logs it.
    f.slurm_nodes(
        86.0,
        scontrol_nodes(
            f, {h: ("NHC: check_hw_ib:  No IB port mlx5_3:1 is ACTIVE (LinkUp 400 Gb/sec).", 85.0)}
        ),
    )
    f.stall(84.0)
    peer_timeouts(f, 84 + NCCL_TIMEOUT_S, skip={h})
    write(
        f,
        folder,
        170,
        "NHC drains a host whose IB port mlx5_3 is down (Slurm's reason, read by the leader's "
        "scheduler view); the job hangs and the peers time out. One nic incident on that host.",
        [incident("nic", 130, host=h, after_s=84)],
    )


def main() -> None:
    with_held_back = "--held-back" in sys.argv[1:]
    for name, build in BUILDERS.items():
        folder = CASES / name
        shutil.rmtree(folder, ignore_errors=True)
        if name in HELD_BACK and not with_held_back:
            print(f"held back {name}: {HELD_BACK[name]}")
            continue
        build(folder)
        print(f"wrote {folder}")


if __name__ == "__main__":
    main()
