"""An operator's restart in place for planned work, through real processes (issue 17).

The path an operator runs for a configuration or dataset update: POST
/api/v1/jobs/{id}/restart-in-place (operator token) -> the service process (the job's planned
incident, its one restart_in_place decision, published in GET /api/v1/jobs/{id}/advice) ->
``sentinel-agent launch`` around a fake torchrun that trains until told to stop. The restart
waits for the job's next checkpoint: the advice says checkpoint_now, the agent passes it on in
its heartbeat replies, the fake saves one; once it is durable the launcher restarts the command
in the same allocation, once, and acknowledges -> the decision is done, from that checkpoint,
nothing was requeued, no unexpected incident opened, and the planned one resolves when the
restarted ranks advance.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_helpers import api_get, eventually, in_place_service, start_training_host

from tests.harness.service import LiveService

JOB = "4343"
WHY = "dataset update: shards 12-15 replaced"
# A torchrun stand-in: its ranks beat through the stdlib heartbeat client (the agent's
# collector receives them) and train until told to stop. Each run records its generation
# (SENTINEL_RESTART_COUNT + 1) in generations.log; told checkpoint_now (the agent's heartbeat
# reply), it saves a checkpoint at its step, reported from the next beats, and records
# "<generation> <step>" in checkpoints.log.
FAKE_TORCHRUN = """
import os, sys, time
from sentinel_agent.heartbeat import Heartbeat
here = os.path.dirname(os.path.abspath(__file__))
generation = int(os.environ.get("SENTINEL_RESTART_COUNT", "0")) + 1
with open(os.path.join(here, "generations.log"), "a") as f:
    f.write(f"{generation}\\n")
ranks = [Heartbeat(JOB, rank=r, local_rank=r, world_size=2, gpu_index=r) for r in range(2)]
step = checkpoint = 100 * generation
while not os.path.exists(os.path.join(here, "stop")):
    step += 1
    for hb in ranks:
        hb.beat(step, step_time_s=0.2, checkpoint_step=checkpoint)
    if ranks[0].checkpoint_now and checkpoint < step:
        checkpoint = step
        with open(os.path.join(here, "checkpoints.log"), "a") as f:
            f.write(f"{generation} {checkpoint}\\n")
    time.sleep(0.2)
sys.exit(0)
""".replace("JOB", repr(JOB))


@pytest.mark.slow
def test_an_operators_planned_restart_is_carried_out_in_place_once(
    tmp_path: Path, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    with in_place_service(tmp_path) as service:
        _run(tmp_path, service, agent_processes)


def _run(
    tmp_path: Path, service: LiveService, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    t = start_training_host(tmp_path, service, "planned-a", FAKE_TORCHRUN, agent_processes)
    home = t.home
    launcher = t.launch(JOB)
    agent_processes.append(launcher)  # stopped with the agent if the test fails

    def generations() -> list[str]:
        path = home / "generations.log"
        return path.read_text().split() if path.exists() else []

    log = home / "launcher.log"
    eventually(
        lambda: any(j["id"] == JOB for j in api_get(service, "/api/v1/jobs")), 60, "the job", log
    )
    r = httpx.post(
        f"{service.url}/api/v1/jobs/{JOB}/restart-in-place",
        json={"reason": WHY},
        headers={"Authorization": f"Bearer {service.operator_token}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    asked = r.json()
    assert (asked["action"], asked["rule"]) == ("restart_in_place", "OperatorRestartInPlace")
    assert (
        asked["status"] == "held"
        and "held for the job's next durable checkpoint" in (asked["reason"])
    )

    eventually(lambda: generations() == ["1", "2"], 90, "the restarted run", log)
    # The first run was told to checkpoint, and saved one before it was restarted.
    saved = (home / "checkpoints.log").read_text().split("\n")[0].split()
    assert saved[0] == "1", saved

    def done() -> Any:
        d = api_get(service, f"/api/v1/decisions/{asked['id']}")
        return d if d["status"] == "done" else None

    decision = eventually(done, 30, "the decision acknowledged", service.data_dir / "service.log")
    ops = [s["op"] for s in decision["outcome"]["steps"]]
    assert ops == ["in_place", "ack"], decision  # no drain, no requeue: the allocation kept
    # Restarted from the checkpoint saved when asked (or a later one, saved while the advice
    # was still cached), not from step 100.
    assert decision["checkpoint_step"] >= int(saved[1]), decision
    assert (
        f"checkpoint step {decision['checkpoint_step']} durable: restart now"
        in (decision["reason"])
    )
    assert "run 2" in decision["outcome"]["steps"][-1]["output"]

    def resolved() -> bool:
        return api_get(service, f"/api/v1/incidents/{asked['incident_id']}")["state"] == "resolved"

    eventually(resolved, 60, "the planned incident resolved", service.data_dir / "service.log")
    # Exactly once: the launcher keeps polling; the restart is not carried out again, and the
    # stop opened no other incident.
    time.sleep(3)
    assert generations() == ["1", "2"]
    [incident] = api_get(service, "/api/v1/incidents")
    assert (incident["id"], incident["category"]) == (asked["incident_id"], "planned")
    assert [d["id"] for d in api_get(service, "/api/v1/decisions")] == [asked["id"]]
    assert api_get(service, f"/api/v1/jobs/{JOB}/advice")["restart_in_place"] is False
    (home / "stop").write_text("")
    assert launcher.wait(timeout=30) == 0
