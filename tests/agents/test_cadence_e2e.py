"""Checkpoint cadence advice from what the job measured, through real processes (issue 17 item 3).

A job runs under ``sentinel-agent launch`` (which tells each run when it was launched); its ranks
beat through the stdlib heartbeat client, saying how long their start took and how long each
checkpoint save blocked and its background write took; the agent process folds the beats and
ships them; the service keeps each rank's times. One crash (a traceback in the training log the
agent tails) is the job's first interruption: with its age, the job's MTTF. The advice endpoint
and the jobs page then give the checkpoint interval that loses least, from the measured times,
with no time given by hand; the run the launcher restarted measured its own startup anew.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_helpers import (
    api_get,
    eventually,
    in_place_service,
    start_training_host,
)

from sentinel.web.routes import TOKEN_COOKIE
from tests.harness.service import LiveService

JOB = "4545"
# A torchrun stand-in: it takes STARTUP seconds to start (imports, NCCL init, checkpoint load),
# then trains, checkpointing every 10 steps (the save blocks 0.25 s, its write takes 30 s); it
# crashes once when the test touches `crash`. Each run logs its start in runs.log.
FAKE_TORCHRUN = """
import os, sys, time
from sentinel_agent.heartbeat import Heartbeat
here = os.path.dirname(os.path.abspath(__file__))
def at(name):
    return os.path.join(here, name)
with open(at("runs.log"), "a") as f:
    f.write(os.environ.get("SENTINEL_LAUNCHED_AT", "-") + "\\n")
time.sleep(STARTUP)
ranks = [Heartbeat(JOB, rank=r, local_rank=r, world_size=2, gpu_index=r) for r in range(2)]
step = 100
while True:
    if os.path.exists(at("stop")):
        sys.exit(0)
    if os.path.exists(at("crash")):
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
        if step % 10 == 0:
            hb.beat(step, step_time_s=0.2, checkpoint_step=step,
                    checkpoint_save_s=0.25, checkpoint_write_s=30.0)
        else:
            hb.beat(step, step_time_s=0.2, checkpoint_step=step - step % 10)
    time.sleep(0.2)
""".replace("JOB", repr(JOB)).replace("STARTUP", "1.5")


@pytest.mark.slow
def test_the_cadence_advice_comes_from_the_jobs_measured_times(
    tmp_path: Path, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    with in_place_service(tmp_path) as service:
        try:
            _run(tmp_path, service, agent_processes)
        finally:
            (tmp_path / "cadence-a" / "stop").write_text("")  # the command, whatever happened


def _run(
    tmp_path: Path, service: LiveService, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    host = "cadence-a"
    t = start_training_host(tmp_path, service, host, FAKE_TORCHRUN, agent_processes)
    home = t.home
    log = home / "launcher.log"
    service_log = service.data_dir / "service.log"
    launcher = t.launch(JOB)
    agent_processes.append(launcher)

    def job() -> dict[str, Any]:
        jobs = [j for j in api_get(service, "/api/v1/jobs") if j["id"] == JOB]
        return dict(jobs[0]) if jobs else {}

    # The ranks' measured times reach the service: the start took the stand-in's 1.5 s (and
    # the interpreter's), a save blocks 0.25 s, a write takes 30 s.
    eventually(lambda: job().get("checkpoint_write_s") == 30.0, 60, "the measured times", log)
    first = job()
    assert first["checkpoint_save_s"] == 0.25 and 1.5 <= first["startup_s"] < 30
    advice = api_get(service, f"/api/v1/jobs/{JOB}/advice")
    assert advice["cadence"] is None and "MTTF" in advice["cadence_why"]

    # The job's first interruption: a crash the launcher restarts in place.
    (home / "crash").write_text("")
    eventually(lambda: len((home / "runs.log").read_text().split()) == 2, 90, "the restart", log)
    cadence = eventually(
        lambda: api_get(service, f"/api/v1/jobs/{JOB}/advice")["cadence"], 60,
        "the cadence advice", service_log,
    )  # fmt: skip
    assert cadence["save_s"] == 0.25 and cadence["write_s"] == 30.0
    assert cadence["measured"] == ["restart_s", "save_s", "write_s"]
    assert 0 < cadence["mttf_s"] < 600  # one interruption in the job's first minutes
    # Daly's optimum for a 0.25 s save and an MTTF of minutes is under the 30 s write: the
    # advice is the write's bound.
    assert cadence["interval_s"] == 30.0 and cadence["write_bound"] is True
    assert "background write" in cadence["reason"]
    # The restarted run measured its own startup from the launcher's new launch time.
    launched = [float(t) for t in (home / "runs.log").read_text().split()]
    assert launched[1] > launched[0]
    eventually(lambda: job()["startup_s"] is not None, 30, "the restarted run's startup", log)
    page = httpx.get(
        f"{service.url}/jobs", cookies={TOKEN_COOKIE: service.viewer_token}, timeout=10
    )
    assert page.status_code == 200 and "every <b>30 s</b>" in page.text, page.text[-2000:]
    (home / "stop").write_text("")
    assert launcher.wait(timeout=60) == 0
