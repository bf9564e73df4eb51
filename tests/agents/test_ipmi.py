"""The BMC's SEL over IPMI: `ipmitool sel` against OpenIPMI's BMC simulator (`ipmi_sim`) over
lanplus on loopback, events added through the simulator's console; and the SEL's clear and
wrap on scripted `ipmitool` output. What the collector ships reads, as triage reads it, as the
category the SEL entry names."""

from __future__ import annotations

import contextlib
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import ValidationError

from sentinel.triage.classify import classify_text
from sentinel.wire import LogRecord, Observation
from sentinel_agent.collectors.base import Context
from sentinel_agent.collectors.ipmi import (
    Bmc,
    IpmiSelCollector,
    IpmiSensorCollector,
    parse_elist,
    parse_info,
    parse_sdr,
    runner,
)
from sentinel_agent.config import IpmiConfig
from tests.agents.agent_helpers import (
    agent_process_config,
    context,
    eventually,
    service_observations,
    start_agent,
)
from tests.harness.ipmi import EMU, LAN_CONF, free_udp_port, sel_add
from tests.harness.service import LiveService

PASSWORD = "s3cret-bmc"

# FAN2 slows to 200 RPM (below its critical threshold), the BMC logging the crossings.
FAN2_SLOWS = "sensor_set_value 0x20 0 0x30 0x02 1"


# The events the tests add, as a BMC logs them (sensor type, number, event type, offset).
FAN_LOWER_NONCRITICAL = sel_add(0x04, 0x33, 0x01, 0x00)
PSU_FAILURE = sel_add(0x08, 0x50, 0x6F, 0x01)
PROCESSOR_IERR = sel_add(0x07, 0x05, 0x6F, 0x00)


@dataclass
class Simulator:
    process: subprocess.Popen[str]
    bmc: Bmc

    def command(self, line: str) -> None:
        """One command on the simulator's console (its standard input)."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def entries(self) -> int:
        return parse_info(runner(self.bmc)(["sel", "info"]))[0]

    def add(self, event: str) -> None:
        before = self.entries()
        self.command(event)
        _wait(lambda: self.entries() > before, "the simulator to add the SEL entry")


def _wait(done: object, what: str, timeout_s: float = 10.0) -> None:
    assert callable(done)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if done():
                return
        except (RuntimeError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Simulator]:
    missing = [tool for tool in ("ipmi_sim", "ipmitool") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (Debian: openipmi, ipmitool)")
    port = free_udp_port()
    (tmp_path / "lan.conf").write_text(LAN_CONF.format(port=port, password=PASSWORD))
    (tmp_path / "sim.emu").write_text(EMU.format(history=FAN_LOWER_NONCRITICAL))
    password_file = tmp_path / "bmc-password"
    password_file.write_text(PASSWORD)
    password_file.chmod(0o600)
    (tmp_path / "state").mkdir()
    with (tmp_path / "ipmi_sim.out").open("w") as out:
        process = subprocess.Popen(
            ["ipmi_sim", "-c", "lan.conf", "-f", "sim.emu", "-s", "state"],
            cwd=tmp_path,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    # Cipher suite 3 (HMAC-SHA1, AES): ipmi_sim does not answer ipmitool's question for the list.
    bmc = Bmc(
        host="127.0.0.1",
        port=port,
        username="sentinel",
        password_file=password_file,
        cipher_suite=3,
    )
    sim = Simulator(process, bmc)
    try:
        _wait(lambda: sim.entries() == 1, "ipmi_sim to answer over lanplus")
        yield sim
    finally:
        process.terminate()
        process.wait(10)


def _records(observations: Sequence[Observation]) -> list[LogRecord]:
    assert all(isinstance(o, LogRecord) for o in observations)
    return [o for o in observations if isinstance(o, LogRecord)]


def _collector(
    ctx: Context, bmc: Bmc, *, from_start: bool = False, run: ScriptedBmc | None = None
) -> IpmiSelCollector:
    return IpmiSelCollector(ctx, bmc=bmc, interval_s=10.0, from_start=from_start, run=run)


def test_a_psu_failure_added_to_the_bmcs_sel_is_shipped_once_as_ipmitool_prints_it(
    simulator: Simulator,
) -> None:
    ctx, _ = context()
    collector = _collector(ctx, simulator.bmc)
    assert collector.poll() == []  # the fan entry already there is history
    assert collector.poll() == []

    simulator.add(PSU_FAILURE)
    (record,) = _records(collector.poll())
    assert record.source == "ipmi"
    assert record.pattern == "psu_failure"
    assert record.message.endswith("| Power Supply #0x50 | Failure detected | Asserted")
    assert record.message.lstrip().startswith("2 |")
    assert classify_text(record.message).category == "power_supply"
    assert "-f" in (record.path or "") and PASSWORD not in (record.path or "")
    assert collector.poll() == []


def test_the_last_entry_shipped_survives_a_restart_and_a_cleared_sel(simulator: Simulator) -> None:
    ctx, _ = context()
    first = _collector(ctx, simulator.bmc)
    first.poll()
    simulator.add(PSU_FAILURE)
    assert len(first.poll()) == 1

    # The agent restarts with the position it stored; meanwhile a processor fails.
    simulator.add(PROCESSOR_IERR)
    restarted_ctx, _ = context()
    restarted_ctx = _with_positions(restarted_ctx, dict(first.positions()))
    restarted = _collector(restarted_ctx, simulator.bmc)
    (ierr,) = _records(restarted.poll())
    assert ierr.pattern == "sel_processor"
    assert "Processor #0x05 | IERR | Asserted" in ierr.message

    # An operator clears the SEL; what is logged after it is news.
    runner(simulator.bmc)(["sel", "clear"])
    _wait(lambda: simulator.entries() == 0, "the SEL to be cleared")
    simulator.add(PSU_FAILURE)
    (after_clear,) = _records(restarted.poll())
    assert after_clear.pattern == "psu_failure"


def test_from_start_ships_what_the_sel_already_holds(simulator: Simulator) -> None:
    ctx, _ = context()
    (fan,) = _records(_collector(ctx, simulator.bmc, from_start=True).poll())
    assert "Fan #0x33 | Lower Non-critical going low" in fan.message


def test_a_fan_past_its_critical_threshold_is_shipped_from_the_sdr_and_the_sel(
    simulator: Simulator,
) -> None:
    ctx, _ = context()
    sensors = IpmiSensorCollector(ctx, bmc=simulator.bmc, interval_s=60.0)
    sel = _collector(ctx, simulator.bmc)
    assert sensors.poll() == [] and sel.poll() == []  # FAN2 at 6400 RPM: ok

    simulator.add(FAN2_SLOWS)
    (state,) = _records(sensors.poll())
    assert state.source == "ipmi"
    assert state.pattern == "sdr_chassis_sensor_critical"
    assert state.message.startswith("FAN2 ") and "| 200 RPM" in state.message
    assert classify_text(state.message).category == "server_chassis"
    assert sensors.poll() == []  # still critical: said once

    crossings = _records(sel.poll())
    assert "Fan FAN2 | Lower Critical going low" in crossings[-1].message
    assert crossings[-1].pattern == "sel_fan_failure"


def _with_positions(ctx: Context, positions: dict[str, str | None]) -> Context:
    return Context(
        host_id=ctx.host_id,
        clock=ctx.clock,
        emit=ctx.emit,
        metrics=ctx.metrics,
        state=ctx.state,
        positions={k: v for k, v in positions.items() if v is not None},
    )


# ---------------------------------------------------------------- scripted ipmitool output

_INFO = """\
SEL Information
Version          : 1.5 (v1.5, v2 compliant)
Entries          : {entries}
Free Space       : 15984 bytes
Percent Used     : 0%
Last Add Time    : {added}
Last Del Time    : {deleted}
Overflow         : false
Supported Cmds   : 'Reserve' 'Get Alloc Info'
"""


class ScriptedBmc:
    """`ipmitool sel info` and `sel elist [last N]` over a SEL the test edits."""

    def __init__(self) -> None:
        self.sel: list[tuple[int, str]] = []
        self.added = "11/28/2023 07:38:56"
        self.deleted = "Not Available"
        self.calls: list[list[str]] = []

    def __call__(self, args: Sequence[str]) -> str:
        self.calls.append(list(args))
        if list(args) == ["sel", "info"]:
            return _INFO.format(entries=len(self.sel), added=self.added, deleted=self.deleted)
        entries = self.sel
        if len(args) == 4 and args[2] == "last":
            entries = entries[-int(args[3]) :]
        return "".join(f"{i:4x} | {line}\n" for i, line in entries)

    def log(self, record_id: int, line: str, at: str) -> None:
        self.sel.append((record_id, line))
        self.added = at


_PSU = "11/28/2023 | 07:38:56 | Power Supply PSU1 Status | Failure detected () | Asserted"
_FAN = "11/28/2023 | 07:40:12 | Fan FAN3 | Lower Critical going low | Asserted"
_CPU = "11/28/2023 | 07:41:00 | Processor CPU1 Status | IERR | Asserted"


def test_a_quiet_sel_costs_one_sel_info_per_poll_and_growth_reads_only_the_tail() -> None:
    bmc = ScriptedBmc()
    bmc.log(0x1A, _PSU, "11/28/2023 07:38:56")
    ctx, _ = context()
    collector = _collector(ctx, Bmc(), run=bmc)
    collector.poll()
    bmc.calls.clear()
    assert collector.poll() == []
    assert bmc.calls == [["sel", "info"]]

    bmc.log(0x1B, _FAN, "11/28/2023 07:40:12")
    bmc.log(0x1C, _CPU, "11/28/2023 07:41:00")
    bmc.calls.clear()
    shipped = _records(collector.poll())
    assert [r.pattern for r in shipped] == ["sel_fan_failure", "sel_processor"]
    assert bmc.calls == [["sel", "info"], ["sel", "elist", "last", "3"]]
    assert shipped[0].message == f"  1b | {_FAN}"


def test_ids_that_go_down_after_a_clear_are_news() -> None:
    bmc = ScriptedBmc()
    for i in range(1, 6):
        bmc.log(i, _FAN, f"t{i}")
    ctx, _ = context()
    collector = _collector(ctx, Bmc(), run=bmc)
    collector.poll()
    # Cleared, then two entries logged from id 1 again: fewer entries, ids lower.
    bmc.sel.clear()
    bmc.deleted = "11/28/2023 08:00:00"
    bmc.log(1, _PSU, "t6")
    bmc.log(2, _CPU, "t7")
    assert [r.pattern for r in _records(collector.poll())] == ["psu_failure", "sel_processor"]
    assert collector.poll() == []


def test_a_full_sel_that_overwrites_its_oldest_entry_ships_only_the_new_one() -> None:
    bmc = ScriptedBmc()
    for i in range(1, 4):
        bmc.log(i, _FAN, f"t{i}")
    ctx, _ = context()
    collector = _collector(ctx, Bmc(), run=bmc)
    collector.poll()
    bmc.sel.pop(0)
    bmc.log(4, _PSU, "t4")  # as many entries as before; the add time moved
    assert [r.pattern for r in _records(collector.poll())] == ["psu_failure"]


def test_a_sensor_is_shipped_when_it_enters_a_threshold_state_and_when_it_moves() -> None:
    readings = ["FAN2             | 30h | ok  | 29.1 | 6400 RPM"]
    ctx, _ = context()
    collector = IpmiSensorCollector(
        ctx, bmc=Bmc(), interval_s=60.0, run=lambda args: "\n".join(readings)
    )
    assert collector.poll() == []
    readings[0] = "FAN2             | 30h | lnc | 29.1 | 400 RPM"
    readings.append("PS2 Status       | 65h | ns  | 10.2 | No Reading")
    assert [r.message for r in _records(collector.poll())] == [readings[0]]
    readings[0] = "FAN2             | 30h | lnr | 29.1 | 0 RPM"
    (stopped,) = _records(collector.poll())
    assert stopped.pattern == "sdr_chassis_sensor_critical"
    readings[0] = "FAN2             | 30h | ok  | 29.1 | 6400 RPM"
    assert collector.poll() == []
    assert parse_sdr(readings[0]) == {("FAN2", "30h"): ("ok", readings[0])}


def test_parsers_read_ipmitool_as_it_prints() -> None:
    assert parse_info(_INFO.format(entries=3, added="a", deleted="b")) == (3, "a", "b")
    out = "SDRR successfully erased\n   1 |  Pre-Init  |0000003316| Fan #0x33 | x | Asserted\n"
    assert parse_elist(out) == [("1", out.splitlines()[1])]


def test_the_password_never_reaches_the_command_line(tmp_path: Path) -> None:
    bmc = Bmc(host="bmc-17", username="monitor", password_file=tmp_path / "pw")
    assert bmc.command("sel", "info") == [
        "ipmitool", "-I", "lanplus", "-H", "bmc-17", "-p", "623", "-U", "monitor",
        "-f", str(tmp_path / "pw"), "sel", "info",
    ]  # fmt: skip
    assert Bmc().command("sel", "info") == ["ipmitool", "-I", "open", "sel", "info"]


def test_a_bmc_over_lanplus_needs_a_user_and_a_password_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="username and password_file"):
        IpmiConfig(host="bmc-17")
    config = IpmiConfig(host="bmc-17", username="monitor", password_file=tmp_path / "pw")
    assert config.bmc().command("sel", "info")[:3] == ["ipmitool", "-I", "lanplus"]
    assert IpmiConfig().bmc() == Bmc()


# ---------------------------------------------------------------- through real processes


@pytest.mark.slow
def test_a_psu_failure_in_the_sel_reaches_an_incident_once_across_an_agent_crash(
    simulator: Simulator,
    live_service: LiveService,
    tmp_path: Path,
    agent_processes: list[subprocess.Popen[bytes]],
) -> None:
    """ipmi_sim's SEL -> ipmitool over lanplus -> the agent process -> the service."""
    host = "ipmi-e2e"
    bmc = simulator.bmc
    config = tmp_path / "agent.yaml"
    ipmi = {
        "enabled": True, "host": bmc.host, "port": bmc.port, "username": bmc.username,
        "password_file": str(bmc.password_file), "cipher_suite": bmc.cipher_suite,
        "sensors_s": 0,
    }  # fmt: skip
    data = agent_process_config(
        tmp_path, live_service, host, **{"intervals.hardware_s": 0.2, "collectors.ipmi": ipmi}
    )
    config.write_text(yaml.safe_dump(data))
    log = tmp_path / "agent.log"

    def shipped() -> list[str]:
        return [
            o["data"]["message"]
            for o in service_observations(live_service, host, "log")
            if o["data"]["source"] == "ipmi"
        ]

    agent = start_agent(config, log)
    agent_processes.append(agent)
    eventually(lambda: service_observations(live_service, host), 30, "the agent's report", log)
    # The SEL collector's first poll takes what the SEL holds as history: an entry added before
    # that poll finished (ipmitool over lanplus is slow on a busy machine) would be history too.
    eventually(lambda: _sel_baseline(tmp_path / "outbox.db"), 60, "the SEL's baseline", log)
    simulator.add(PSU_FAILURE)
    eventually(shipped, 60, "the PSU failure", log)
    incidents = eventually(
        lambda: _incidents(live_service), 30, "an incident", live_service.data_dir / "service.log"
    )
    assert (incidents[0]["category"], incidents[0]["culprit_host"]) == ("power_supply", host)

    # The agent dies; meanwhile the BMC logs a processor's IERR.
    agent.send_signal(signal.SIGKILL)
    agent.wait(10)
    simulator.add(PROCESSOR_IERR)
    agent_processes.append(start_agent(config, log))
    eventually(lambda: len(shipped()) >= 2, 60, "the IERR", log)
    time.sleep(1)  # a few more polls: nothing is shipped twice, the fan history never
    entries = shipped()
    assert len(entries) == 2, entries
    assert any("Power Supply #0x50 | Failure detected" in e for e in entries), entries
    assert any("Processor #0x05 | IERR | Asserted" in e for e in entries), entries
    assert PASSWORD not in log.read_text()


def _sel_baseline(outbox: Path) -> bool:
    """Whether the agent has stored where the SEL stood at its first poll."""
    if not outbox.exists():
        return False
    with contextlib.closing(sqlite3.connect(outbox, timeout=5)) as db:
        try:
            keys = [k for (k,) in db.execute("SELECT key FROM positions")]
        except sqlite3.OperationalError:  # the agent has not created its tables yet
            return False
    return any(k.startswith("ipmi:") for k in keys)


def _incidents(service: LiveService) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{service.url}/api/v1/incidents",
        headers={"Authorization": f"Bearer {service.viewer_token}"},
        timeout=10,
    )
    r.raise_for_status()
    return list(r.json())
