"""Proactive swap end to end on the real Slurm the tests start, with TWO service replicas on one
PostgreSQL: node5 is held as a hot spare in the reservation Sentinel creates; a 4-node job runs
on node1-4; a row remap pending on one of its hosts opens a degraded finding (no incident, the
job keeps running) and one swap decision; the job is told to checkpoint now; once every rank
reports a newer checkpoint, the host is drained, the spare released from the reservation and
the job requeued without the host: it runs again on 4 nodes, the spare among them, requeued
exactly once."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import _fresh_pg

from tests.harness.postgres import PostgresCluster
from tests.harness.service import LiveService
from tests.harness.slurm import SlurmCluster, SlurmUnavailable, start_slurm

RESERVATION = "sentinel-spares"


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


def _until(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def _reserved(cluster: SlurmCluster) -> str | None:
    """The nodes Slurm's reservation holds, or None when there is none."""
    proc = cluster.run("scontrol", "show", "reservation", RESERVATION, check=False)
    if proc.returncode != 0 or "Nodes=" not in proc.stdout:
        return None
    return proc.stdout.split("Nodes=", 1)[1].split()[0]


class _Replicas:
    """Two service replicas on one PostgreSQL; agents' posts spread over them, as behind a
    load balancer."""

    def __init__(self, url: str, tmp_path: Path, env: dict[str, str]) -> None:
        first = LiveService(database_url=url, data_dir=tmp_path / "a", extra_env=env)
        second = LiveService(
            database_url=url,
            data_dir=tmp_path / "b",
            extra_env=env,
            agent_token=first.agent_token,
            operator_token=first.operator_token,
            viewer_token=first.viewer_token,
        )
        self.services = [first, second]
        self._seq: dict[str, int] = {}

    def start(self) -> None:
        for service in self.services:
            service.start()

    def stop(self) -> None:
        for service in self.services:
            service.stop()

    def post(self, host: str, observations: list[dict[str, Any]], n: int = 0) -> None:
        service = self.services[(self._seq.get(host, 0) + n) % 2]
        self._seq[host] = self._seq.get(host, 0) + 1
        r = httpx.post(
            f"{service.url}/api/v1/reports",
            headers=service.headers("agent"),
            json={
                "version": 1,
                "host_id": host,
                "agent_id": f"{host}-agent",
                "seq": self._seq[host],
                "sent_at": _now(),
                "observations": observations,
            },
            timeout=10,
        )
        assert r.status_code == 202, r.text

    def get(self, path: str, replica: int = 0) -> Any:
        service = self.services[replica]
        r = httpx.get(f"{service.url}{path}", headers=service.headers(), timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def beats(self, nodes: list[str], job_id: str, step: int, checkpoint: int, world: int) -> None:
        for n, host in enumerate(nodes):
            self.post(
                host,
                [
                    _obs(
                        "heartbeat",
                        job_id=job_id,
                        rank=n * 8 + g,
                        local_rank=g,
                        gpu_index=g,
                        step=step,
                        checkpoint_step=checkpoint,
                        world_size=world,
                        last_beat_at=_now(),
                    )
                    for g in range(8)
                ],
            )


def _with_a_spare(cluster: SlurmCluster, **extra: str) -> dict[str, str]:
    """The replicas' settings: the real Slurm, node5 the pool's one spare, a short lease."""
    return {
        "SENTINEL_SCHEDULER__KIND": "slurm",
        "SENTINEL_SCHEDULER__SLURM__CONF": str(cluster.conf),
        "SENTINEL_REMEDIATION__SWAP__SPARES": json.dumps(["node5"]),
        "SENTINEL_REMEDIATION__SWAP__POOL_SIZE": "1",
        "SENTINEL_LEADER_TTL_S": "3",
        **extra,
    }


_REMAP_PENDING = {
    "gpu_index": 3,
    "pci_bus_id": "00000000:5D:00.0",
    "counter": "remap_pending",
    "previous": 0,
    "current": 1,
}


def test_a_degraded_host_is_swapped_onto_the_reserved_spare_once_with_two_replicas(
    cluster: SlurmCluster, pg_cluster: PostgresCluster, pg_template: str, tmp_path: Path
) -> None:
    url = _fresh_pg(pg_cluster, pg_template)
    replicas = _Replicas(url, tmp_path, _with_a_spare(cluster))
    replicas.start()
    post, get = replicas.post, replicas.get

    def beats(nodes: list[str], job_id: str, step: int, checkpoint: int) -> None:
        replicas.beats(nodes, job_id, step, checkpoint, world=32)

    try:
        # The spare's agent reports: healthy, so Sentinel holds it in a reservation.
        post("node5", [_obs("agent_status", version="test", collectors_ok=["nvml"])])
        assert _until("node5 reserved", lambda: _reserved(cluster)) == "node5"
        assert get("/api/v1/spares", 1)["ready"] == ["node5"]

        job_id = cluster.submit_job(nodes=4)
        nodes = cluster.wait_running(job_id)
        assert sorted(nodes) == ["node1", "node2", "node3", "node4"]
        beats(nodes, job_id, step=1200, checkpoint=1000)
        _until("job seen", lambda: get(f"/api/v1/jobs/{job_id}").get("ranks_reporting") == 32)

        bad = nodes[1]
        post(bad, [_obs("ecc", **_REMAP_PENDING)])
        told = _until(
            "the job told to checkpoint now",
            lambda: (a := get(f"/api/v1/jobs/{job_id}/advice", 1))["checkpoint_now"] and a,
        )
        assert told["swap"]["host"] == bad and told["swap"]["status"] == "waiting"
        [finding] = get(f"/api/v1/findings?host_id={bad}")
        assert (finding["rule"], finding["state"]) == ("RowRemapPending", "open")
        # A degraded host interrupts nothing: the job runs on, no incident, no requeue.
        assert get("/api/v1/incidents") == []
        job = cluster.squeue()[job_id]
        assert (job["job_state"], job["restart_cnt"]) == ("RUNNING", 0)
        assert _reserved(cluster) == "node5"

        # Every rank reports a newer checkpoint: the swap is carried out.
        beats(nodes, job_id, step=1300, checkpoint=1300)
        swap = _until(
            "the swap carried out",
            lambda: (
                (s := get(f"/api/v1/swaps?job_id={job_id}"))
                and s[0]["status"] in ("done", "failed")
                and s[0]
            ),
            timeout=60,
        )
        assert swap["status"] == "done", swap
        assert (swap["host"], swap["spare_host"], swap["planned"]) == (bad, "node5", True)
        assert swap["outcome"]["durable_checkpoint"] == 1300
        assert [(s["op"], s["ok"]) for s in swap["outcome"]["steps"]] == [
            ("drain", True),
            ("reserve", True),
            ("requeue", True),
        ]
        assert swap["attempts"] == 1

        again = cluster.wait_running(job_id, avoid=(bad,), restarts=1, timeout=60)
        # The job keeps its size, the spare in place of the degraded host.
        assert len(again) == 4 and "node5" in again and bad not in again
        assert _reserved(cluster) is None  # the pool is empty: nothing held
        node = cluster.sinfo()[bad]
        assert "DRAIN" in [f.upper() for f in node["state_flags"]] or node["state"] == "drained"
        assert "planned swap" in node["reason"]

        # Exactly once: one swap, one requeue, whichever replica led; both see the same.
        time.sleep(3)  # a few more loop passes on the leader
        assert len(get("/api/v1/swaps")) == 1 == len(get("/api/v1/swaps", 1))
        job = cluster.squeue()[job_id]
        assert job["restart_cnt"] == 1
        assert cluster.job_output(job_id).count("start restart=") == 2
        spares = get("/api/v1/spares", 1)
        assert (spares["ready"], spares["used"]) == ([], ["node5"])
        # Counted as planned: any incident the stop opened is planned work.
        assert {i["category"] for i in get("/api/v1/incidents")} <= {"planned"}
    finally:
        replicas.stop()
        cluster.run("scontrol", "delete", f"ReservationName={RESERVATION}", check=False)
        cluster.reset()


def test_an_excluded_host_is_replaced_by_the_reserved_spare_at_once(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    """XID 79 drains a host of the 4-node job; the only free node is the spare in Sentinel's
    reservation, released to the job with the requeue: the job runs again on 4 nodes at once
    (without the release it would wait in the queue)."""
    service = LiveService(
        database_url=f"sqlite:///{tmp_path / 'sentinel.db'}",
        data_dir=tmp_path,
        extra_env={
            "SENTINEL_SCHEDULER__KIND": "slurm",
            "SENTINEL_SCHEDULER__SLURM__CONF": str(cluster.conf),
            "SENTINEL_REMEDIATION__SWAP__SPARES": json.dumps(["node5"]),
            "SENTINEL_REMEDIATION__SWAP__POOL_SIZE": "1",
        },
    )
    service.start()
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

    try:
        post("node5", [_obs("agent_status", version="test")])
        assert _until("node5 reserved", lambda: _reserved(cluster)) == "node5"
        job_id = cluster.submit_job(nodes=4)
        nodes = cluster.wait_running(job_id)
        for n, host in enumerate(nodes):
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
        bad = nodes[2]
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
        again = cluster.wait_running(job_id, avoid=(bad,), restarts=1, timeout=60)
        assert sorted(again) == sorted([*(h for h in nodes if h != bad), "node5"])
        assert _reserved(cluster) is None
        r = httpx.get(f"{service.url}/api/v1/decisions", headers=service.headers(), timeout=5)
        [decision] = r.json()
        assert [s["op"] for s in decision["outcome"]["steps"]][:3] == [
            "drain",
            "reserve",
            "requeue",
        ]
    finally:
        service.stop()
        cluster.run("scontrol", "delete", f"ReservationName={RESERVATION}", check=False)
        cluster.reset()


def test_a_degraded_host_is_swapped_in_the_job_onto_its_standby_once_with_two_replicas(
    cluster: SlurmCluster, pg_cluster: PostgresCluster, pg_template: str, tmp_path: Path
) -> None:
    """In-place restarts on, two replicas, the real Slurm: a 4-node job runs its ranks on
    node1-3 and node4 of its allocation reports healthy and runs nothing (a standby); node5
    is the pool's spare, reserved. A row remap pending on node2 -> one swap -> checkpoint now
    -> at the durable checkpoint node2 is drained in Slurm and the advice names it excluded
    and node4 the standby; the job is not requeued; a launcher's acknowledgment makes the
    swap done. The spare stays reserved for the next one; exactly once, whichever replica
    led (the real launchers' side: tests/agents/test_swap_standby_e2e.py)."""
    url = _fresh_pg(pg_cluster, pg_template)
    replicas = _Replicas(
        url, tmp_path, _with_a_spare(cluster, SENTINEL_REMEDIATION__IN_PLACE="true")
    )
    replicas.start()
    post, get = replicas.post, replicas.get
    try:
        post("node5", [_obs("agent_status", version="test", collectors_ok=["nvml"])])
        assert _until("node5 reserved", lambda: _reserved(cluster)) == "node5"
        job_id = cluster.submit_job(nodes=4)
        nodes = cluster.wait_running(job_id)
        assert sorted(nodes) == ["node1", "node2", "node3", "node4"]
        training, standby = sorted(nodes)[:3], "node4"
        post(standby, [_obs("agent_status", version="test", collectors_ok=["nvml"])])
        replicas.beats(training, job_id, step=1200, checkpoint=1000, world=24)
        _until("job seen", lambda: get(f"/api/v1/jobs/{job_id}").get("ranks_reporting") == 24)

        bad = training[1]
        post(bad, [_obs("ecc", **_REMAP_PENDING)])
        told = _until(
            "the job told to checkpoint now",
            lambda: (a := get(f"/api/v1/jobs/{job_id}/advice", 1))["checkpoint_now"] and a,
        )
        assert told["swap"]["host"] == bad and told["swap"]["status"] == "waiting"

        # Every rank reports a newer checkpoint: the swap is carried out in the job.
        replicas.beats(training, job_id, step=1300, checkpoint=1300, world=24)
        advice = _until(
            "the swap published to the job's launchers",
            lambda: (a := get(f"/api/v1/jobs/{job_id}/advice"))["restart_decision"] and a,
            timeout=60,
        )
        assert (advice["restart_exclude_hosts"], advice["restart_standby_host"]) == (
            [bad],
            standby,
        )
        [swap] = get(f"/api/v1/swaps?job_id={job_id}", 1)
        assert (swap["id"], swap["status"]) == (advice["restart_decision"], "awaiting_ack")
        assert (swap["host"], swap["standby_host"]) == (bad, standby)
        assert swap["outcome"]["durable_checkpoint"] == 1300
        node = cluster.sinfo()[bad]
        assert "DRAIN" in [f.upper() for f in node["state_flags"]] or node["state"] == "drained"
        assert "planned swap" in node["reason"]
        # The allocation is kept: no requeue, the pool's spare still held for the next one.
        job = cluster.squeue()[job_id]
        assert (job["job_state"], job["restart_cnt"]) == ("RUNNING", 0)
        assert _reserved(cluster) == "node5"

        # A launcher of the job acknowledges, at the other replica: the swap is done.
        service = replicas.services[1]
        r = httpx.post(
            f"{service.url}/api/v1/decisions/{swap['id']}/ack",
            headers=service.headers("agent"),
            json={"outcome": "done", "detail": "restarted without node2, with node4"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "done"
        again = httpx.post(
            f"{replicas.services[0].url}/api/v1/decisions/{swap['id']}/ack",
            headers=replicas.services[0].headers("agent"),
            json={"outcome": "done", "detail": "node3's launcher"},
            timeout=10,
        )
        # Another launcher of the job (or a retry): answered as done, recorded once.
        assert again.status_code == 200 and again.json()["status"] == "done", again.text

        # Exactly once, whichever replica leads: one swap, no requeue, the spare kept.
        time.sleep(3)  # a few more loop passes on the leader
        swaps = get("/api/v1/swaps")
        assert swaps == get("/api/v1/swaps", 1) and len(swaps) == 1
        assert [s["op"] for s in swaps[0]["outcome"]["steps"]] == ["drain", "in_place", "ack"]
        job = cluster.squeue()[job_id]
        assert (job["job_state"], job["restart_cnt"]) == ("RUNNING", 0)
        assert cluster.job_output(job_id).count("start restart=") == 1
        assert _reserved(cluster) == "node5"
        assert get("/api/v1/spares", 1)["ready"] == ["node5"]
        assert get("/api/v1/incidents") == []  # nothing interrupted the job but the swap
    finally:
        replicas.stop()
        cluster.run("scontrol", "delete", f"ReservationName={RESERVATION}", check=False)
        cluster.reset()
