"""'Checkpoint now' through real processes: a rank's heartbeat client -> the agent process ->
the service process, where a degraded host of the job gets a proactive swap decision -> the
agent asks the service for the job's advice -> its reply to the rank's next beat says
checkpoint now; once every rank reports a newer checkpoint, it stops saying so."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from agent_helpers import agent_process_config, start_agent

from sentinel_agent.heartbeat import Heartbeat
from tests.harness.service import LiveService

JOB = "job-e2e"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _obs(kind: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "id": str(uuid.uuid4()), "observed_at": _now(), **fields}


def test_the_rank_is_told_to_checkpoint_now_through_the_agent(
    tmp_path: Path, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    service = LiveService(
        database_url=f"sqlite:///{tmp_path / 'sentinel.db'}",
        data_dir=tmp_path / "service",
        extra_env={
            "SENTINEL_SCHEDULER__KIND": "fake",
            "SENTINEL_SCHEDULER__FAKE__NODES": "hb-a,hb-b,hb-spare",
            "SENTINEL_REMEDIATION__SWAP__SPARES": json.dumps(["hb-spare"]),
            "SENTINEL_REMEDIATION__SWAP__POOL_SIZE": "1",
        },
    )
    service.start()
    seq: dict[str, int] = {}

    def post(host: str, observations: list[dict[str, Any]]) -> None:
        """hb-b and the spare report straight to the service (their agents, in effect)."""
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

    def rank_on_b(step: int, checkpoint: int) -> None:
        post(
            "hb-b",
            [
                _obs(
                    "heartbeat",
                    job_id=JOB,
                    rank=1,
                    local_rank=0,
                    step=step,
                    checkpoint_step=checkpoint,
                    world_size=2,
                    last_beat_at=_now(),
                )
            ],
        )

    socket_path = tmp_path / "hb.sock"
    config = agent_process_config(
        tmp_path,
        service,
        "hb-a",
        **{
            "collectors.heartbeat": {"enabled": True, "address": f"unix://{socket_path}"},
            "intervals.heartbeat_s": 0.2,
        },
    )
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(config))
    hb = Heartbeat(JOB, 0, 0, 2, address=f"unix://{socket_path}")
    try:
        agent_processes.append(start_agent(tmp_path / "agent.yaml", tmp_path / "agent.log"))
        post("hb-spare", [_obs("agent_status", version="test")])
        rank_on_b(100, 90)
        deadline = time.monotonic() + 30
        step = 100
        while time.monotonic() < deadline:
            hb.beat(step, checkpoint_step=90)
            r = httpx.get(f"{service.url}/api/v1/spares", headers=service.headers(), timeout=5)
            job = httpx.get(f"{service.url}/api/v1/jobs/{JOB}", headers=service.headers())
            ranks = job.json()["ranks_reporting"] if job.status_code == 200 else 0
            if r.json()["ready"] == ["hb-spare"] and ranks == 2:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the job's two ranks and the spare were not seen in 30 s")
        assert hb.advice is None  # nothing to say yet: no reply

        post(
            "hb-b",
            [_obs("ecc", gpu_index=0, counter="remap_pending", previous=0, current=1)],
        )
        deadline = time.monotonic() + 30
        while not hb.checkpoint_now and time.monotonic() < deadline:
            step += 1
            hb.beat(step, checkpoint_step=90)
            time.sleep(0.1)
        assert hb.checkpoint_now, (tmp_path / "agent.log").read_text()[-3000:]
        assert hb.advice is not None and hb.advice["swap_host"] == "hb-b"
        assert hb.advice["spare_host"] is None  # chosen when the swap is carried out

        # Both ranks save and report the checkpoint: the swap stops waiting, and the rank
        # is told so.
        step += 1
        rank_on_b(step, step)
        deadline = time.monotonic() + 30
        while hb.checkpoint_now and time.monotonic() < deadline:
            hb.beat(step, checkpoint_step=step)
            time.sleep(0.1)
        assert not hb.checkpoint_now
        r = httpx.get(f"{service.url}/api/v1/swaps", headers=service.headers(), timeout=5)
        [swap] = r.json()
        assert swap["host"] == "hb-b" and swap["status"] != "waiting"
        assert swap["outcome"]["durable_checkpoint"] == step
    finally:
        hb.close()
        service.stop()
