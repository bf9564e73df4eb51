"""An exclusion carried out in the job on a real Slurm (issue 17): a job allocated three nodes
(``sbatch --nodes=3``) runs its ranks on two; the third's agent reports it healthy. XID 79 on one
of the two: with in-place restarts on, that node is drained in Slurm (scontrol), the launchers
are told to restart without it and with the standby (the advice), and the job is not requeued:
it runs on, on the same allocation. Acknowledged by a launcher: done."""

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
        c = start_slurm(nodes=4)
    except SlurmUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield c
    c.stop()


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _obs(kind: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "id": str(uuid.uuid4()), "observed_at": _now(), **fields}


def test_an_xid79_goes_onto_the_standby_node_of_the_allocation(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    job_id = cluster.submit_job(nodes=3)
    allocation = cluster.wait_running(job_id)
    *ranked, standby = allocation
    service = LiveService(
        database_url=f"sqlite:///{tmp_path / 'sentinel.db'}",
        data_dir=tmp_path,
        extra_env={
            "SENTINEL_SCHEDULER__KIND": "slurm",
            "SENTINEL_SCHEDULER__SLURM__CONF": str(cluster.conf),
            "SENTINEL_REMEDIATION__IN_PLACE": "true",
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

        # The ranks beat on two of the three nodes; the standby's agent reports it healthy.
        for n, host in enumerate(ranked):
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
                        world_size=16,
                        last_beat_at=_now(),
                    )
                    for g in range(8)
                ],
            )
        post(standby, [_obs("gpu_sample", gpu_index=0, temperature_c=40.0)])
        bad = ranked[0]
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
            if r.json() and r.json()[0]["status"] in ("awaiting_ack", "done", "failed"):
                decision = r.json()[0]
                break
            time.sleep(0.2)
        assert decision, "no decision carried out within 30 s"
        assert (decision["action"], decision["status"]) == ("exclude_and_restart", "awaiting_ack")
        assert decision["exclude_hosts"] == [bad] and decision["standby_host"] == standby
        steps = decision["outcome"]["steps"]
        assert [(s["op"], s["ok"]) for s in steps] == [("drain", True), ("in_place", True)]
        assert steps[0]["commands"][-1].startswith("scontrol update")
        # Drained in Slurm (no job lands on it again), the job not requeued: same allocation.
        assert "DRAIN" in cluster.sinfo()[bad]["state_flags"]
        job = cluster.squeue()[job_id]
        assert job["job_state"] == "RUNNING" and job["restart_cnt"] == 0
        assert cluster.wait_running(job_id) == allocation
        advice = httpx.get(
            f"{service.url}/api/v1/jobs/{job_id}/advice", headers=service.headers(), timeout=5
        ).json()
        assert (advice["restart_exclude_hosts"], advice["restart_standby_host"]) == (
            [bad],
            standby,
        )
        # A launcher restarted the ranks without the culprit and with the standby.
        r = httpx.post(
            f"{service.url}/api/v1/decisions/{decision['id']}/ack",
            headers=service.headers("agent"),
            json={"outcome": "done", "detail": f"restarted without {bad}, with {standby}"},
            timeout=5,
        )
        assert r.status_code == 200 and r.json()["status"] == "done", r.text
        assert cluster.squeue()[job_id]["restart_cnt"] == 0
    finally:
        service.stop()
        cluster.run("scancel", job_id, check=False)
