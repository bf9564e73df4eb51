"""End to end with a real Slurm: XID 79 on one of a job's 4 hosts → that host drained with the
reason, the job requeued and running again on the others, the host rebooted (the test cluster's
RebootProgram restarts its slurmd as from a new boot), back in service by itself, and marked
repaired once its agent reports again; every step recorded as done."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.service import LiveService
from tests.harness.slurm import SlurmCluster, SlurmUnavailable, start_slurm


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    if os.environ.get("SENTINEL_TEST_SKIP_SLURM") == "1":
        pytest.skip("SENTINEL_TEST_SKIP_SLURM=1: Slurm tests skipped")
    try:
        c = start_slurm(nodes=5)
    except SlurmUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield c
    c.stop()


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _obs(kind: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "id": str(uuid.uuid4()), "observed_at": _now(), **fields}


def test_xid79_drains_the_host_and_the_job_runs_again_elsewhere(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    job_id = cluster.submit_job(nodes=4)
    first = cluster.wait_running(job_id)
    service = LiveService(
        database_url=f"sqlite:///{tmp_path / 'sentinel.db'}",
        data_dir=tmp_path,
        extra_env={
            "SENTINEL_SCHEDULER__KIND": "slurm",
            "SENTINEL_SCHEDULER__SLURM__CONF": str(cluster.conf),
        },
    )
    service.start()
    try:
        seq: dict[str, int] = {}

        def post(host: str, observations: list[dict[str, Any]]) -> None:
            seq[host] = seq.get(host, 0) + 1
            r = httpx.post(
                f"{service.url}/api/v1/reports",
                headers=service.headers("agent"),
                json={
                    "version": 1,
                    "host_id": host,
                    "agent_id": f"{host}-agent",
                    "seq": seq[host],
                    "sent_at": _now(),
                    "observations": observations,
                },
                timeout=10,
            )
            assert r.status_code == 202, r.text

        # The training ranks report through their hosts' agents: the job's rank → host map.
        for n, host in enumerate(first):
            post(
                host,
                [
                    _obs(
                        "heartbeat",
                        job_id=job_id,
                        rank=n * 8 + g,
                        local_rank=g,
                        gpu_index=g,
                        step=1200,
                        checkpoint_step=1000,
                        world_size=32,
                        last_beat_at=_now(),
                    )
                    for g in range(8)
                ],
            )
        bad = first[1]
        post(
            bad,
            [
                _obs(
                    "xid",
                    xid=79,
                    gpu_index=3,
                    pci_bus_id="00000000:5D:00.0",
                    source="kernel_log",
                    message="NVRM: Xid (PCI:0000:5d:00): 79, pid=2711, name=python, GPU has "
                    "fallen off the bus.",
                )
            ],
        )

        deadline = time.monotonic() + 30
        decision: dict[str, Any] = {}
        while time.monotonic() < deadline:
            r = httpx.get(f"{service.url}/api/v1/decisions", headers=service.headers(), timeout=5)
            if r.json() and r.json()[0]["status"] in ("done", "failed"):
                decision = r.json()[0]
                break
            time.sleep(0.2)
        assert decision, "no decision carried out within 30 s"
        assert decision["status"] == "done", decision
        assert decision["action"] == "exclude_and_restart" and decision["exclude_hosts"] == [bad]
        steps = decision["outcome"]["steps"]
        assert [(s["op"], s["ok"]) for s in steps] == [
            ("drain", True),
            ("requeue", True),
            ("reboot", True),
        ]
        assert decision["checkpoint_step"] == 1000
        reboot = steps[2]["commands"][-1]
        assert reboot.startswith("scontrol reboot ASAP nextstate=RESUME 'reason=sentinel: ")
        assert reboot.endswith(f" {bad}") and "faulty_gpu (RESTART_BM)" in reboot

        again = cluster.wait_running(job_id, avoid=(bad,), restarts=1, timeout=30)
        assert bad not in again and len(again) == 4

        # Rebooted once the job had left, and back in service by itself (nextstate=RESUME).
        def back() -> bool:
            node = cluster.sinfo()[bad]
            return cluster.rebooted(bad) and node["state"] == "idle" and not node["state_flags"]

        deadline = time.monotonic() + 30
        while not back() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert back(), cluster.sinfo()[bad]
        excluded = httpx.get(
            f"{service.url}/api/v1/hosts/excluded", headers=service.headers(), timeout=5
        ).json()
        assert [(h["id"], h["drain_state"]) for h in excluded] == [(bad, "repairing")]

        # Its agent reports again, with no hard fault: repaired, by no human.
        post(bad, [_obs("agent_status", version="test", collectors_ok=["nvml"])])
        deadline = time.monotonic() + 15
        while excluded and time.monotonic() < deadline:
            time.sleep(0.2)
            excluded = httpx.get(
                f"{service.url}/api/v1/hosts/excluded", headers=service.headers(), timeout=5
            ).json()
        assert excluded == []

        r = httpx.get(f"{service.url}/api/v1/incidents", headers=service.headers(), timeout=5)
        [incident] = r.json()
        assert (incident["category"], incident["culprit_host"], incident["state"]) == (
            "faulty_gpu",
            bad,
            "mitigating",
        )
    finally:
        service.stop()


def test_a_node_nhc_drains_in_slurm_is_an_incident_on_that_host(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    """The scheduler's view: NHC drains node5 in the real Slurm; the service, polling sinfo,
    opens a nic incident on node5 with NHC's words as its evidence."""
    service = LiveService(
        database_url=f"sqlite:///{tmp_path / 'sentinel.db'}",
        data_dir=tmp_path,
        extra_env={
            "SENTINEL_SCHEDULER__KIND": "slurm",
            "SENTINEL_SCHEDULER__SLURM__CONF": str(cluster.conf),
            "SENTINEL_SCHEDULER__POLL_NODES_S": "0.5",
        },
    )
    service.start()
    try:
        r = httpx.post(
            f"{service.url}/api/v1/reports",
            headers=service.headers("agent"),
            json={
                "version": 1,
                "host_id": "node5",
                "agent_id": "node5-agent",
                "seq": 1,
                "sent_at": _now(),
                "observations": [_obs("agent_status", version="test")],
            },
            timeout=10,
        )
        assert r.status_code == 202, r.text
        reason = "NHC: check_hw_ib:  No IB port mlx5_0:1 is ACTIVE (LinkUp 400 Gb/sec)."
        cluster.run("scontrol", "update", "NodeName=node5", "State=DRAIN", f"Reason={reason}")

        deadline = time.monotonic() + 20
        incidents: list[dict[str, Any]] = []
        while not incidents and time.monotonic() < deadline:
            time.sleep(0.2)
            r = httpx.get(f"{service.url}/api/v1/incidents", headers=service.headers(), timeout=5)
            incidents = r.json()
        [incident] = incidents
        assert (incident["category"], incident["culprit_host"]) == ("nic", "node5")
        r = httpx.get(
            f"{service.url}/api/v1/incidents/{incident['id']}",
            headers=service.headers(),
            timeout=5,
        )
        assert reason in str(r.json())
    finally:
        service.stop()
        cluster.reset()
