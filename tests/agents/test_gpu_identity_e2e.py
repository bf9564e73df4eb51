"""One GPU identity through real processes (issue 16 item 8): the agent process reads its GPUs'
index, bus id, UUID and board serial from NVML (the scripted fake, scenario xid79: GPU 3 falls
off the bus), the kernel log names the GPU in the kernel's spelling (PCI:0000:5d:00), and the
service's incident, its REST API and its dashboard name that GPU by all four: the serial is
what its RMA asks for, and the GPU is lost by then, so NVML could not be asked any more.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from agent_helpers import SCENARIOS, agent_process_config, api_get, eventually, start_agent

from sentinel.web.routes import TOKEN_COOKIE
from tests.harness.service import LiveService

HOST = "e2e-serial"
SERIAL = "1654922010104"  # GPU 3's, in agents/sentinel_agent/scenarios/xid79.yaml
BUS = "00000000:5D:00.0"
LINE = (
    "[ 1843.301] NVRM: Xid (PCI:0000:5d:00): 79, pid=20241, name=python, "
    "GPU has fallen off the bus.\n"
)


@pytest.mark.slow
def test_the_incident_names_the_lost_gpu_by_its_serial(
    live_service: LiveService, tmp_path: Path, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    kern = tmp_path / "kern.log"
    kern.write_text("")
    config = tmp_path / "agent.yaml"
    data = agent_process_config(
        tmp_path,
        live_service,
        HOST,
        **{
            "collectors.nvml": {"provider": "fake", "scenario": str(SCENARIOS / "xid79.yaml")},
            "collectors.kernel_log": {"enabled": True, "path": str(kern)},
        },
    )
    config.write_text(yaml.safe_dump(data))
    agent_processes.append(start_agent(config, tmp_path / "agent.log"))
    time.sleep(0.5)  # the tailer has opened the file: lines from now on are new
    with kern.open("a") as f:
        f.write(LINE)

    def incident() -> dict[str, Any] | None:
        found = [i for i in api_get(live_service, "/api/v1/incidents") if i["culprit_host"] == HOST]
        return found[0] if found and found[0]["culprit_gpu"] else None

    found = eventually(incident, 30, "the GPU's incident", live_service.data_dir / "service.log")
    assert found["category"] == "faulty_gpu" and found["culprit_gpu"] == BUS, found
    detail = api_get(live_service, f"/api/v1/incidents/{found['id']}")
    assert detail["culprit_gpu_identity"]["index"] == 3
    assert detail["culprit_gpu_identity"]["pci_bus_id"] == BUS
    assert detail["culprit_gpu_identity"]["serial"] == SERIAL
    assert detail["culprit_gpu_identity"]["uuid"].startswith("GPU-")

    host = api_get(live_service, f"/api/v1/hosts/{HOST}")
    gpu = next(g for g in host["gpu_list"] if g["gpu_index"] == 3)
    assert gpu["lost"] and (gpu["pci_bus_id"], gpu["serial"]) == (BUS, SERIAL)
    assert gpu["uuid"] == detail["culprit_gpu_identity"]["uuid"]
    assert len({g["serial"] for g in host["gpu_list"]}) == 8

    cookies = {TOKEN_COOKIE: live_service.viewer_token}
    page = httpx.get(f"{live_service.url}/incidents/{found['id']}", cookies=cookies, timeout=10)
    assert page.status_code == 200
    assert f"serial (RMA) {SERIAL}" in page.text and BUS in page.text
    host_page = httpx.get(f"{live_service.url}/hosts/{HOST}", cookies=cookies, timeout=10)
    assert SERIAL in host_page.text and "serial (for RMA)" in host_page.text
