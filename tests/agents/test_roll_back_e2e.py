"""A crash loop rolled back to the code version that trained, through real processes (issue 17).

The job's ranks beat through the stdlib heartbeat client, which says the code version: version
A trains and checkpoints; the job is restarted on a newly deployed version B (under
``sentinel-agent launch``), which fails with the same error twice. The first failure is
restarted in place as any transient fault; the second is a crash loop that came with B: one
``roll_back`` decision to A, published in the advice, and the launcher restarts the command in
place with ``SENTINEL_CODE_VERSION=A`` (the contract: the job script checks that version out),
acknowledges it, and the job trains again on A. Exactly once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import (
    api_get,
    eventually,
    in_place_service,
    service_observations,
    start_training_host,
)

from tests.harness.service import LiveService

JOB = "4343"
# A torchrun stand-in. Its version: SENTINEL_CODE_VERSION when the launcher sets it, else the
# one deployed (the file `deployed`); each run logs it in versions.log. Version A checkpoints
# every 10 steps; B restarts from A's checkpoint and fails with the same traceback whenever
# the test touches `crash`. `python torchrun.py first` is the job's run before the launcher:
# it stops when told (`handover`), and the launcher's first run trains only after that.
FAKE_TORCHRUN = """
import os, sys, time
from sentinel_agent.heartbeat import Heartbeat
here = os.path.dirname(os.path.abspath(__file__))
def at(name):
    return os.path.join(here, name)
version = os.environ.get("SENTINEL_CODE_VERSION") or open(at("deployed")).read().strip()
with open(at("versions.log"), "a") as f:
    f.write(version + "\\n")
first = sys.argv[1:] == ["first"]
while not first and not os.path.exists(at("handover")):
    time.sleep(0.05)
ranks = [
    Heartbeat(JOB, rank=r, local_rank=r, world_size=2, gpu_index=r, code_version=version)
    for r in range(2)
]
step = 100
while True:
    if os.path.exists(at("stop")) or (first and os.path.exists(at("stop-first"))):
        open(at("handover"), "w").close()
        sys.exit(0)
    if version == "B" and os.path.exists(at("crash")):
        os.remove(at("crash"))
        with open(at("train.log"), "a") as log:
            log.write(
                "[rank0]: Traceback (most recent call last):\\n"
                '[rank0]:   File "/workspace/train.py", line 412, in <module>\\n'
                "[rank0]:     main()\\n"
                "[rank0]: RuntimeError: CUDA error: an illegal memory access was encountered\\n"
            )
        sys.exit(1)
    step += 1
    for hb in ranks:
        if version == "A":
            hb.beat(step, step_time_s=0.2, checkpoint_step=step - step % 10)
        else:
            hb.beat(step, step_time_s=0.2)
    time.sleep(0.2)
""".replace("JOB", repr(JOB))


@pytest.mark.slow
def test_a_crash_loop_on_a_new_version_is_rolled_back_by_the_launcher(
    tmp_path: Path, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    with in_place_service(tmp_path) as service:
        _run(tmp_path, service, agent_processes)


def _run(
    tmp_path: Path, service: LiveService, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    host = "rollback-a"
    t = start_training_host(tmp_path, service, host, FAKE_TORCHRUN, agent_processes)
    home, env = t.home, t.env
    log = home / "launcher.log"
    service_log = service.data_dir / "service.log"

    def versions() -> list[str]:
        path = home / "versions.log"
        return path.read_text().split() if path.exists() else []

    def job() -> dict[str, Any]:
        return dict(api_get(service, f"/api/v1/jobs/{JOB}"))

    # Version A trains and checkpoints.
    (home / "deployed").write_text("A")
    with log.open("ab") as out:
        first = subprocess.Popen(
            [sys.executable, str(home / "torchrun.py"), "first"],
            cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    agent_processes.append(first)
    eventually(
        lambda: service_observations(service, host) and _jobs(service) and
        job()["trained_version"] == "A" and (job()["durable_checkpoint_step"] or 0) >= 110,
        60, "version A's checkpoint", service_log,
    )  # fmt: skip

    # B is deployed; the job restarts on it under the launcher, from A's checkpoint.
    (home / "deployed").write_text("B")
    launcher = t.launch(JOB)
    agent_processes.append(launcher)  # stopped with the agent if the test fails
    eventually(lambda: versions() == ["A", "B"], 30, "B's first run", log)
    (home / "stop-first").write_text("")
    assert first.wait(timeout=30) == 0
    eventually(lambda: job()["code_version"] == "B", 30, "B's beats", service_log)
    assert job()["trained_version"] == "A"

    def decisions(status: str) -> list[dict[str, Any]]:
        return [d for d in api_get(service, "/api/v1/decisions") if d["status"] == status]

    def resolved(decision: dict[str, Any]) -> bool:
        incident = api_get(service, f"/api/v1/incidents/{decision['incident_id']}")
        return bool(incident["state"] == "resolved")

    # B fails: a transient software error the first time, restarted in place.
    (home / "crash").write_text("")
    eventually(lambda: versions() == ["A", "B", "B"], 90, "B restarted in place", log)
    [restart] = eventually(lambda: decisions("done"), 30, "the restart acknowledged", service_log)
    assert (restart["action"], restart["code_version"]) == ("restart_in_place", None), restart
    eventually(lambda: resolved(restart), 60, "the first incident resolved", service_log)

    # B fails the same way again: a crash loop that came with B, rolled back to A.
    (home / "crash").write_text("")
    eventually(lambda: versions() == ["A", "B", "B", "A"], 90, "the rollback's run on A", log)
    done = eventually(lambda: len(decisions("done")) == 2 and decisions("done"), 30,
                      "the rollback acknowledged", service_log)  # fmt: skip
    [rollback] = [d for d in done if d["action"] == "roll_back"]
    assert (rollback["rule"], rollback["code_version"], rollback["job_id"]) == (
        "RollBackACrashLoopToTheVersionThatTrained",
        "A",
        JOB,
    ), rollback
    assert [s["op"] for s in rollback["outcome"]["steps"]] == ["in_place", "ack"], rollback
    assert "on code version A" in rollback["outcome"]["steps"][-1]["output"]
    assert "on code version B" in rollback["reason"]
    eventually(lambda: resolved(rollback), 60, "the second incident resolved", service_log)
    eventually(lambda: job()["code_version"] == "A", 30, "A's beats again", service_log)
    advice = api_get(service, f"/api/v1/jobs/{JOB}/advice")
    assert advice["restart_in_place"] is False and advice["code_version"] == "A"

    # The run ends well: the launcher exits with its status; one rollback, one run on it.
    (home / "stop").write_text("")
    assert launcher.wait(timeout=30) == 0
    assert versions() == ["A", "B", "B", "A"]
    assert [d["action"] for d in api_get(service, "/api/v1/decisions")].count("roll_back") == 1


def _jobs(service: LiveService) -> bool:
    return any(j["id"] == JOB for j in api_get(service, "/api/v1/jobs"))
