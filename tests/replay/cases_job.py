"""Replay cases whose cause is the job or what it depends on: software bugs, hangs and
stragglers, planned stops, storage and data services, and several faults (or none) at once
(python tests/replay/build_cases.py writes them)."""

from __future__ import annotations

from pathlib import Path

from tests.replay.fleet import CaseFleet, case, incident, write
from tests.replay.shapes import (
    CUDA_ASYNC,
    ILLEGAL_ADDRESS,
    NCCL_TIMEOUT_S,
    TRAIN_STEP,
    driver_xid,
    gpu_falls_off,
    hbm_dbe,
    job_stalls,
    maintenance_announced,
    noise,
    peer_timeouts,
    rank_fails,
    torchrun_stamp,
    worker_fails,
)

# ==================================================================== software_bug


@case
def software_bug_same_traceback_xid13_every_gpu(folder: Path) -> None:
    """A new MoE dispatch kernel indexes out of range: XID 13 on every GPU of every host and the
    same illegal-memory-access traceback on every rank. The program, not 128 GPUs."""
    f = CaseFleet(hosts=16, seed=8)
    noise(f, 150)
    t = 95.0
    warp = "Graphics SM Warp Exception on (GPC 1, TPC 2, SM 0): Out Of Range Address"
    dispatch = ("/workspace/llama/model/moe.py", 233, "forward", "out = self.dispatch(x)")
    for h in range(f.hosts):
        for g in range(f.gpus):
            driver_xid(f, t + h * 0.05, h, g, 13, warp, pid=51234 + g)
            crash = f"{ILLEGAL_ADDRESS}\n{CUDA_ASYNC}"
            rank_fails(f, t + 0.5, h, g, crash, frames=[*TRAIN_STEP[:2], dispatch])
    f.stall(t)
    write(f, folder, 150, [incident("software_bug", 100, after_s=94)])


@case
def software_bug_cuda_oom_one_rank(folder: Path) -> None:
    """One rank runs out of GPU memory (a long sequence in the batch); torchrun reports the worker
    failed; the other hosts time out a minute later."""
    f = CaseFleet(hosts=16, seed=9)
    noise(f, 170)
    h, g = 6, 5
    rank_fails(
        f,
        90.0,
        h,
        g,
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 5 has a "
        "total capacity of 79.15 GiB of which 1.23 GiB is free. Including non-PyTorch memory, "
        "this process has 77.91 GiB memory in use.",
    )
    worker_fails(f, 93.0, h, g, exitcode=1, pid=88231, ms=118)
    job_stalls(f, 90.0, on=h)
    write(f, folder, 170, [incident("software_bug", 102, host=h, after_s=89)])


@case
def software_bug_host_oom_killer(folder: Path) -> None:
    """The host's OOM killer kills a rank (the data loaders' pinned memory grew unbounded); torchrun
    reports exit -9 and the peers time out. The program, on that host."""
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
    worker_fails(f, 86.0, h, 2, exitcode=-9, pid=412231, ms=2)
    job_stalls(f, 85.0, on=h)
    write(f, folder, 160, [incident("software_bug", 98, host=h, after_s=84)])


@case
def software_bug_illegal_memory_access(folder: Path) -> None:
    """XID 31 (MMU fault, an application illegal address) on one GPU and the illegal memory access
    abort on its rank; peers time out."""
    f = CaseFleet(hosts=16, seed=10)
    noise(f, 160)
    h, g = 14, 2
    r = f.rank(h, g)
    driver_xid(
        f,
        77.0,
        h,
        g,
        31,
        "Ch 0000000b, intr 00000000. MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ "
        "0x7f2a_e0000000. Fault is of type FAULT_PDE ACCESS_TYPE_VIRT_READ",
        pid=224422,
    )
    # The rank aborts in C++ (c10::Error), not with a Python traceback.
    f.training_log(
        77.5,
        h,
        f"[rank{r}]: terminate called after throwing an instance of 'c10::Error'\n"
        f"[rank{r}]:   what():  CUDA error: an illegal memory access was encountered\n"
        f"[rank{r}]: {CUDA_ASYNC}\n"
        f"[rank{r}]: Exception raised from c10_cuda_check_implementation at "
        "../c10/cuda/CUDAException.cpp:44 (most recent call first):",
    )
    job_stalls(f, 77.0, on=h)
    write(f, folder, 160, [incident("software_bug", 80, host=h, gpu=g)])


# ==================================================================== hangs and stragglers


@case
def silent_hang_no_error(folder: Path) -> None:
    """Every rank stops advancing at t=120 s with no error anywhere (a hung collective before NCCL's
    10-minute watchdog): detected from heartbeats within 2 heartbeat intervals."""
    f = CaseFleet(hosts=16, seed=2, interval=10.0)
    noise(f, 160)
    f.stall(120.0)
    write(f, folder, 160, [incident("nccl_watchdog_timeout", 140, after_s=120)])


@case
def silent_hang_with_corrected_dimm_errors_elsewhere(folder: Path) -> None:
    """Every rank stops at 100 s with no error; node-0005 logs corrected DIMM errors during the
    hang. The hang incident (no culprit), not system_memory on a healthy host."""
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
    write(f, folder, 150, [incident("nccl_watchdog_timeout", 120, after_s=100)])


@case
def nccl_watchdog_timeout_laggard_rank(folder: Path) -> None:
    """The job hangs with no hardware or application error; a minute later every host's rank reports
    a watchdog timeout on SeqNum 88123 except node-0013's, stuck on 88122."""
    f = CaseFleet(hosts=16, seed=13)
    noise(f, 170)
    f.stall(80.0)
    # Rank 104 never entered the all-reduce the others wait in: its watchdog fires on the
    # collective before (one sequence number lower).
    peer_timeouts(f, 80 + NCCL_TIMEOUT_S, odd=13)
    write(f, folder, 170, [incident("nccl_watchdog_timeout", 100, host=13, after_s=80)])


@case
def nccl_watchdog_timeout_2048_hosts_one_stops_first(folder: Path) -> None:
    """2,048 hosts of 8 ranks train; node-1377's ranks stop at 12 s, the other 2,047 hosts' 23 s
    later, and nothing reports an error. One hang incident naming node-1377, from the heartbeats
    (its last step and beat against the rest's), detected within two heartbeat intervals of its stop
    and still one incident once the whole job has stalled."""
    f = CaseFleet(hosts=2048, seed=44)
    h = 1377
    # Its ranks stop stepping at 12 s; the rest of the job runs on for 23 s before every
    # collective waits on it. No error anywhere. (Kept short: 2,048 hosts' batches every 10 s.)
    f.stall(12.0, host=h)
    f.stall(35.0)
    write(f, folder, 55, [incident("nccl_watchdog_timeout", 32, host=h, after_s=26)])


@case
def straggler_one_host_slow_without_error(folder: Path) -> None:
    """node-0009's ranks slow to a third of the job's pace at 60 s (step time 6 s vs 2 s, their
    steps falling behind) with no error, thermal or link sign anywhere: the job waits on it in every
    collective. One incident naming node-0009."""
    f = CaseFleet(hosts=16, seed=47)
    noise(f, 150)
    h = 9
    # From 60 s node-0009's ranks take three times as long per step; nothing logs an error.
    f.slow_down(60.0, h, 3.0)
    write(
        f,
        folder,
        150,
        [incident("nccl_watchdog_timeout", 85, host=h, after_s=60)],
        decisions=[{"action": "exclude_and_restart", "exclude_hosts": [f.name(h)], "by_s": 90}],
    )


# ==================================================================== planned


@case
def planned_maintenance_reboot(folder: Path) -> None:
    """An operator announces maintenance on one host at 20 s; at 100 s it is rebooted for it: the
    job stalls, the host goes silent, peers time out. Planned, not a fault."""
    f = CaseFleet(hosts=24, seed=16)
    noise(f, 240)
    h = 11
    reason = "GPU firmware and BIOS update (ticket OPS-4412)"
    maintenance_announced(f, 20.0, {"hosts": [f.name(h)]}, starts=100, lasts=3600, reason=reason)
    f.training_log(
        98.0,
        h,
        f"{torchrun_stamp(f, 98.0, 4)} torch.distributed.elastic.agent.server.api: [WARNING] "
        "Received Signals.SIGTERM death signal, shutting down workers",
    )
    f.silence(100.0, h)
    job_stalls(f, 100.0, on=h)
    write(f, folder, 240, [incident("planned", 130, host=h, after_s=99)])


@case
def planned_stop_for_config_change(folder: Path) -> None:
    """The training team announces a stop of the whole job for a config and data-mix change; at 100
    s the job step is cancelled on every host and the ranks stop. Planned."""
    f = CaseFleet(hosts=16, seed=35)
    noise(f, 160)
    reason = (
        "planned stop: switch the data mix to phase 2 and raise the LR warmup (change CHG-2231)"
    )
    maintenance_announced(f, 20.0, {"job_id": f.job}, starts=95, lasts=1800, reason=reason)
    for h in range(f.hosts):
        f.training_log(
            100.0 + h * 0.05,
            h,
            f"slurmstepd: error: *** STEP 812345.0 ON {f.name(h)} CANCELLED AT "
            "2026-03-02T04:01:40 BY mlops ***",
        )
    f.stall(100.0)
    write(f, folder, 160, [incident("planned", 120, after_s=99)])


# ==================================================================== outside the job


@case
def dependency_lustre_down(folder: Path) -> None:
    """The Lustre file system the job checkpoints to goes away: half the hosts log LustreError and
    lost MDT connections during a checkpoint write, and the job stalls."""
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
    write(f, folder, 150, [incident("dependency", 102, after_s=89)])


@case
def dependency_object_store_refused(folder: Path) -> None:
    """The object store the data loaders stream shards from refuses connections: every host's loader
    fails to reach it and the job stalls."""
    f = CaseFleet(hosts=16, seed=28)
    noise(f, 150)
    stream = [
        ("/workspace/llama/data/stream.py", 144, "__iter__", "obj = self._get(key)"),
        (
            "/usr/local/lib/python3.10/dist-packages/botocore/client.py",
            553,
            "_api_call",
            "return self._make_api_call(operation_name, kwargs)",
        ),
    ]
    refused = (
        "botocore.exceptions.EndpointConnectionError: Could not connect to the endpoint URL: "
        '"http://datastore.internal:9000/shards/train-00412.bin"'
    )
    for h in range(f.hosts):
        rank_fails(f, 110.0 + h * 0.1, h, 0, refused, frames=stream)
    f.stall(110.0)
    write(f, folder, 150, [incident("dependency", 125, after_s=109)])


@case
def dependency_lustre_down_everywhere_and_one_nvme_fault(folder: Path) -> None:
    """Shared Lustre goes away at 80 s: all 32 hosts log it every 30 s for minutes and the job
    stalls; at 120 s node-0013's local NVMe times out, then its controller goes down. One dependency
    incident (no culprit) and one ssd incident on node-0013, and no more through every later
    evaluation."""
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
        [
            incident("dependency", 95, after_s=79),
            incident("ssd", 135, host=h, after_s=119),
        ],
        run_for_s=50,
    )


# ==================================================================== no hardware cause


@case
def silent_data_corruption_nan_grad(folder: Path) -> None:
    """Megatron's NaN check fires on one rank (NaN in its local grad norm) with no hardware error
    anywhere; that rank exits and the others hang until their watchdogs fire."""
    f = CaseFleet(hosts=16, seed=29)
    noise(f, 160)
    h, g = 5, 2
    nan_check = (
        "/workspace/megatron/core/distributed/param_and_grad_buffer.py",
        187,
        "start_grad_sync",
        "assert not torch.isnan(norm).any(), (",
    )
    rank_fails(
        f,
        80.0,
        h,
        g,
        f"AssertionError: Rank {f.rank(h, g)}: found NaN in local grad norm in backward pass "
        f"before data-parallel communication collective. Device: {g}, node: {f.name(h)}",
        frames=[*TRAIN_STEP[:2], nan_check],
    )
    job_stalls(f, 80.0, on=h)
    write(f, folder, 160, [incident("silent_data_corruption", 100, host=h, after_s=79)])


@case
def unknown_worker_exit_without_reason(folder: Path) -> None:
    """One worker exits with code 1 and nothing says why (no traceback, no kernel or GPU error); the
    job stalls and the peers time out a minute later. Unknown, on that host."""
    f = CaseFleet(hosts=16, seed=33)
    noise(f, 160)
    h, g = 9, 3
    # The rank's last words say nothing usable; torchrun sees it exit with code 1.
    f.training_log(89.5, h, f"[rank{f.rank(h, g)}]: step 12045: giving up, exiting")
    worker_fails(f, 90.0, h, g, exitcode=1, pid=8812, ms=441)
    f.training_log(
        90.1,
        h,
        f"{torchrun_stamp(f, 90.1, 512)} torch.distributed.elastic.multiprocessing.api: "
        "[WARNING] Sending process 8813 closing signal SIGTERM",
    )
    job_stalls(f, 90.0, on=h)
    write(f, folder, 160, [incident("unknown", 110, host=h, after_s=89)])


# ==================================================================== several faults, none


@case
def two_faults_xid48_and_nvme(folder: Path) -> None:
    """XID 48 on node-0005 stops the job; 50 s later node-0022's NVMe controller goes down. Two
    unrelated faults in one window: two incidents."""
    f = CaseFleet(hosts=24, seed=30)
    noise(f, 170)
    hbm_dbe(f, 80.0, 5, 2, partition=2, subpartition=1)
    job_stalls(f, 80.0, on=5)
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
        [
            incident("gpu_hbm_memory", 85, host=5, gpu=2),
            incident("ssd", 145, host=22, after_s=129),
        ],
    )


@case
def two_faults_xid79_and_edac_ue(folder: Path) -> None:
    """Within two seconds a GPU of node-0003 falls off the bus and node-0018 logs an uncorrectable
    DIMM error: two faults, two incidents."""
    f = CaseFleet(hosts=24, seed=31)
    noise(f, 150)
    gpu_falls_off(f, 60.0, 3, 5)
    f.kernel_log(
        62.0,
        18,
        "EDAC MC1: 1 UE memory read error on CPU_SrcID#0_MC#1_Chan#1_DIMM#0 (channel:1 slot:0 "
        "page:0x5d3a11 offset:0x80 grain:32 - err_code:0101:0091 socket:0 imc:1 rank:0)",
    )
    job_stalls(f, 60.0, on=3)
    write(
        f,
        folder,
        150,
        [
            incident("faulty_gpu", 65, host=3, gpu=5),
            incident("system_memory", 75, host=18, after_s=61),
        ],
    )


@case
def two_jobs_fail_at_once_xid48_and_a_bug(folder: Path) -> None:
    """Two jobs on disjoint hosts: XID 48 on node-0006 in llama3-405b and, in the same second, the
    same KeyError traceback on every rank of moe-32x8b (node-0016..0031). Two incidents, one per
    job."""
    moe = CaseFleet(hosts=16, seed=46, job="moe-32x8b", first_host=16)
    f = CaseFleet(hosts=16, seed=45, also=[moe])
    noise(f, 65)
    noise(moe, 65)
    h, g = 6, 1
    hbm_dbe(f, 70.0, h, g, partition=1, subpartition=0)
    job_stalls(f, 70.0, on=h)
    # In the same seconds the other job's new data pipeline fails on every rank.
    packing = ("/workspace/moe/data/packing.py", 88, "pack", 'seq = doc["tokens"][: self.seq_len]')
    for mh in range(moe.hosts):
        for mg in range(moe.gpus):
            rank_fails(
                moe, 70.4 + mh * 0.05, mh, mg, "KeyError: 'tokens'", [*TRAIN_STEP[:2], packing]
            )
    moe.stall(70.4)
    write(
        f,
        folder,
        150,
        [
            incident("gpu_hbm_memory", 75, host=h, gpu=g, job_id=f.job, after_s=69),
            incident("software_bug", 85, job_id=moe.job, after_s=69),
        ],
    )


@case
def noisy_healthy_fleet(folder: Path) -> None:
    """A healthy fleet's everyday noise: corrected PCIe AER, corrected DIMM errors, nvidia-peermem
    chatter, NCCL INFO, checkpoint messages. No incident."""
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
        [],
        # Ranks count as stalled 15 s after their last step, and the last beats are up to one
        # interval (10 s) before the end: stop before the recording's end looks like a hang.
        run_for_s=4,
    )
