"""Live triage through real processes: kernel-log lines that agents tail become one incident
per fault, each hard fault accounted for, the triage loop's lag measured (issue 12).

The path users run: a line in a host's kernel log -> the agent process tailing it -> the wire
-> the service process (ingest, the leader's triage loop, the incident, the decision) -> the
REST API and /metrics that operators read.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_helpers import (
    agent_process_config,
    api_get,
    eventually,
    service_observations,
    start_agent,
)

from tests.harness.service import LiveService

# (host, XID, GPU bus in dmesg form, the category triage must name)
FAULTS = [
    ("e2e-a", 79, "0000:3b:00", "faulty_gpu"),
    ("e2e-b", 48, "0000:5d:00", "gpu_hbm_memory"),
]
LINE = "[ 1843.30{n}] NVRM: Xid (PCI:{bus}): {xid}, pid=2024{n}, name=python, {what}\n"
WHAT = {79: "GPU has fallen off the bus.", 48: "An uncorrectable double bit error (DBE)"}


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _reporting(service: LiveService, host: str) -> Callable[[], list[dict[str, Any]]]:
    return lambda: service_observations(service, host)


@pytest.mark.slow
def test_kernel_log_faults_become_one_accounted_incident_each(
    live_service: LiveService, tmp_path: Path, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    logs: dict[str, Path] = {}
    for host, *_ in FAULTS:
        home = tmp_path / host
        home.mkdir()
        kern = logs[host] = home / "kern.log"
        kern.write_text("")
        config = home / "agent.yaml"
        data = agent_process_config(
            home,
            live_service,
            host,
            **{"collectors.kernel_log": {"enabled": True, "path": str(kern)}},
        )
        config.write_text(yaml.safe_dump(data))
        agent_processes.append(start_agent(config, home / "agent.log"))
    for host, *_ in FAULTS:
        eventually(_reporting(live_service, host), 30, f"{host}'s agent")
    time.sleep(0.5)  # the tailers have opened the files: lines from now on are new
    for n, (host, xid, bus, _) in enumerate(FAULTS):
        with logs[host].open("a") as f:
            # The driver repeats itself: one fault, printed twice, is still one incident.
            for k in (n, n + 5):
                f.write(LINE.format(n=k, bus=bus, xid=xid, what=WHAT[xid]))

    def incidents() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = api_get(live_service, "/api/v1/incidents")
        return found if len(found) >= len(FAULTS) else []

    eventually(incidents, 30, "an incident per fault", live_service.data_dir / "service.log")
    time.sleep(2.0)  # a second incident for the same fault would show up now
    found = {i["culprit_host"]: i for i in api_get(live_service, "/api/v1/incidents")}
    assert sorted(found) == sorted(h for h, *_ in FAULTS), found
    decisions = eventually(
        lambda: (d := api_get(live_service, "/api/v1/decisions")) and len(d) >= len(FAULTS) and d,
        30,
        "a decision per incident",
    )
    assert sorted(d["incident_id"] for d in decisions) == sorted(i["id"] for i in found.values())
    for host, xid, _bus, category in FAULTS:
        incident = found[host]
        assert incident["category"] == category, incident
        stored = {o["id"] for o in service_observations(live_service, host, "xid")}
        assert len(stored) == 2, "both lines shipped"
        detail = api_get(live_service, f"/api/v1/incidents/{incident['id']}")
        evidence = {
            e["event_id"] for e in detail["verdict"]["evidence"] + detail["verdict"]["symptoms"]
        }
        assert evidence & stored, (host, xid, detail["verdict"])
    # Every hard fault is linked to its incident: none waits for an answer, however recent.
    unaccounted = eventually(
        lambda: api_get(live_service, "/api/v1/events/unaccounted", older_than_s=0) == [],
        15,
        "every hard fault accounted for",
    )
    assert unaccounted
    metrics = api_get(live_service, "/metrics")
    lag = _metric(metrics, "sentinel_triage_lag_seconds")
    assert lag is not None and lag < 5.0, lag
    assert _metric(metrics, "sentinel_unaccounted_hard_faults") == 0.0
