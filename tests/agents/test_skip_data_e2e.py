"""A crash at the same step skipped by the launcher, through real processes (issue 17).

The job's ranks beat through the stdlib heartbeat client (under ``sentinel-agent launch``)
from their checkpoint at step 100; step 140's batch crashes the step with the same traceback
on every run that meets it (the ranks report step 139, the last one done). The first failure
is restarted in place as any transient fault; the second, at the same step, is tied to the
data there: one ``skip_data`` decision (the steps after the checkpoint to the failing one +
200), published in the advice, and the launcher restarts the command in place with
``SENTINEL_SKIP_STEPS=101-339`` (the contract: the data loader skips those batches),
acknowledges it, and the job trains past step 140. Exactly once.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import (
    api_get,
    eventually,
    in_place_service,
    start_training_host,
)

from tests.harness.service import LiveService

JOB = "4545"
# A torchrun stand-in: each run starts from the checkpoint at step 100 (the next is at 150)
# and logs SENTINEL_SKIP_STEPS in skips.log. Step 140's batch crashes the step unless it is
# skipped: 8 s into each run, time for the service to see the restart before handled (the
# incident resolves once the ranks advance a heartbeat interval after it: ~4 s). It ends when
# the test writes `stop`.
FAKE_TORCHRUN = """
import os, sys, time
from sentinel_agent.heartbeat import Heartbeat
here = os.path.dirname(os.path.abspath(__file__))
def at(name):
    return os.path.join(here, name)
skips = os.environ.get("SENTINEL_SKIP_STEPS", "")
skipped = [tuple(map(int, r.split("-"))) for r in skips.split(",") if r]
with open(at("skips.log"), "a") as f:
    f.write((skips or "-") + "\\n")
step = ckpt = 100
ranks = [Heartbeat(JOB, rank=r, local_rank=r, world_size=2, gpu_index=r) for r in range(2)]
BAD = 140
bad = not any(first <= BAD <= last for first, last in skipped)
while not os.path.exists(at("stop")):
    if step + 1 == BAD and bad:
        time.sleep(1.2)  # the agent folds beats every second: the last ones reach the service
        with open(at("train.log"), "a") as log:
            log.write(
                "[rank0]: Traceback (most recent call last):\\n"
                '[rank0]:   File "/workspace/train.py", line 97, in <module>\\n'
                "[rank0]:     loss = step(batch)\\n"
                "[rank0]: RuntimeError: CUDA error: an illegal memory access was encountered\\n"
            )
        sys.exit(1)
    step += 1
    ckpt = step - step % 50
    for hb in ranks:
        hb.beat(step, step_time_s=0.2, checkpoint_step=ckpt)
    time.sleep(0.2)
sys.exit(0)
""".replace("JOB", repr(JOB))


@pytest.mark.slow
def test_a_crash_at_the_same_step_is_restarted_skipping_that_data(
    tmp_path: Path, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    with in_place_service(tmp_path) as service:
        _run(tmp_path, service, agent_processes)


def _run(
    tmp_path: Path, service: LiveService, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    host = "skip-a"
    t = start_training_host(tmp_path, service, host, FAKE_TORCHRUN, agent_processes)
    home = t.home
    log = home / "launcher.log"
    service_log = service.data_dir / "service.log"

    def skips() -> list[str]:
        path = home / "skips.log"
        return path.read_text().split() if path.exists() else []

    def job() -> dict[str, Any]:
        return dict(api_get(service, f"/api/v1/jobs/{JOB}"))

    def decisions(status: str) -> list[dict[str, Any]]:
        return [d for d in api_get(service, "/api/v1/decisions") if d["status"] == status]

    def resolved(decision: dict[str, Any]) -> bool:
        incident = api_get(service, f"/api/v1/incidents/{decision['incident_id']}")
        return bool(incident["state"] == "resolved")

    launcher = t.launch(JOB)
    agent_processes.append(launcher)  # stopped with the agent if the test fails

    # The job trains from checkpoint 100; step 140 fails: restarted in place.
    eventually(lambda: len(skips()) == 2, 90, "restarted in place", log)
    [restart] = eventually(lambda: decisions("done"), 30, "the restart acknowledged", service_log)
    assert restart["action"] == "restart_in_place" and restart["checkpoint_step"] == 100
    failed_at = restart["outcome"]["failed_at_step"]
    assert 135 <= failed_at <= 139, restart  # the ranks' last step the service had
    eventually(lambda: resolved(restart), 60, "the first incident resolved", service_log)

    # From checkpoint 100 to step 140 again: the same error at the same step, skipped.
    eventually(lambda: len(skips()) == 3, 90, "the skip's run", log)
    done = eventually(lambda: len(decisions("done")) == 2 and decisions("done"), 30,
                      "the skip acknowledged", service_log)  # fmt: skip
    [skip] = [d for d in done if d["action"] == "skip_data"]
    assert (skip["rule"], skip["job_id"]) == ("SkipTheDataWhereTheSameStepFailsAgain", JOB), skip
    first, last = skip["skip_steps"]
    assert first == 101 and 335 <= last <= 339 and last >= failed_at + 200, skip
    assert skips() == ["-", "-", f"{first}-{last}"]  # what the launcher told the last run
    assert [s["op"] for s in skip["outcome"]["steps"]] == ["in_place", "ack"], skip
    assert f"skipping the batches of steps {first}-{last}" in skip["outcome"]["steps"][-1]["output"]
    assert f"(step {failed_at} last time" in skip["reason"]
    eventually(lambda: resolved(skip), 60, "the second incident resolved", service_log)
    eventually(lambda: job()["max_step"] > 145, 30, "training past step 140", service_log)
    advice = api_get(service, f"/api/v1/jobs/{JOB}/advice")
    assert advice["restart_in_place"] is False and advice["skip_steps"] == [first, last]

    # The run ends well: the launcher exits with its status; one skip, one run on it.
    (home / "stop").write_text("")
    assert launcher.wait(timeout=30) == 0
    assert skips() == ["-", "-", f"{first}-{last}"]
    assert [d["action"] for d in api_get(service, "/api/v1/decisions")].count("skip_data") == 1
