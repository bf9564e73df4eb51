"""The replay cases' vocabulary: log lines as the real tools print them, and the fault shapes
the cases compose (a GPU falling off the bus, the job stalling and its peers' NCCL watchdogs
firing a minute later, an IB retry exceeded, a NIC's link down, a drained node, ...).

Timing follows what happens on a real fleet: the fault first, the job stalling with it (a dead
GPU or host stops every collective), the NCCL watchdog timeouts on the peers a minute later
(the cases run with NCCL's timeout at 60 s so that a case stays short).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from typing import Any

from sentinel.replay.synth import Fleet
from tests.replay.fleet import CaseFleet

NCCL_TIMEOUT_S = 60.0

# How long IB retries last before a work request fails with "retry exceeded" (error 12):
# 4.096 us * 2^NCCL_IB_TIMEOUT (20) * NCCL_IB_RETRY_CNT (7).
IB_RETRY_S = 30.0

# The eight ConnectX ports of a host, one per GPU, as `ibdev2netdev` lists them.
NIC_BUS = [0x1A, 0x2C, 0x3C, 0x5F, 0x9C, 0xAD, 0xBC, 0xDD]

# NVML clock event reasons: HW slowdown with HW thermal slowdown, and with HW power brake.
THERMAL_SLOWDOWN = 0x48
POWER_BRAKE = 0x88

# What CUDA adds to an error raised asynchronously (the kernel that failed ran earlier).
CUDA_ASYNC = (
    "CUDA kernel errors might be asynchronously reported at some other API call, so the "
    "stacktrace below might be incorrect."
)

# The errors CUDA raises in a rank for an uncorrectable ECC error and an illegal address.
CUDA_ECC = "RuntimeError: CUDA error: uncorrectable ECC error encountered"
ILLEGAL_ADDRESS = "RuntimeError: CUDA error: an illegal memory access was encountered"

# The frames of a traceback raised in the training step, outermost first.
TRAIN_STEP = [
    ("/workspace/llama/train.py", 412, "<module>", "main()"),
    ("/workspace/llama/train.py", 388, "main", "loss = train_step(model, batch)"),
    ("/workspace/llama/train.py", 201, "train_step", "loss.backward()"),
    (
        "/usr/local/lib/python3.10/dist-packages/torch/_tensor.py",
        521,
        "backward",
        "torch.autograd.backward(",
    ),
]


# -------------------------------------------------------------------- lines as tools print them


def torch_ts(f: Fleet, t: float) -> str:
    """PyTorch's (glog's) timestamp for time t: `0302 04:01:35.000000`."""
    return f.at(t).strftime("%m%d %H:%M:%S.%f")


def nccl_timeout(
    f: Fleet,
    t: float,
    rank: int,
    seq: int = 88123,
    op: str = "ALLREDUCE",
    timeout_s: float = NCCL_TIMEOUT_S,
) -> str:
    """The line ProcessGroupNCCL's watchdog prints when a rank's collective ran past its
    timeout (each rank a few milliseconds over, as they notice at different moments)."""
    ran = int(timeout_s * 1000) + rank % 97
    return (
        f"[rank{rank}]:[E{torch_ts(f, t)} ProcessGroupNCCL.cpp:616] [Rank {rank}] Watchdog "
        f"caught collective operation timeout: WorkNCCL(SeqNum={seq}, OpType={op}, "
        f"NumelIn=262144, NumelOut=262144, Timeout(ms)={int(timeout_s * 1000)}) ran for "
        f"{ran} milliseconds before timing out."
    )


def traceback(rank: int, frames: list[tuple[str, int, str, str]], exception: str) -> str:
    """A PyTorch traceback as torchrun --tee prints it: every line tagged with the rank."""
    lines = ["Traceback (most recent call last):"]
    for path, line, func, code in frames:
        lines += [f'  File "{path}", line {line}, in {func}', f"    {code}"]
    lines += exception.splitlines()
    return "\n".join(f"[rank{rank}]: {line}" for line in lines)


def xid_line(f: CaseFleet, gpu: int, code: int, text: str, pid: int = 48112) -> str:
    """An Xid as NVRM prints it in the kernel log, for a GPU of the fleet's baseboard."""
    return f"NVRM: Xid (PCI:{f.bus(gpu)}): {code}, pid={pid}, name=python, {text}"


def torchrun_stamp(f: CaseFleet, t: float, ms: int) -> str:
    """torchrun's log timestamp for time t: `[2026-03-02 04:01:33,118]` (the milliseconds
    are the case's, as a real log's are anyone's)."""
    return f"[{f.at(t).strftime('%Y-%m-%d %H:%M:%S')},{ms:03d}]"


def nic_device(port: int) -> str:
    """The ConnectX function of one of a host's eight IB ports as mlx5_core names it."""
    return f"mlx5_core 0000:{NIC_BUS[port]:02x}:00.0"


# -------------------------------------------------------------------- other sources (issue 16)
# The BMC's SEL and Redfish log, mcelog, InfiniBand sysfs, DCGM's health watches and Slurm's
# node states, each as its tool prints it: a case hands them to the fleet (f.sel, f.redfish,
# f.mcelog, f.sysfs, f.dcgm_health, f.slurm_nodes) and the agent's own collector for that
# source (or the leader's scheduler view) reads them.


def sel_entry(f: CaseFleet, t: float, record_id: int, sensor: str, event: str) -> str:
    """A SEL entry as `ipmitool sel elist` prints it."""
    when = f.at(t).strftime("%m/%d/%Y | %H:%M:%S")
    return f"  {record_id:x} | {when} | {sensor} | {event} | Asserted"


def redfish_entry(f: CaseFleet, t: float, n: int, message: str, message_id: str) -> dict[str, Any]:
    """An OpenBMC event log entry as its Redfish service serves it (LogEntry v1.9)."""
    created = f.at(t).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    entry_id = str(int(f.at(t).timestamp()) + n)
    return {
        "@odata.id": f"/redfish/v1/Systems/system/LogServices/EventLog/Entries/{entry_id}",
        "@odata.type": "#LogEntry.v1_9_0.LogEntry",
        "Created": created,
        "EntryType": "Event",
        "Id": entry_id,
        "Message": message,
        "MessageArgs": [message.split()[2].rstrip(".")],
        "MessageId": message_id,
        "Name": "System Event Log Entry",
        "Severity": "Critical",
    }


def ib_port_down(hca: int, downed: int = 1) -> tuple[str, ...]:
    """The sysfs files of port 1 of mlx5_<hca> as a lost link leaves them."""
    port = f"mlx5_{hca}/ports/1"
    return (
        f"{port}/state 1: DOWN",
        f"{port}/phys_state 2: Polling",
        f"{port}/counters/link_downed {downed}",
    )


MCELOG_UC_DIMM = """Hardware event. This is not a software error.
MCE 0
CPU 26 BANK 13 TSC 2c2c2ee4b2c0e
MISC 908400c0000228c ADDR 2c2cbc8c00
TIME {time} {date}
MCG status:RIPV MCIP
MCi status:
Uncorrected error
Error enabled
MCi_MISC register valid
MCi_ADDR register valid
MCA: MEMORY CONTROLLER RD_CHANNEL2_ERR
Transaction: Memory read error
STATUS bd800000000c0092 MCGSTATUS 5
MCGCAP f000c14 APICID 34 SOCKETID 1
CPUID Vendor Intel Family 6 Model 143
Uncorrected DIMM memory error count exceeded threshold: 1 in 24h
Location SOCKET:1 CHANNEL:2 DIMM:0 [C1 CPU1_DIMM_C1]"""


DCGM_HEALTH_DBE = """{{
   "body" : {{
      "GPU" : {{
         "children" : {{
            "{gpu}" : {{
               "children" : {{
                  "Errors" : {{
                     "children" : {{
                        "Memory system" : {{
                           "overflow" : [
                              "Detected 2 volatile double-bit ECC error(s) in GPU {gpu}.",
                              "Drain the GPU and reset it or reboot the node."
                           ],
                           "value" : "Failure"
                        }}
                     }}
                  }}
               }},
               "value" : "Failure"
            }}
         }}
      }},
      "Overall Health" : {{
         "value" : "Failure"
      }}
   }},
   "header" : [ "Health Monitor Report" ]
}}"""


def scontrol_nodes(f: CaseFleet, drained: dict[int, tuple[str, float]]) -> str:
    """`scontrol show nodes --json` (Slurm 24.11, data_parser v0.0.42) for the fleet: every
    node allocated to the job, those in `drained` drained by root with the reason given at the
    time given (trimmed to the fields the adapter reads, as tests/schedulers/data/releases)."""
    nodes = []
    for h in range(f.hosts):
        reason, at = drained.get(h, ("", 0.0))
        nodes.append(
            {
                "name": f.name(h),
                "state": ["ALLOCATED", "DRAIN"] if reason else ["ALLOCATED"],
                "reason": reason,
                "reason_set_by_user": "root" if reason else "",
                "reason_changed_at": {
                    "set": bool(reason),
                    "infinite": False,
                    "number": int(f.at(at).timestamp()) if reason else 0,
                },
                "reservation": "",
                "cpus": 192,
                "alloc_cpus": 192,
                "gres": "gpu:h100:8(S:0-1)",
                "gres_used": "gpu:h100:8(IDX:0-7)",
            }
        )
    update = {"set": True, "infinite": False, "number": int(f.at(0).timestamp())}
    return json.dumps({"nodes": nodes, "last_update": update, "errors": [], "warnings": []})


# -------------------------------------------------------------------- fault shapes
# Each is what a real fleet prints when that thing happens; a case is a few of them in a row.
# Every one appends its lines in a fixed order: lines printed at the same instant keep the
# order they were injected in, so a case's recording is the same byte for byte on a rebuild.


def noise(f: CaseFleet, duration: float, hosts: Iterable[int] = (), seed: int = 0) -> None:
    """What healthy hosts say all day: NCCL INFO chatter, corrected AER, training progress.

    Four hosts (or `hosts`) drawn from its own generator (seeded with the fleet's seed unless
    `seed`): the fleet's samples draw from theirs, so neither shifts the other's draws."""
    rng = random.Random(seed or f.seed)
    chosen = list(hosts) or rng.sample(range(f.hosts), k=min(4, f.hosts))
    for h in chosen:
        g = rng.randrange(f.gpus)
        t = rng.uniform(5, duration * 0.8)
        name = f.name(h)
        f.training_log(
            t,
            h,
            f"{name}:{2200 + h}:{2290 + g} [{g}] NCCL INFO Channel 00/32 : "
            f"{f.rank(h, g)}[{g}] -> {f.rank((h + 1) % f.hosts, g)}[{g}] [send] via NET/IB/{g}"
            "/GDRDMA",
        )
        f.kernel_log(
            t + 1.5,
            h,
            f"pcieport 0000:{0x15 + g * 16:02x}:01.0: AER: Corrected error received: "
            f"0000:{0x16 + g * 16:02x}:00.0",
            f"nvme 0000:{0x16 + g * 16:02x}:00.0: PCIe Bus Error: severity=Corrected, "
            "type=Physical Layer, (Receiver ID)",
        )
    for step in range(20, int(duration * 0.8), 40):
        it = 12000 + step // 2
        f.training_log(
            step,
            f.hosts - 1,
            f" iteration    {it}/  500000 | consumed samples:     {it * 2048} | elapsed time "
            "per iteration (ms): 2031.4 | learning rate: 1.500E-04 | global batch size:  2048 | "
            "lm loss: 2.101E+00 | loss scale: 1.0 | grad norm: 0.231 | number of skipped "
            "iterations:   0 | number of nan iterations:   0 |",
        )


def job_stalls(
    f: CaseFleet, at: float, on: int | Iterable[int], timeout_s: float = NCCL_TIMEOUT_S
) -> None:
    """The job stalls at `at` on the culprit host(s): every rank stops stepping (a dead GPU or
    host stops every collective) and, NCCL's watchdog timeout later, every other host's first
    rank reports a collective timeout (the symptom flood; the culprits' ranks are dead)."""
    f.stall(at)
    culprits = {on} if isinstance(on, int) else set(on)
    peer_timeouts(f, at + timeout_s, skip=culprits, timeout_s=timeout_s)


def peer_timeouts(
    f: CaseFleet,
    t: float,
    skip: Iterable[int] = (),
    seq: int = 88123,
    odd: int | None = None,
    timeout_s: float = NCCL_TIMEOUT_S,
) -> None:
    """The symptom flood: every other host's first rank times out in the collective."""
    skipped = set(skip)
    for h in range(f.hosts):
        if h in skipped:
            continue
        when = t + (h % 7) * 0.3
        r = f.rank(h, 0)
        f.training_log(when, h, nccl_timeout(f, when, r, seq - (h == odd), timeout_s=timeout_s))


def driver_xid(
    f: CaseFleet, at: float, host: int, gpu: int, code: int, text: str, pid: int = 48112
) -> None:
    """The GPU driver reports an Xid on that GPU in the host's kernel log, as NVRM prints it:
    `NVRM: Xid (PCI:0000:5d:00): 48, pid=48112, name=python, <what the driver says>`."""
    f.kernel_log(at, host, xid_line(f, gpu, code, text, pid=pid))


def gpu_falls_off(
    f: CaseFleet,
    at: float,
    host: int,
    gpu: int,
    pid: int = 48112,
    lost_at: float | None = None,
) -> None:
    """A GPU falls off the bus: the driver prints XID 79 ("GPU has fallen off the bus.") and
    from half a second on (or `lost_at`) NVML reports the GPU lost in the agent's samples."""
    driver_xid(f, at, host, gpu, 79, "GPU has fallen off the bus.", pid=pid)
    f.gpu(at + 0.5 if lost_at is None else lost_at, host, gpu, lost=True)


def hbm_dbe(
    f: CaseFleet, at: float, host: int, gpu: int, partition: int, subpartition: int
) -> None:
    """XID 48: the driver found an uncorrectable double-bit ECC error in the GPU's HBM (the
    framebuffer), at that partition and subpartition."""
    driver_xid(
        f,
        at,
        host,
        gpu,
        48,
        "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at "
        f"partition {partition}, subpartition {subpartition}.",
    )


def row_remapped(f: CaseFleet, at: float, host: int, gpu: int, row: int, pid: int = 48112) -> None:
    """XID 63: the row remapper marked an HBM row for remapping, active after a GPU reset."""
    driver_xid(
        f,
        at,
        host,
        gpu,
        63,
        f"Row Remapper: New row (0x{row:016x}) was marked for remapping, reset gpu to activate.",
        pid=pid,
    )


def gsp_timeout(
    f: CaseFleet, at: float, host: int, gpu: int, function: str, pid: int, process: str = "python"
) -> None:
    """XID 119: the driver waited 6 s for the GPU's GSP to answer an RPC from `process`;
    `function` is the call as the driver names it: `103 (GSP_RM_ALLOC) (0x2081 0x4)`."""
    line = xid_line(
        f,
        gpu,
        119,
        f"Timeout after 6s of waiting for RPC response from GPU{gpu} GSP! Expected function "
        f"{function}.",
        pid=pid,
    )
    f.kernel_log(at, host, line.replace("name=python", f"name={process}"))


def gpu_overheats(f: CaseFleet, at: float, host: int, gpu: int, temperature_c: float) -> None:
    """From `at` the GPU's samples show it hot and in HW thermal slowdown."""
    f.gpu(at, host, gpu, temperature_c=temperature_c, clock_event_reasons=THERMAL_SLOWDOWN)


def rank_fails(
    f: CaseFleet,
    at: float,
    host: int,
    gpu: int,
    exception: str,
    frames: list[tuple[str, int, str, str]] = TRAIN_STEP,
) -> None:
    """The rank on that GPU dies: its Python traceback in the training log, every line tagged
    `[rankN]:` as torchrun --tee prints it (by default raised in the training step)."""
    f.training_log(at, host, traceback(f.rank(host, gpu), frames, exception))


def rank_dies_of_sigbus(f: CaseFleet, at: float, host: int, gpu: int) -> None:
    """The kernel killed the rank on that GPU with SIGBUS (it touched a page whose memory
    failed): all the rank prints is its shell's `Bus error (core dumped)`."""
    f.training_log(at, host, f"[rank{f.rank(host, gpu)}]: Bus error (core dumped)")


def worker_fails(
    f: CaseFleet, at: float, host: int, local_rank: int, exitcode: int, pid: int, ms: int
) -> None:
    """torchrun's elastic agent on the host reports a worker process that exited."""
    f.training_log(
        at,
        host,
        f"{torchrun_stamp(f, at, ms)} torch.distributed.elastic.multiprocessing.api: [ERROR] "
        f"failed (exitcode: {exitcode}) local_rank: {local_rank} (pid: {pid}) of binary: "
        "/usr/bin/python3",
    )


def ib_retry_exceeded(
    f: CaseFleet, at: float, host: int, gpu: int, peer_ip: str, conn: int, pid: int
) -> None:
    """NCCL's IB transport on `host` (its process `pid + host`) gets a work completion with
    error 12 (transport retry counter exceeded) for a queue pair to a peer that stopped
    answering: the peer's address is the one to look at, not this host."""
    f.training_log(
        at,
        host,
        f"{f.name(host)}:{pid + host}:{pid + 80 + host} [{gpu}] transport/net_ib.cc:1295 NCCL "
        f"WARN NET/IB : Got completion from peer {peer_ip}<{conn}> with error 12, opcode 0, "
        "len 0, vendor err 129 (Recv)",
    )


def nic_link(f: CaseFleet, at: float, host: int, port: int, state: str) -> None:
    """mlx5_core logs that port's link going DOWN or coming back ACTIVE."""
    f.kernel_log(at, host, f"{nic_device(port)} mlx5_{port}: Port: 1 Link {state}")


def nic_cable_pulled(f: CaseFleet, at: float, host: int, port: int) -> None:
    """A port's cable is pulled (or its transceiver dies): mlx5_core logs the module event,
    then the link going down."""
    f.kernel_log(
        at,
        host,
        f"{nic_device(port)}: mlx5_port_module_event:1151:(pid 0): Port module event: module "
        f"{port}, Cable unplugged",
    )
    nic_link(f, at + 0.1, host, port, "DOWN")


def alertmanager(
    f: CaseFleet, t: float, host: int, alertname: str, summary: str, description: str
) -> None:
    """A BMC (IPMI/Redfish exporter) alert delivered by Alertmanager's webhook."""
    f.api(
        t,
        "POST",
        "/api/v1/alertmanager",
        {
            "version": "4",
            "receiver": "sentinel",
            "status": "firing",
            "groupKey": f'{{}}:{{alertname="{alertname}"}}',
            "alerts": [
                {
                    "status": "firing",
                    "labels": {
                        "alertname": alertname,
                        "instance": f"{f.name(host)}:9290",
                        "severity": "critical",
                    },
                    "annotations": {"summary": summary, "description": description},
                    "startsAt": f.at(t - 15).isoformat(),
                    "fingerprint": f"{alertname}-{host}",
                }
            ],
        },
        role="agent",
    )


def maintenance_announced(
    f: CaseFleet, at: float, scope: dict[str, Any], starts: float, lasts: float, reason: str
) -> None:
    """An operator announces maintenance through the API: `scope` is the hosts or the job."""
    f.api(
        at,
        "POST",
        "/api/v1/maintenance",
        {
            **scope,
            "starts_at": f.at(starts).isoformat(),
            "ends_at": f.at(starts + lasts).isoformat(),
            "reason": reason,
        },
    )


def drained(f: CaseFleet, at: float, host: int, reason: str, since: float) -> None:
    """From `at` Slurm shows the host drained (by root, since `since`) with that reason, as
    NHC or an operator leaves it; the leader's scheduler view reads it on its next poll."""
    f.slurm_nodes(at, scontrol_nodes(f, {host: (reason, since)}))
