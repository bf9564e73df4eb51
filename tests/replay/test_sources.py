"""A recording's other sources (mcelog, the BMC's SEL, InfiniBand sysfs, DCGM's health watches,
Slurm's node states) reach the service as the agent's collectors (or the leader's scheduler
view) read them: each record with the source, pattern and severity the agent gives it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from sentinel.replay.agent import SEQ_BASE, through_the_agents
from sentinel.replay.recording import Line, Printed
from sentinel.replay.runner import RecordedNodes
from sentinel.replay.sources import Sel, write_sysfs
from sentinel.replay.synth import EPOCH, Fleet
from sentinel_agent.clock import ManualClock
from tests.replay.fleet import CaseFleet
from tests.replay.shapes import (
    DCGM_HEALTH_DBE,
    MCELOG_UC_DIMM,
    ib_port_down,
    redfish_entry,
    scontrol_nodes,
    sel_entry,
)


def shipped(f: Fleet, duration: float = 40.0) -> list[tuple[float, dict[str, Any]]]:
    """(seconds into the recording, observation) for what the agents shipped."""
    lines = through_the_agents([Line.model_validate(x) for x in f.lines(duration)])
    return [
        ((line.at - f.start).total_seconds(), obs)
        for line in lines
        if line.batch is not None and line.batch["seq"] > SEQ_BASE
        for obs in line.batch["observations"]
    ]


def test_a_sel_entry_is_shipped_once_as_ipmitool_prints_it() -> None:
    f = CaseFleet(hosts=1, seed=1)
    psu = sel_entry(f, 19.0, 0x1A, "Power Supply PS2 Status", "Failure detected ()")
    f.sel(20.0, 0, psu)
    fan = sel_entry(f, 29.0, 0x1B, "Fan FAN3", "Lower Critical going low")
    f.sel(30.0, 0, fan)
    found = [(at, o["source"], o["pattern"], o["message"]) for at, o in shipped(f)]
    assert found == [(20.0, "ipmi", "psu_failure", psu), (30.0, "ipmi", found[1][2], fan)]
    assert found[1][2] is not None, "the fan entry is one the knowledge reads"


def test_an_mcelog_record_is_one_record_naming_its_dimm() -> None:
    f = CaseFleet(hosts=1, seed=2)
    f.mcelog(20.0, 0, MCELOG_UC_DIMM.format(time=0, date="Mon Mar  2 04:00:20 2026"))
    ((at, record),) = shipped(f)
    assert at > 20.0, "the record is complete once mcelog's log is quiet"
    assert (record["source"], record["family"]) == ("mcelog", "mce")
    assert record["message"].endswith("[C1 CPU1_DIMM_C1]")


def test_an_infiniband_port_going_down_in_sysfs_is_a_link_down_record() -> None:
    f = CaseFleet(hosts=1, seed=3)
    f.sysfs(20.0, 0, *ib_port_down(5))
    ((at, record),) = shipped(f)
    assert (at, record["source"], record["pattern"]) == (20.0, "infiniband", "ib_sysfs_link_down")
    assert "mlx5_5/ports/1: link down" in record["message"]


def test_a_dcgm_health_failure_is_shipped_once_with_dcgms_severity() -> None:
    f = CaseFleet(hosts=1, seed=4)
    f.dcgm_health(20.0, 0, DCGM_HEALTH_DBE.format(gpu=4))
    ((at, record),) = shipped(f)
    assert (at, record["source"], record["family"]) == (20.0, "dcgm", "dcgm")
    assert "GPU 4" in record["message"] and record["severity"] == "critical"


def test_the_sel_answers_as_ipmitool_and_refuses_what_it_is_not() -> None:
    sel = Sel(ManualClock(EPOCH))
    assert "Entries          : 0" in sel.run(["sel", "info"])
    sel.add("   1 | 03/02/2026 | 04:00:00 | Fan FAN1 | Lower Critical going low | Asserted\n")
    sel.add("   2 | 03/02/2026 | 04:00:01 | Fan FAN2 | Lower Critical going low | Asserted")
    assert "Entries          : 2" in sel.run(["sel", "info"])
    assert sel.run(["sel", "elist", "last", "1"]).startswith("   2 |")
    assert sel.run(["sel", "elist"]).count("\n") == 2
    with pytest.raises(RuntimeError, match="not a SEL command"):
        sel.run(["sel", "clear"])


@pytest.mark.parametrize("write", ["../../etc/passwd x", "mlx5_9/ports/1/state 1: DOWN"])
def test_sysfs_writes_stay_in_the_hosts_tree(tmp_path: Any, write: str) -> None:
    root = tmp_path / "sys" / "class" / "infiniband"
    (root / "mlx5_0" / "ports" / "1").mkdir(parents=True)
    (root / "mlx5_0" / "ports" / "1" / "state").write_text("4: ACTIVE\n")
    with pytest.raises(ValueError, match="not a sysfs file"):
        write_sysfs(root, write)


@pytest.mark.parametrize("log", ["mcelog", "ipmi_sel", "redfish", "infiniband", "dcgm_health"])
def test_only_a_training_log_has_a_file_name(log: str) -> None:
    with pytest.raises(ValidationError):
        Printed.model_validate({"host": "h", "log": log, "file": "x.log", "text": "x"})
    assert Printed.model_validate({"host": "h", "log": log, "text": "x"}).file is None


async def test_the_scheduler_view_reads_the_latest_node_states_as_slurm_prints_them() -> None:
    f = CaseFleet(hosts=2, seed=5)
    nodes = RecordedNodes()
    assert not (await nodes.nodes()).ok, "nothing recorded yet: nothing to read"
    reason = "NHC: check_hw_ib:  No IB port mlx5_3:1 is ACTIVE (LinkUp 400 Gb/sec)."
    for t, drained in ((0.0, {}), (80.0, {1: (reason, 79.0)})):
        nodes.read([Line(at=f.at(t), nodes=scontrol_nodes(f, drained))])
    listing = await nodes.nodes()
    assert listing.ok
    by_name = {n.name: n for n in listing.nodes}
    assert by_name["node-0000"].state == "allocated"
    drained_node = by_name["node-0001"]
    assert (drained_node.state, drained_node.reason, drained_node.reason_by) == (
        "draining",
        reason,
        "root",
    )
    assert drained_node.reason_at == int(f.at(79.0).timestamp())
    assert json.loads(scontrol_nodes(f, {}))["nodes"][0]["state"] == ["ALLOCATED"]


def test_a_redfish_event_log_entry_is_shipped_once_dated_when_the_bmc_logged_it() -> None:
    f = CaseFleet(hosts=1, seed=6)
    entry = redfish_entry(f, 18.0, 0, "Power supply PSU2 failed.", "OpenBMC.0.1.PowerSupplyFailed")
    f.redfish(30.0, 0, entry)
    ((at, record),) = shipped(f)
    assert (at, record["source"], record["pattern"]) == (30.0, "redfish", "psu_failure")
    assert datetime.fromisoformat(record["observed_at"]) == f.at(18.0)
    assert json.loads(record["message"])["Message"] == "Power supply PSU2 failed."
