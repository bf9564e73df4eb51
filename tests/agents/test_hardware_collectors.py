"""The machine-check, memory-error and link collectors on sources laid out as the real ones:
rasdaemon's database (its own CREATE TABLE statements), mcelog's log, the EDAC and InfiniBand
sysfs trees, `devlink -j health show` output. What they ship reads, as triage reads it, as the
category and part the source names."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydantic import ValidationError

from sentinel.triage.classify import classify_text
from sentinel.wire import LogRecord, Observation
from sentinel_agent.clock import ManualClock
from sentinel_agent.collectors.base import Context
from sentinel_agent.collectors.devlink import DevlinkHealthCollector, NoDevlink, parse_health
from sentinel_agent.collectors.edac import EdacCollector
from sentinel_agent.collectors.hardware import HardwareRecords
from sentinel_agent.collectors.infiniband import InfinibandCollector
from sentinel_agent.collectors.mcelog import McelogCollector
from sentinel_agent.collectors.rasdaemon import RasdaemonCollector
from sentinel_agent.config import HARDWARE_COLLECTORS, CollectorsConfig, InfinibandConfig
from tests.agents.agent_helpers import context

# ---------------------------------------------------------------- rasdaemon

# rasdaemon's ras-record.c field lists (name, type), as ras_mc_create_table joins them.
_RAS_TABLES = {
    "mc_event": "id INTEGER PRIMARY KEY, timestamp TEXT, err_count INTEGER, err_type TEXT, "
    "err_msg TEXT, label TEXT, mc INTEGER, top_layer INTEGER, middle_layer INTEGER, "
    "lower_layer INTEGER, address INTEGER, grain INTEGER, syndrome INTEGER, driver_detail TEXT",
    "mce_record": "id INTEGER PRIMARY KEY, timestamp TEXT, mcgcap INTEGER, mcgstatus INTEGER, "
    "status INTEGER, addr INTEGER, misc INTEGER, ip INTEGER, tsc INTEGER, walltime INTEGER, "
    "ppin INTEGER, cpu INTEGER, cpuid INTEGER, apicid INTEGER, socketid INTEGER, cs INTEGER, "
    "bank INTEGER, cpuvendor INTEGER, microcode INTEGER, bank_name TEXT, error_msg TEXT, "
    "mcgstatus_msg TEXT, mcistatus_msg TEXT, mcastatus_msg TEXT, user_action TEXT, "
    "mc_location TEXT",
    "memory_failure_event": "id INTEGER PRIMARY KEY, timestamp TEXT, pfn TEXT, page_type TEXT, "
    "action_result TEXT",
    "devlink_event": "id INTEGER PRIMARY KEY, timestamp TEXT, bus_name TEXT, dev_name TEXT, "
    "driver_name TEXT, reporter_name TEXT, msg TEXT",
}
_UE_DIMM = "CPU_SrcID#0_MC#1_Chan#0_DIMM#0"


def _ras_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")  # as rasdaemon opens it
    for table, fields in _RAS_TABLES.items():
        db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({fields})")
    return db


def _mc_event(db: sqlite3.Connection, err_type: str, label: str) -> None:
    db.execute(
        "INSERT INTO mc_event (timestamp, err_count, err_type, err_msg, label, mc, top_layer, "
        "middle_layer, lower_layer, address, grain, syndrome, driver_detail) "
        "VALUES (?, 1, ?, 'memory read error', ?, 0, 1, 0, -1, 8589934592, 6, 0, ?)",
        (
            "2024-05-14 02:31:07 +0000",
            err_type,
            label,
            " area:DRAM err_code:0001:0090 socket:0 imc:1 rank:0",
        ),
    )


def _mce(db: sqlite3.Connection) -> None:
    # An uncorrected memory-controller error on CPU 20, bank 13; its status has bit 63 set,
    # which SQLite keeps as a negative integer.
    db.execute(
        "INSERT INTO mce_record (timestamp, mcgcap, mcgstatus, status, addr, misc, ip, tsc, "
        "walltime, ppin, cpu, cpuid, apicid, socketid, cs, bank, cpuvendor, microcode, "
        "bank_name, error_msg, mcgstatus_msg, mcistatus_msg, mcastatus_msg, user_action, "
        "mc_location) VALUES ('2024-05-14 02:31:07 +0000', 0, 5, ?, 8372451328, 134, 0, 0, "
        "1715653867, 0, 20, 394918, 40, 1, 0, 13, 0, 0, '', ?, '', ?, '', '', '')",
        (
            0xBD800000000C0091 - (1 << 64),
            "MEMORY CONTROLLER RD_CHANNEL1_ERR Transaction: Memory read error",
            "Uncorrected_error Error_enabled",
        ),
    )


def _records(items: Sequence[Observation]) -> list[LogRecord]:
    assert all(isinstance(o, LogRecord) for o in items)
    return [o for o in items if isinstance(o, LogRecord)]


def _resumed(ctx: Context, collector: object) -> Context:
    positions = collector.positions()  # type: ignore[attr-defined]
    return dataclasses.replace(ctx, positions={k: v for k, v in positions.items() if v})


def test_rasdaemon_ships_new_rows_as_ras_mc_ctl_prints_them(tmp_path: Path) -> None:
    path = tmp_path / "ras-mc_event.db"
    db = _ras_db(path)
    _mc_event(db, "Corrected", "DIMM_A1")  # history: recorded before the agent started
    ctx, _ = context()
    collector = RasdaemonCollector(ctx, path=path, interval_s=10)
    assert collector.poll() == []

    _mc_event(db, "Uncorrected", _UE_DIMM)
    _mce(db)
    records = _records(collector.poll())
    assert [(r.source, r.pattern, r.severity) for r in records] == [
        ("rasdaemon", "ras_mc_event_uncorrected", "critical"),
        ("rasdaemon", "ras_mce_uncorrected", "error"),
    ]
    assert records[0].message == (
        f"2 2024-05-14 02:31:07 +0000 1 Uncorrected error(s): memory read error at {_UE_DIMM} "
        "location: 0:1:0:-1, addr 8589934592, grain 6, syndrome 0  area:DRAM "
        "err_code:0001:0090 socket:0 imc:1 rank:0"
    )
    assert ", status=0xbd800000000c0091," in records[1].message
    dimm = classify_text(records[0].message)
    assert dimm.category.value == "system_memory" and f"DIMM {_UE_DIMM}" in dimm.reason
    bank = classify_text(records[1].message)
    assert bank.category.value == "system_memory" and "CPU 20 bank 13" in bank.reason
    assert collector.poll() == []

    # A restart resumes after the last row shipped: nothing again, the next row once.
    again = RasdaemonCollector(_resumed(ctx, collector), path=path, interval_s=10)
    db.execute(
        "INSERT INTO memory_failure_event (timestamp, pfn, page_type, action_result) "
        "VALUES ('2024-05-14 02:31:08 +0000', '0x2c2cbc8', 'dirty LRU page', 'Recovered')"
    )
    assert [r.pattern for r in _records(again.poll())] == ["ras_memory_failure"]


def test_rasdaemon_from_start_and_absent(tmp_path: Path) -> None:
    ctx, _ = context()
    missing = RasdaemonCollector(ctx, path=tmp_path / "none.db", interval_s=10)
    assert missing.poll() == [] and missing.positions() == {}
    path = tmp_path / "ras-mc_event.db"
    db = _ras_db(path)
    _mc_event(db, "Corrected", "DIMM_A1")
    db.execute(
        "INSERT INTO devlink_event (timestamp, bus_name, dev_name, driver_name, reporter_name, "
        "msg) VALUES ('2024-05-14 02:31:07 +0000', 'pci', '0000:3b:00.0', 'mlx5_core', "
        "'fw_fatal', 'Crdump was not collected')"
    )
    collector = RasdaemonCollector(ctx, path=path, interval_s=10, from_start=True)
    found = {r.pattern: r for r in _records(collector.poll())}
    assert set(found) == {"ras_mc_event_corrected", "ras_devlink_event"}
    assert classify_text(found["ras_devlink_event"].message).category.value == "nic"


def test_rasdaemon_reads_the_older_schema_debian_ships(tmp_path: Path) -> None:
    # rasdaemon 0.6.8 (Debian 12) has no ppin or microcode in mce_record.
    path = tmp_path / "ras-mc_event.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(
        "CREATE TABLE IF NOT EXISTS mce_record (id INTEGER PRIMARY KEY, timestamp TEXT, "
        "mcgcap INTEGER, mcgstatus INTEGER, status INTEGER, addr INTEGER, misc INTEGER, "
        "ip INTEGER, tsc INTEGER, walltime INTEGER, cpu INTEGER, cpuid INTEGER, apicid INTEGER, "
        "socketid INTEGER, cs INTEGER, bank INTEGER, cpuvendor INTEGER, bank_name TEXT, "
        "error_msg TEXT, mcgstatus_msg TEXT, mcistatus_msg TEXT, mcastatus_msg TEXT, "
        "user_action TEXT, mc_location TEXT)"
    )
    db.execute(
        "INSERT INTO mce_record (timestamp, status, cpu, bank, error_msg, mcistatus_msg) VALUES "
        "('2024-02-01 19:04:55 +0000', ?, 12, 1, 'Data CACHE Level-1 Data-Read Error', "
        "'Uncorrected_error Error_enabled Processor_context_corrupt')",
        (0xBE00000000800400 - (1 << 64),),
    )
    ctx, _ = context()
    [record] = _records(RasdaemonCollector(ctx, path=path, interval_s=10, from_start=True).poll())
    assert record.message == (
        "1 2024-02-01 19:04:55 +0000 error: Data CACHE Level-1 Data-Read Error, "
        "mci Uncorrected_error Error_enabled Processor_context_corrupt, "
        "status=0xbe00000000800400, cpu=0x0000000c, bank=0x00000001"
    )
    verdict = classify_text(record.message)
    assert verdict.category.value == "cpu" and "CPU 12 bank 1" in verdict.reason


# ---------------------------------------------------------------- mcelog

_MCELOG_UC = """Hardware event. This is not a software error.
MCE 0
CPU 13 BANK 7 TSC 2c2c2ee4b2c0e
MISC 86 ADDR 1f2fa7c00
TIME 1715653867 Tue May 14 02:31:07 2024
MCG status:RIPV MCIP
MCi status:
Uncorrected error
Error enabled
MCi_MISC register valid
MCi_ADDR register valid
MCA: MEMORY CONTROLLER RD_CHANNEL1_ERR
Transaction: Memory read error
STATUS bd800000000c0091 MCGSTATUS 5
MCGCAP 1000c17 APICID 28 SOCKETID 1
CPUID Vendor Intel Family 6 Model 106
"""
_MCELOG_CE = """Hardware event. This is not a software error.
MCE 0
CPU 3 BANK 4
TIME 1699012211 Fri Nov  3 11:50:11 2023
MCG status:
MCi status:
Corrected error
Error enabled
MCA: Internal Timer error
STATUS 8800004000400c0f MCGSTATUS 0
"""


def test_mcelog_ships_each_record_whole(tmp_path: Path) -> None:
    log = tmp_path / "mcelog"
    log.write_text(_MCELOG_CE)
    clock = ManualClock()
    ctx, _ = context(clock)
    collector = McelogCollector(ctx, path=log, interval_s=10, from_start=True)
    assert collector.poll() == []  # the record may go on
    with log.open("a") as f:
        f.write(_MCELOG_UC)
    first = _records(collector.poll())  # the next record started: the first is complete
    assert [(r.source, r.pattern, r.severity) for r in first] == [
        ("mcelog", "mcelog_mca", "warning")
    ]
    assert first[0].message == _MCELOG_CE.rstrip("\n")

    # A restart while the second record is open finishes it, once.
    again = McelogCollector(_resumed(ctx, collector), path=log, interval_s=10)
    clock.advance(2)
    second = _records(again.poll())
    assert [(r.pattern, r.severity) for r in second] == [("mcelog_mca", "error")]
    assert second[0].message == _MCELOG_UC.rstrip("\n")
    verdict = classify_text(second[0].message)
    assert verdict.category.value == "system_memory" and "CPU 13 bank 7" in verdict.reason
    clock.advance(2)
    assert again.poll() == []


# ---------------------------------------------------------------- EDAC


def _edac_tree(root: Path, ue: int = 0, ce: int = 0) -> None:
    mc = root / "mc0"
    for name, value in {"ce_count": ce, "ue_count": ue, "ce_noinfo_count": 0}.items():
        (mc / name).parent.mkdir(parents=True, exist_ok=True)
        (mc / name).write_text(f"{value}\n")
    (mc / "ue_noinfo_count").write_text("0\n")
    for i, label in enumerate(["CPU_SrcID#0_MC#0_Chan#0_DIMM#0", "CPU_SrcID#0_MC#0_Chan#1_DIMM#0"]):
        dimm = mc / f"dimm{i}"
        dimm.mkdir(exist_ok=True)
        (dimm / "dimm_label").write_text(f"{label}\n")
        (dimm / "size").write_text("65536\n")
        (dimm / "dimm_ce_count").write_text(f"{ce if i == 1 else 0}\n")
        (dimm / "dimm_ue_count").write_text(f"{ue if i == 1 else 0}\n")


def test_edac_reports_a_dimm_counter_that_rose(tmp_path: Path) -> None:
    root = tmp_path / "sys/devices/system/edac/mc"
    _edac_tree(root, ce=3)  # corrected errors before the agent started are history
    ctx, _ = context()
    collector = EdacCollector(ctx, root=root, interval_s=10)
    assert collector.poll() == []

    _edac_tree(root, ce=3, ue=1)
    records = _records(collector.poll())
    assert [(r.source, r.pattern, r.severity) for r in records] == [
        ("edac", "edac_sysfs_ue_rise", "critical")
    ]
    assert records[0].message == (
        f"{root}/mc0/dimm1/dimm_ue_count: 0 -> 1 (dimm_label: CPU_SrcID#0_MC#0_Chan#1_DIMM#0)"
    )
    verdict = classify_text(records[0].message)
    assert verdict.category.value == "system_memory"
    assert "DIMM CPU_SrcID#0_MC#0_Chan#1_DIMM#0" in verdict.reason

    # Counts are kept with the positions: a rise while the agent was down is still reported.
    _edac_tree(root, ce=9, ue=1)
    again = EdacCollector(_resumed(ctx, collector), root=root, interval_s=10)
    assert [(r.pattern, r.severity) for r in _records(again.poll())] == [
        ("edac_sysfs_ce_rise", "warning")
    ]
    _edac_tree(root)  # the driver was reloaded: counts start over, nothing to report
    assert again.poll() == []


def test_edac_without_dimms_reports_the_controller(tmp_path: Path) -> None:
    mc = tmp_path / "mc" / "mc0"
    mc.mkdir(parents=True)
    (mc / "ue_count").write_text("0\n")
    (mc / "ce_count").write_text("0\n")
    ctx, _ = context()
    collector = EdacCollector(ctx, root=mc.parent, interval_s=10)
    assert collector.poll() == []
    (mc / "ue_count").write_text("2\n")
    assert [r.message for r in _records(collector.poll())] == [f"{mc}/ue_count: 0 -> 2"]


# ---------------------------------------------------------------- InfiniBand


def _port(root: Path, dev: str = "mlx5_0", *, state: str = "4: ACTIVE",
          phys: str = "5: LinkUp", **counters: int) -> Path:  # fmt: skip
    port = root / dev / "ports" / "1"
    (port / "counters").mkdir(parents=True, exist_ok=True)
    (port / "state").write_text(f"{state}\n")
    (port / "phys_state").write_text(f"{phys}\n")
    (port / "rate").write_text("400 Gb/sec (4X NDR)\n")
    defaults = {"link_downed": 0, "symbol_error": 0, "link_error_recovery": 0,
                "port_rcv_errors": 0, "excessive_buffer_overrun_errors": 0}  # fmt: skip
    for name, value in {**defaults, **counters}.items():
        (port / "counters" / name).write_text(f"{value}\n")
    return port


def test_infiniband_link_down_flap_and_up_are_events(tmp_path: Path) -> None:
    root = tmp_path / "sys/class/infiniband"
    port = _port(root)
    clock = ManualClock()
    ctx, _ = context(clock)
    collector = InfinibandCollector(ctx, root=root, interval_s=10)
    assert collector.poll() == []

    _port(root, state="1: DOWN", phys="2: Polling", link_downed=1)
    clock.advance(10)
    down = _records(collector.poll())
    assert [(r.source, r.pattern, r.severity) for r in down] == [
        ("infiniband", "ib_sysfs_link_down", "error")
    ]
    assert down[0].message == (
        f"{port}: link down: state 4: ACTIVE -> 1: DOWN, phys_state 5: LinkUp -> 2: Polling, "
        "link_downed 0 -> 1"
    )
    verdict = classify_text(down[0].message)
    assert verdict.category.value == "nic" and "port mlx5_0/1" in verdict.reason

    _port(root, link_downed=1)
    clock.advance(10)
    assert [r.pattern for r in _records(collector.poll())] == ["ib_sysfs_link_up"]
    # Down and up again between two polls: only link_downed says so.
    _port(root, link_downed=2)
    clock.advance(10)
    flap = _records(collector.poll())
    assert [r.pattern for r in flap] == ["ib_sysfs_link_down"]
    assert "link flapped" in flap[0].message


def test_infiniband_error_rate_over_its_threshold_is_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "sys/class/infiniband"
    _port(root, symbol_error=100)
    clock = ManualClock()
    ctx, _ = context(clock)
    collector = InfinibandCollector(ctx, root=root, interval_s=10, window_s=60)
    assert collector.poll() == []
    # 5 symbol errors a minute: under the threshold of 10.
    for value in (101, 102, 103, 104, 105, 106):
        _port(root, symbol_error=value)
        clock.advance(10)
        assert collector.poll() == []
    # Then 19 within a minute.
    _port(root, symbol_error=120)
    clock.advance(10)
    climbing = _records(collector.poll())
    assert [(r.pattern, r.severity) for r in climbing] == [("ib_sysfs_error_rate", "warning")]
    assert climbing[0].message.endswith("101 -> 120 in 60 s, above 10 per minute")
    # Once a window per counter, however fast it climbs; then again while it still climbs.
    _port(root, symbol_error=300)
    clock.advance(10)
    assert collector.poll() == []
    clock.advance(50)
    _port(root, symbol_error=400)
    assert [r.pattern for r in _records(collector.poll())] == ["ib_sysfs_error_rate"]


# ---------------------------------------------------------------- devlink health

_HEALTHY = (
    '{"health":{"pci/0000:3b:00.0":[{"reporter":"fw","state":"healthy","error":0,"recover":0,'
    '"grace_period":0,"auto_recover":true,"auto_dump":true},{"reporter":"fw_fatal","state":'
    '"healthy","error":0,"recover":0,"grace_period":1200000,"auto_recover":true,'
    '"auto_dump":true}]}}'
)


def test_devlink_reporter_entering_error_is_shipped() -> None:
    failed = _HEALTHY.replace(
        '"fw_fatal","state":"healthy","error":0', '"fw_fatal","state":"error","error":1'
    )
    outputs = [_HEALTHY, failed]
    ctx, _ = context()
    collector = DevlinkHealthCollector(ctx, interval_s=10, run=lambda: outputs.pop(0))
    assert collector.poll() == []
    records = _records(collector.poll())
    assert [(r.source, r.pattern, r.severity) for r in records] == [
        ("devlink", "devlink_health_error", "error")
    ]
    assert records[0].message.startswith(
        "pci/0000:3b:00.0: reporter fw_fatal: state error error 1 recover 0 grace_period 1200000"
    )
    assert classify_text(records[0].message).category.value == "nic"


def test_devlink_parses_newer_iproute2_and_tolerates_no_devlink() -> None:
    newer = (
        '{"health":{"pci/0000:3b:00.1":[{"name":"tx","state":"healthy","error":2,"recover":2}]}}'
    )
    assert [(r.device, r.name, r.errors) for r in parse_health(newer)] == [
        ("pci/0000:3b:00.1", "tx", 2)
    ]

    def absent() -> str:
        raise NoDevlink("Failed to connect to devlink Netlink")

    ctx, _ = context()
    collector = DevlinkHealthCollector(ctx, interval_s=10, run=absent)
    assert collector.poll() == [] and collector.poll() == []


# ---------------------------------------------------------------- configuration


def test_every_hardware_collector_has_a_config_section() -> None:
    assert set(HARDWARE_COLLECTORS) <= set(CollectorsConfig.model_fields)


def test_infiniband_thresholds_name_known_counters() -> None:
    with pytest.raises(ValidationError, match="unknown counters"):
        InfinibandConfig.model_validate({"thresholds": {"symbol_errors": 5}})
    custom = InfinibandConfig.model_validate({"thresholds": {"symbol_error": 100}})
    assert json.loads(custom.model_dump_json())["thresholds"] == {"symbol_error": 100}


def test_a_record_naming_a_gpus_pci_address_carries_that_gpus_identity() -> None:
    # The BMC, rasdaemon's AER records and the like name a GPU by its PCI address, in the
    # kernel's spelling; the record carries NVML's index and bus id for it. An address NVML
    # never reported (the root port here) names no GPU.
    ctx, _ = context()
    ctx.state.gpu_by_pci["00000000:18:00.0"] = 0
    records = HardwareRecords(ctx, "rasdaemon")
    aer = records.record(
        ["pcieport 0000:16:02.0: AER: Uncorrected (Fatal) error received: 0000:18:00.0"],
        path="ras-mc-ctl",
    )
    assert (aer.gpu_index, aer.pci_bus_id) == (0, "00000000:18:00.0")
    nic = records.record(["mlx5_core 0000:0c:00.0: link down"], path="ras-mc-ctl")
    assert (nic.gpu_index, nic.pci_bus_id) == (None, None)
