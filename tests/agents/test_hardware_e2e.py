"""Machine checks and memory errors through real processes: a row rasdaemon records and an EDAC
counter that rises on a host become what its agent ships, once each across an agent crash, and
the service's incident names the DIMM.

The path: rasdaemon's database and the EDAC sysfs tree (laid out as the real ones) -> the agent
process -> the wire -> the service process (ingest, triage) -> the REST API.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from agent_helpers import agent_process_config, eventually, service_observations, start_agent

from tests.harness.service import LiveService

HOST = "hw-e2e"
DIMM = "CPU_SrcID#0_MC#1_Chan#0_DIMM#0"
MC_EVENT = (
    "CREATE TABLE IF NOT EXISTS mc_event (id INTEGER PRIMARY KEY, timestamp TEXT, "
    "err_count INTEGER, err_type TEXT, err_msg TEXT, label TEXT, mc INTEGER, top_layer INTEGER, "
    "middle_layer INTEGER, lower_layer INTEGER, address INTEGER, grain INTEGER, "
    "syndrome INTEGER, driver_detail TEXT)"
)


def _row(db: Path, err_type: str, label: str) -> None:
    with sqlite3.connect(db) as c:
        c.execute(
            "INSERT INTO mc_event (timestamp, err_count, err_type, err_msg, label, mc, top_layer, "
            "middle_layer, lower_layer, address, grain, syndrome, driver_detail) VALUES "
            "('2026-01-01 00:00:05 +0000', 1, ?, 'memory read error', ?, 0, 1, 0, -1, "
            "8589934592, 6, 0, ' area:DRAM')",
            (err_type, label),
        )


def _dimm(root: Path, ce: int) -> None:
    dimm = root / "mc0" / "dimm0"
    dimm.mkdir(parents=True, exist_ok=True)
    (dimm / "dimm_label").write_text("DIMM_A1\n")
    (dimm / "dimm_ce_count").write_text(f"{ce}\n")
    (dimm / "dimm_ue_count").write_text("0\n")


def _shipped(service: LiveService, source: str) -> list[str]:
    return [
        o["data"]["message"]
        for o in service_observations(service, HOST, "log")
        if o["data"]["source"] == source
    ]


def _incidents(service: LiveService) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{service.url}/api/v1/incidents",
        headers={"Authorization": f"Bearer {service.viewer_token}"},
        timeout=10,
    )
    r.raise_for_status()
    return list(r.json())


@pytest.mark.slow
def test_rasdaemon_and_edac_reach_an_incident_once_each_across_a_crash(
    live_service: LiveService, tmp_path: Path, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    ras, edac = tmp_path / "ras-mc_event.db", tmp_path / "edac" / "mc"
    with sqlite3.connect(ras) as c:
        c.execute(MC_EVENT)
    _row(ras, "Corrected", "DIMM_B1")  # recorded before the agent started: history
    _dimm(edac, ce=3)
    config = tmp_path / "agent.yaml"
    data = agent_process_config(
        tmp_path,
        live_service,
        HOST,
        **{
            "intervals.hardware_s": 0.2,
            "collectors.rasdaemon": {"enabled": True, "path": str(ras)},
            "collectors.edac": {"enabled": True, "root": str(edac)},
        },
    )
    config.write_text(yaml.safe_dump(data))
    log = tmp_path / "agent.log"
    agent = start_agent(config, log)
    agent_processes.append(agent)
    eventually(lambda: service_observations(live_service, HOST), 30, "the agent's report", log)

    _row(ras, "Uncorrected", DIMM)
    eventually(lambda: _shipped(live_service, "rasdaemon"), 30, "the uncorrected error", log)
    incident = eventually(
        lambda: _incidents(live_service), 30, "an incident", live_service.data_dir / "service.log"
    )[0]
    assert (incident["category"], incident["culprit_host"]) == ("system_memory", HOST)
    assert f"DIMM {DIMM}" in incident["reason"], incident

    # The agent dies; meanwhile rasdaemon records another row and the DIMM counts more CEs.
    agent.send_signal(signal.SIGKILL)
    agent.wait(10)
    _row(ras, "Corrected", DIMM)
    _dimm(edac, ce=5)
    agent_processes.append(start_agent(config, log))
    eventually(lambda: len(_shipped(live_service, "rasdaemon")) >= 2, 30, "the next row", log)
    eventually(lambda: _shipped(live_service, "edac"), 30, "the CE rise", log)
    rows = _shipped(live_service, "rasdaemon")
    assert sorted(r.split(" ")[0] for r in rows) == ["2", "3"], rows  # never row 1, each once
    assert _shipped(live_service, "edac") == [
        f"{edac}/mc0/dimm0/dimm_ce_count: 3 -> 5 (dimm_label: DIMM_A1)"
    ]
