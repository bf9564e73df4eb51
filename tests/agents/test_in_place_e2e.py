"""Restart in place through real processes (issue 17 item 4).

The path users run: a rank's CUDA error in the training log -> the agent process tailing it
(its heartbeat collector receiving the ranks' beats) -> the service process (the incident, the
policy's restart_in_place decision, published in GET /api/v1/jobs/{id}/advice) ->
``sentinel-agent launch`` around a fake torchrun: it restarts the command in the same
allocation and acknowledges (POST /api/v1/decisions/{id}/ack) -> the decision is done, nothing
was requeued, and the incident resolves when the restarted ranks advance.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from agent_helpers import (
    api_get,
    eventually,
    in_place_service,
    start_training_host,
)

from tests.harness.service import LiveService

JOB = "4242"
# A torchrun stand-in: its ranks beat through the stdlib heartbeat client (the agent's
# collector receives them); the first run's rank 0 hits a CUDA error (its traceback in the
# training log) and the command exits 1; the next run trains until told to stop. Each run
# records its generation (SENTINEL_RESTART_COUNT + 1) in generations.log.
FAKE_TORCHRUN = """
import os, sys, time
from sentinel_agent.heartbeat import Heartbeat
here = os.path.dirname(os.path.abspath(__file__))
generation = int(os.environ.get("SENTINEL_RESTART_COUNT", "0")) + 1
with open(os.path.join(here, "generations.log"), "a") as f:
    f.write(f"{generation}\\n")
ranks = [Heartbeat(JOB, rank=r, local_rank=r, world_size=2, gpu_index=r) for r in range(2)]
step = 100 * generation
for _ in range(15 if generation == 1 else 100000):
    if os.path.exists(os.path.join(here, "stop")):
        sys.exit(0)
    step += 1
    for hb in ranks:
        hb.beat(step, step_time_s=0.2, checkpoint_step=100)
    time.sleep(0.2)
with open(os.path.join(here, "train.log"), "a") as log:
    log.write(
        "[rank0]: Traceback (most recent call last):\\n"
        '[rank0]:   File "/workspace/train.py", line 412, in <module>\\n'
        "[rank0]:     main()\\n"
        "[rank0]: RuntimeError: CUDA error: an illegal memory access was encountered\\n"
    )
sys.exit(1)
""".replace("JOB", repr(JOB))


@pytest.mark.slow
def test_a_cuda_error_is_restarted_in_place_by_the_launcher(
    tmp_path: Path, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    with in_place_service(tmp_path) as service:
        _run(tmp_path, service, agent_processes)


def _run(
    tmp_path: Path, service: LiveService, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    host = "inplace-a"
    t = start_training_host(tmp_path, service, host, FAKE_TORCHRUN, agent_processes)
    home = t.home
    launcher = t.launch(JOB)
    agent_processes.append(launcher)  # stopped with the agent if the test fails

    def generations() -> list[str]:
        path = home / "generations.log"
        return path.read_text().split() if path.exists() else []

    log = home / "launcher.log"
    eventually(lambda: generations() == ["1", "2"], 90, "the restarted run", log)
    decisions = eventually(
        lambda: [d for d in api_get(service, "/api/v1/decisions") if d["status"] == "done"],
        30,
        "the decision acknowledged",
        service.data_dir / "service.log",
    )
    [decision] = decisions
    assert (decision["action"], decision["rule"], decision["job_id"]) == (
        "restart_in_place",
        "RestartInPlaceWhenTransient",
        JOB,
    ), decision
    ops = [s["op"] for s in decision["outcome"]["steps"]]
    assert ops == ["in_place", "ack"], decision  # no drain, no requeue: the allocation kept
    assert "run 2" in decision["outcome"]["steps"][-1]["output"]
    incident = api_get(service, f"/api/v1/incidents/{decision['incident_id']}")
    assert incident["category"] == "software_bug", incident

    # The restarted ranks advance: the incident resolves; the advice no longer says restart.
    def resolved() -> bool:
        return api_get(service, f"/api/v1/incidents/{decision['incident_id']}")["state"] == (
            "resolved"
        )

    eventually(resolved, 60, "the incident resolved", service.data_dir / "service.log")
    assert api_get(service, f"/api/v1/jobs/{JOB}/advice")["restart_in_place"] is False
    # The run ends well: the launcher exits with its status.
    (home / "stop").write_text("")
    assert launcher.wait(timeout=30) == 0
    assert generations() == ["1", "2"]
