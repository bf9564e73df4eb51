"""Replay cases whose cause is a host or its links: the network and NICs, a lost host, local
NVMe, power, fans, the CPU and its memory (python tests/replay/build_cases.py writes them)."""

from __future__ import annotations

from pathlib import Path

from tests.replay.fleet import CaseFleet, case, incident, write
from tests.replay.shapes import (
    IB_RETRY_S,
    MCELOG_UC_DIMM,
    POWER_BRAKE,
    alertmanager,
    drained,
    gpu_falls_off,
    gpu_overheats,
    ib_port_down,
    ib_retry_exceeded,
    job_stalls,
    nic_cable_pulled,
    nic_link,
    noise,
    rank_dies_of_sigbus,
    rank_fails,
    redfish_entry,
    scontrol_nodes,
    sel_entry,
)

# ==================================================================== network and NIC


@case
def network_flap_one_rack(folder: Path) -> None:
    """The leaf switch of one rack flaps: all 8 hosts of the rack log Link DOWN then ACTIVE, hosts
    inside and outside the rack get IB retry-exceeded completions from various peers."""
    f = CaseFleet(hosts=32, seed=11)
    noise(f, 180)
    rack = range(16, 24)
    for h in rack:
        g = h % 8
        t = 100.0 + (h - 16) * 0.1
        nic_link(f, t, h, g, "DOWN")
        nic_link(f, t + 3.5, h, g, "ACTIVE")
    for n, h in enumerate([3, 9, 17, 20, 22, 27, 30]):
        peer = [18, 23, 5, 29, 16, 21, 19][n]
        t = IB_RETRY_S + 100.0 + n * 0.4
        ib_retry_exceeded(f, t, h, (h + n) % 8, f.ip(peer), 52000 + n, pid=3100)
    job_stalls(f, 101.0, on=rack)
    write(f, folder, 180, [incident("network_switch_cable", 112, after_s=99)])


@case
def network_leaf_switch_down_ib_sysfs(folder: Path) -> None:
    """The rail-5 leaf switch of hosts 16-31 fails: each of those hosts' agents sees its mlx5_5 port
    leave ACTIVE in sysfs (link_downed 0 -> 1); IB retry-exceeded completions and NCCL timeouts
    follow. One network_switch_cable incident, not 16 NICs."""
    f = CaseFleet(hosts=32, seed=61)
    noise(f, 180)
    # The leaf switch of rail 5 for hosts 16-31 fails: port mlx5_5 of each goes down, read by
    # each host's agent on its next InfiniBand poll (every hardware_s, 10 s, each at its phase).
    rail, leaf = 5, range(16, 32)
    for n, h in enumerate(leaf):
        f.sysfs(100.0 + n * 0.6, h, *ib_port_down(rail))
    for n, h in enumerate([2, 7, 18, 21, 26, 30]):
        peer = [17, 25, 29, 16, 19, 23][n]
        t = IB_RETRY_S + 100.0 + n * 0.4
        ib_retry_exceeded(f, t, h, rail, f.ip(peer, rail), 52000 + n, pid=3100)
    job_stalls(f, 100.0, on=leaf)
    write(f, folder, 180, [incident("network_switch_cable", 115, after_s=99)])


@case
def nic_port_down_one_host(folder: Path) -> None:
    """One host's ConnectX cable is pulled (module event, Link DOWN); four peers report IB
    completion errors naming that host's address; the rest time out."""
    f = CaseFleet(hosts=16, seed=12)
    noise(f, 160)
    h, g = 6, 3
    nic_cable_pulled(f, 75.0, h, g)
    # The peers whose QPs went to that port see their work requests fail once the IB retries
    # run out (NCCL_IB_TIMEOUT=20, NCCL_IB_RETRY_CNT=7: about 30 s).
    for n, peer in enumerate([5, 7, 12, 14]):
        t = IB_RETRY_S + 75.0 + n * 2.1
        ib_retry_exceeded(f, t, peer, (g + n) % 8, f.ip(h), 43000 + n, pid=4100)
    job_stalls(f, 76.0, on=h)
    write(f, folder, 160, [incident("nic", 90, host=h, after_s=74)])


@case
def nic_nhc_drains_the_node_and_the_job_hangs(folder: Path) -> None:
    """NHC drains a host whose IB port mlx5_3 is down (Slurm's reason, read by the leader's
    scheduler view); the job hangs and the peers time out. One nic incident on that host."""
    f = CaseFleet(hosts=16, seed=65)
    noise(f, 170)
    h = 11
    f.slurm_nodes(0.0, scontrol_nodes(f, {}))
    # NHC's periodic check finds the host's IB port down and drains it; nothing else logs it.
    reason = "NHC: check_hw_ib:  No IB port mlx5_3:1 is ACTIVE (LinkUp 400 Gb/sec)."
    drained(f, 86.0, h, reason, since=85.0)
    job_stalls(f, 84.0, on=h)
    write(f, folder, 170, [incident("nic", 130, host=h, after_s=84)])


# ==================================================================== hosts


@case
def host_maintenance_silent_host(folder: Path) -> None:
    """A host loses power: its agent sends nothing from 90 s on, the job stalls, two neighbours see
    their sockets closed by it and the rest time out. Host loss, named after 60 s of silence."""
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
    job_stalls(f, 90.0, on=h)
    write(f, folder, 180, [incident("host_maintenance", 160, host=h, after_s=90)])


@case
def host_maintenance_soft_lockup_then_silent(folder: Path) -> None:
    """A host's kernel reports a soft lockup and the host then stops answering; the job stalls and
    the peers time out."""
    f = CaseFleet(hosts=16, seed=15)
    noise(f, 160)
    h = 11
    f.kernel_log(
        70.0,
        h,
        "watchdog: BUG: soft lockup - CPU#12 stuck for 22s! [python:12345]",
        "Modules linked in: nvidia_uvm(POE) nvidia_drm(POE) nvidia_modeset(POE) nvidia(POE)",
    )
    job_stalls(f, 70.0, on=h)
    f.silence(75.0, h)
    write(
        f,
        folder,
        160,
        # The job stalls at 70 s: a hang is seen once the hosts have reported again a
        # heartbeat interval on with no progress, within two intervals (by 90 s).
        [incident("host_maintenance", 90, host=h, after_s=69)],
    )


# ==================================================================== local storage


@case
def ssd_nvme_timeouts(folder: Path) -> None:
    """A host's NVMe drive stops answering: the job stalls on its data loader at 60 s, the kernel
    logs I/O timeouts at 90 s, a controller reset and I/O errors at 120 s."""
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
    loader = [
        (
            "/usr/local/lib/python3.10/dist-packages/torch/utils/data/_utils/worker.py",
            308,
            "_worker_loop",
            "data = fetcher.fetch(index)",
        ),
        ("/workspace/llama/data/shards.py", 97, "read", "buf = f.read(n)"),
    ]
    rank_fails(f, 121.0, h, 0, "OSError: [Errno 5] Input/output error", frames=loader)
    write(f, folder, 160, [incident("ssd", 100, host=h, after_s=60)])


@case
def ssd_nvme_timeout_while_still_training(folder: Path) -> None:
    """A host's NVMe drive times out at 60 s while the job still trains on prefetched data; at 90 s
    the controller is reset and the job stalls on it. One ssd incident."""
    f = CaseFleet(hosts=16, seed=34)
    noise(f, 170)
    h = 9
    # The first read times out while the job still trains on prefetched batches; the loader
    # runs dry and the job stalls on it 30 s later.
    f.kernel_log(60.0, h, "nvme nvme0: I/O 900 (I/O Cmd) QID 2 timeout, aborting")
    f.kernel_log(90.0, h, "nvme nvme0: I/O 900 QID 2 timeout, reset controller")
    job_stalls(f, 90.0, on=h)
    write(f, folder, 170, [incident("ssd", 75, host=h, after_s=59)])


# ==================================================================== power and cooling


@case
def power_supply_failure_with_power_brake(folder: Path) -> None:
    """A PSU fails: all 8 GPUs of the host hit HW power brake, one falls off the bus (XID 79), and
    the BMC's SEL entry arrives through Alertmanager. The PSU, not the GPU."""
    f = CaseFleet(hosts=16, seed=22)
    noise(f, 170)
    h = 10
    for g in range(f.gpus):
        f.gpu(90.0, h, g, clock_event_reasons=POWER_BRAKE, power_w=180.0)
    gpu_falls_off(f, 93.0, h, 6)
    job_stalls(f, 90.0, on=h)
    alertmanager(
        f,
        100.0,
        h,
        "IPMIPowerSupplyFailure",
        f"PSU failure on {f.name(h)}",
        "   1 | 03/02/2026 | 04:01:29 | Power Supply #0x50 | Failure detected () | Asserted",
    )
    write(f, folder, 170, [incident("power_supply", 95, host=h, after_s=89)])


@case
def power_supply_sel_failure_takes_four_gpus_off_the_bus(folder: Path) -> None:
    """A PSU fails: four GPUs of the host fall off the bus (XID 79 on each), the BMC's SEL (read by
    the agent over IPMI nearly 10 s later) says PS2 failed and redundancy is lost, the peers time
    out. One power_supply incident on the host, not four GPUs."""
    f = CaseFleet(hosts=16, seed=60)
    noise(f, 170)
    h = 10
    # The supply feeding half the baseboard fails: its four GPUs drop off the bus at once.
    for g in range(4):
        gpu_falls_off(f, 90.0 + g * 0.1, h, g, pid=0, lost_at=90.5)
    job_stalls(f, 90.0, on=h)
    # The agent's next SEL poll (collectors.ipmi, every hardware_s: 10 s) reads the BMC's
    # entries nearly a poll after the fault.
    f.sel(
        99.5,
        h,
        sel_entry(f, 89.8, 0x1A, "Power Supply PS2 Status", "Failure detected ()"),
        sel_entry(f, 89.9, 0x1B, "Power Unit Pwr Unit Redund", "Redundancy Lost"),
    )
    write(f, folder, 170, [incident("power_supply", 110, host=h, after_s=89)])


@case
def power_supply_redfish_event_read_after_the_gpus_fell_off(folder: Path) -> None:
    """A PSU fails: GPUs 4-7 of the host fall off the bus at once (XID 79 each); the BMC's Redfish
    event log says PSU2 failed, read by the agent's next Redfish poll 24 s later; the peers time
    out. One power_supply incident on the host, not four GPUs."""
    f = CaseFleet(hosts=16, seed=66)
    noise(f, 180)
    h = 6
    for g in range(4, 8):
        gpu_falls_off(f, 100.0 + g * 0.1, h, g, pid=0, lost_at=100.5)
    job_stalls(f, 100.0, on=h)
    # The agent polls the BMC over Redfish every redfish_s (30 s): the entry is read late.
    f.redfish(
        124.0,
        h,
        redfish_entry(f, 99.9, 0, "Power supply PSU2 failed.", "OpenBMC.0.1.PowerSupplyFailed"),
    )
    write(f, folder, 180, [incident("power_supply", 130, host=h, after_s=99)])


@case
def server_chassis_fan_failure(folder: Path) -> None:
    """A chassis fan dies: every GPU of the host goes into thermal slowdown and the job stalls; the
    BMC's SEL fan alert arrives a few seconds later. The chassis, not 8 GPUs."""
    f = CaseFleet(hosts=24, seed=23)
    noise(f, 170)
    h = 20
    for g in range(f.gpus):
        gpu_overheats(f, 95.0 + g * 0.1, h, g, temperature_c=93.0 + g * 0.2)
    job_stalls(f, 96.0, on=h)
    alertmanager(
        f,
        104.0,
        h,
        "IPMIFanCritical",
        f"Fan failure on {f.name(h)}",
        "  12 | 03/02/2026 | 04:01:29 | Fan FAN3 | Lower Critical going low | Asserted",
    )
    write(f, folder, 170, [incident("server_chassis", 110, host=h, after_s=94)])


# ==================================================================== CPU and memory


@case
def cpu_machine_check(folder: Path) -> None:
    """A machine check on one host's CPU (bank 5); its ranks die and the peers time out."""
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
    job_stalls(f, 100.0, on=h)
    write(f, folder, 170, [incident("cpu", 112, host=h, after_s=99)])


@case
def system_memory_edac_ue(folder: Path) -> None:
    """An uncorrectable DIMM error on one host: EDAC UE, the kernel kills the rank with SIGBUS ('Bus
    error (core dumped)'); another host's corrected errors are noise."""
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
    rank_dies_of_sigbus(f, 81.0, h, 4)
    job_stalls(f, 80.0, on=h)
    write(f, folder, 160, [incident("system_memory", 92, host=h, after_s=79)])


@case
def system_memory_mcelog_uc_names_the_dimm(folder: Path) -> None:
    """mcelog logs an uncorrected memory read error on DIMM C1 (socket 1, channel 2), read by the
    agent 9 s later; the rank using that page dies of SIGBUS first and the peers time out.
    system_memory on the host, naming the DIMM."""
    f = CaseFleet(hosts=16, seed=62)
    noise(f, 160)
    h = 5
    when = f.at(80.0)
    # mcelog logs the machine check at 80 s; the agent's mcelog collector (every hardware_s,
    # 10 s) reads it at 89 s, after the rank's death from SIGBUS.
    record = MCELOG_UC_DIMM.format(
        time=int(when.timestamp()), date=when.strftime("%a %b %d %H:%M:%S %Y")
    )
    f.mcelog(89.0, h, record)
    rank_dies_of_sigbus(f, 80.5, h, 2)
    job_stalls(f, 80.0, on=h)
    write(
        f,
        folder,
        160,
        [incident("system_memory", 92, host=h, after_s=79, reason_has=["CPU1_DIMM_C1"])],
    )
