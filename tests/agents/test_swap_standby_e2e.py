"""A proactive swap carried out in the job onto a standby host of its allocation, through real
processes (issue 17).

The job holds three hosts (the fake scheduler's allocation, as ``sbatch -N 3``) and runs its
ranks on two: a fake torchrun under ``sentinel-agent launch`` on each, its ranks beating to that
host's real agent process; the third host's agent reports it healthy and its launcher waits with
``--standby``; the pool holds one spare. A row remap pending on a GPU of the first host (its
``ecc`` observation) -> a degraded finding and one swap decision -> the agents tell the ranks
to checkpoint now in their heartbeat replies -> the ranks save and report the checkpoint -> once
durable, the swap is carried out in the job: the host drained, the advice naming it and the
standby -> its launcher stops its command and waits, the survivor's restarts it from the
checkpoint and the standby's starts it, each told the host excluded and the standby; the first
acknowledgment makes the swap done; no requeue, the pool's spare kept; exactly once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from agent_helpers import (
    REPO,
    agent_process_config,
    api_get,
    eventually,
    in_place_service,
    service_observations,
    start_agent,
)

from tests.harness.service import LiveService

JOB = "4545"
DEGRADED, SURVIVOR, STANDBY, SPARE = "swj-a", "swj-b", "swj-c", "swj-d"
# A torchrun stand-in for one host (argv[1]): two ranks beating through the stdlib heartbeat
# client, a step every 0.2 s from the checkpoint it starts from (CKPT, the job's shared
# storage). Told to checkpoint now (the agent's reply to a beat), it saves the step it is at.
# Its "rendezvous" forms the world from the hosts first launched, an excluded one replaced by
# the standby (SENTINEL_EXCLUDED_HOSTS, SENTINEL_STANDBY_HOST), and, as torchrun's does, waits
# until every host of that world has joined before any rank loads the checkpoint and trains
# (a standby started first does not train alone). Each run logs: generation, excluded hosts,
# standby, its node rank, the checkpoint it started from.
FAKE_TORCHRUN = """
import os, sys, time
from sentinel_agent.heartbeat import Heartbeat
here = os.path.dirname(os.path.abspath(__file__))
host = sys.argv[1]
excluded = [h for h in os.environ.get("SENTINEL_EXCLUDED_HOSTS", "").split(",") if h]
standby = os.environ.get("SENTINEL_STANDBY_HOST")
world = [standby if h in excluded and standby else h for h in WORLD]
node = world.index(host)
generation = int(os.environ.get("SENTINEL_RESTART_COUNT", "0")) + 1
joined = CKPT + ".rdzv." + "-".join(world) + "."
open(joined + host, "w").close()
while not all(os.path.exists(joined + h) for h in world):
    if os.path.exists(os.path.join(here, "stop")):
        sys.exit(0)
    time.sleep(0.1)
checkpoint = int(open(CKPT).read()) if os.path.exists(CKPT) else 100
with open(os.path.join(here, "runs.log"), "a") as f:
    f.write(f"{generation} {','.join(excluded) or '-'} {standby or '-'} {node} {checkpoint}\\n")
ranks = [
    Heartbeat(JOB, rank=node * 2 + r, local_rank=r, world_size=4, gpu_index=r) for r in range(2)
]
step = checkpoint
while True:
    if os.path.exists(os.path.join(here, "stop")):
        sys.exit(0)
    step += 1
    if ranks[0].checkpoint_now and checkpoint < step - 1:
        checkpoint = step
        with open(CKPT + ".tmp", "w") as f:
            f.write(str(step))
        os.replace(CKPT + ".tmp", CKPT)
    for hb in ranks:
        hb.beat(step, step_time_s=0.2, checkpoint_step=checkpoint)
    time.sleep(0.2)
"""


def _runs(home: Path) -> list[str]:
    path = home / "runs.log"
    return path.read_text().splitlines() if path.exists() else []


def _post(service: LiveService, host: str, seq: int, kind: str, **fields: Any) -> None:
    """What a host's agent would send (the spare's; the degraded GPU's ECC change), under
    sequence numbers far below the real agents' (theirs start at the wall clock's seconds)."""
    now = datetime.now(UTC).isoformat()
    r = httpx.post(
        f"{service.url}/api/v1/reports",
        headers=service.headers("agent"),
        json={
            "version": 1,
            "host_id": host,
            "agent_id": f"{host}-test",
            "seq": seq,
            "sent_at": now,
            "observations": [{"kind": kind, "id": str(uuid.uuid4()), "observed_at": now, **fields}],
        },
        timeout=10,
    )
    assert r.status_code == 202, r.text


@pytest.mark.slow
def test_a_degraded_host_is_swapped_in_the_job_onto_the_standby(
    tmp_path: Path, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    with in_place_service(
        tmp_path,
        **{
            "SENTINEL_SCHEDULER__KIND": "fake",
            "SENTINEL_SCHEDULER__FAKE__NODES": f"{DEGRADED},{SURVIVOR},{STANDBY},{SPARE}",
            # The job's allocation holds the standby too (sbatch -N 3 for two hosts' ranks).
            "SENTINEL_SCHEDULER__FAKE__JOBS": json.dumps({JOB: f"{DEGRADED},{SURVIVOR},{STANDBY}"}),
            "SENTINEL_REMEDIATION__SWAP__SPARES": json.dumps([SPARE]),
            "SENTINEL_REMEDIATION__SWAP__POOL_SIZE": "1",
        },
    ) as service:
        _run(tmp_path, service, agent_processes)


def _run(
    tmp_path: Path, service: LiveService, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    script = FAKE_TORCHRUN.replace("JOB", repr(JOB)).replace("WORLD", repr([DEGRADED, SURVIVOR]))
    script = script.replace("CKPT", repr(str(shared / "checkpoint")))
    homes: dict[str, Path] = {}
    launchers: dict[str, subprocess.Popen[bytes]] = {}
    for host in (DEGRADED, SURVIVOR, STANDBY):
        home = homes[host] = tmp_path / host
        home.mkdir()
        socket_path = home / "hb.sock"
        config = home / "agent.yaml"
        config.write_text(
            yaml.safe_dump(
                agent_process_config(
                    home,
                    service,
                    host,
                    **{
                        "collectors.heartbeat": {
                            "enabled": True,
                            "address": f"unix://{socket_path}",
                        },
                        "intervals.heartbeat_s": 0.5,
                    },
                )
            )
        )
        agent_processes.append(start_agent(config, home / "agent.log"))
    for host, home in homes.items():
        eventually(lambda h=host: service_observations(service, h), 30, f"{host}'s agent")
        eventually((home / "hb.sock").exists, 30, f"{host}'s heartbeat socket")
    _post(service, SPARE, 1, "agent_status", version="test")
    for host, home in homes.items():
        (home / "torchrun.py").write_text(script)
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPO / "agents"),
            "SENTINEL_HEARTBEAT_ADDR": f"unix://{home / 'hb.sock'}",
        }
        launch = [sys.executable, "-m", "sentinel_agent", "launch"]
        launch += ["--config", str(home / "agent.yaml"), "--job-id", JOB]
        launch += ["--poll-s", "0.5", "--decide-s", "60", "--grace-s", "5"]
        launch += ["--standby"] if host == STANDBY else []
        with (home / "launcher.log").open("ab") as out:
            launchers[host] = subprocess.Popen(
                [*launch, "--", sys.executable, str(home / "torchrun.py"), host],
                cwd=home,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        agent_processes.append(launchers[host])  # stopped with the agents if the test fails

    # The job trains on two hosts; the third reports healthy and runs nothing; the pool holds
    # the fourth.
    def training() -> bool:
        jobs = {j["id"] for j in api_get(service, "/api/v1/jobs")}
        ranks = api_get(service, f"/api/v1/jobs/{JOB}")["ranks"] if JOB in jobs else []
        return sorted({r["host_id"] for r in ranks}) == [DEGRADED, SURVIVOR]

    eventually(training, 60, "the job training", service.data_dir / "service.log")
    eventually(
        lambda: api_get(service, "/api/v1/spares")["ready"] == [SPARE], 30, "the pool's spare"
    )
    assert _runs(homes[STANDBY]) == []
    # A row remap is pending on GPU 0 of the first host: a leading indicator, no failure.
    _post(service, DEGRADED, 2, "ecc", gpu_index=0, counter="remap_pending", previous=0, current=1)

    # Told to checkpoint now, the ranks save; at the durable checkpoint the swap is carried
    # out in the job: the survivor restarts from it and the standby starts.
    eventually(
        lambda: len(_runs(homes[STANDBY])) == 1 and len(_runs(homes[SURVIVOR])) == 2,
        120,
        "the survivor restarted and the standby started",
        service.data_dir / "service.log",
    )
    swaps = eventually(
        lambda: [s for s in api_get(service, "/api/v1/swaps") if s["status"] == "done"],
        30,
        "the swap acknowledged",
        service.data_dir / "service.log",
    )
    [swap] = swaps
    assert (swap["host"], swap["job_id"], swap["rule"]) == (DEGRADED, JOB, "SwapAtNextCheckpoint")
    assert swap["standby_host"] == STANDBY and swap["spare_host"] == STANDBY, swap
    assert f"standby host {STANDBY} of its allocation" in swap["reason"]
    ops = [s["op"] for s in swap["outcome"]["steps"]]
    assert ops == ["drain", "in_place", "ack"], swap  # no requeue: the allocation kept
    saved = swap["outcome"]["durable_checkpoint"]
    assert saved > 100
    # Each run's rendezvous: the standby took the degraded host's place (node 0) from the
    # checkpoint, the survivor kept its own; the degraded host's command was not started again.
    assert _runs(homes[DEGRADED]) == ["1 - - 0 100"]
    [first, second] = _runs(homes[SURVIVOR])
    assert first == "1 - - 1 100"
    assert second.startswith(f"2 {DEGRADED} {STANDBY} 1 ")
    [joined] = _runs(homes[STANDBY])
    assert joined.startswith(f"1 {DEGRADED} {STANDBY} 0 ")
    assert int(joined.split()[-1]) >= saved
    eventually(
        lambda: "excluded" in (homes[DEGRADED] / "launcher.log").read_text(),
        30,
        "the degraded host's launcher told of its exclusion",
        homes[DEGRADED] / "launcher.log",
    )
    assert launchers[DEGRADED].poll() is None  # waits for the job's end
    assert api_get(service, "/api/v1/hosts/excluded?format=hostlist").strip() == DEGRADED
    assert api_get(service, "/api/v1/spares")["ready"] == [SPARE]  # the pool kept its spare

    # The ranks train on the survivor and the standby: the advice stops naming the swap.
    def trains_on_the_standby() -> bool:
        advice = api_get(service, f"/api/v1/jobs/{JOB}/advice")
        return advice["restart_decision"] is None and advice["swap"] is None

    eventually(trains_on_the_standby, 60, "the job training on the standby")
    ranks = api_get(service, f"/api/v1/jobs/{JOB}")["ranks"]
    assert {r["host_id"] for r in ranks} == {SURVIVOR, STANDBY}
    assert len(api_get(service, "/api/v1/swaps")) == 1  # exactly once
    # No incident decision restarted or requeued the job: the stop was the swap's, planned.
    decisions = api_get(service, "/api/v1/decisions")
    assert all(d["action"] == "none" for d in decisions), decisions
    for host in (SURVIVOR, STANDBY):
        (homes[host] / "stop").write_text("")
        assert launchers[host].wait(timeout=30) == 0
    launchers[DEGRADED].terminate()
    launchers[DEGRADED].wait(timeout=30)
