"""A blocking checkpoint save is not a hang, through real processes.

A job runs under ``sentinel-agent launch``; its ranks beat through the stdlib heartbeat client
and say how long each checkpoint save blocked (4.5 s). The service's heartbeat interval is 4 s,
so a rank standing still for 6 s is stalled, unless its job measured a blocking save that
long: then it may stand still for twice the longest save (9 s). The second save runs slower
(7.5 s, the storage busy) with no beat during it: no hang, no incident, no restart; the ranks
step on after it.

The times leave the beats' way to the service (the agent folds them every second) 1.5 s
before the first save, still unmeasured, would look like a hang, and as long before the
second would; the second outlasts the heartbeat threshold by 1.5 s, so that without the
rule the watchdog (every second) sees a hang. With a 2 s interval and 2.5/4 s saves a
loaded machine once made the first save look like one.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from agent_helpers import api_get, eventually, in_place_service, start_training_host

JOB = "4646"
# Steps of 0.2 s; a save at steps 105 and 115 (blocking 4.5 s, then 7.5 s) with no beat while it
# runs; the beat after a save reports how long the first one blocked. Each step is logged.
FAKE_TORCHRUN = """
import os, sys, time
from sentinel_agent.heartbeat import Heartbeat
here = os.path.dirname(os.path.abspath(__file__))
ranks = [Heartbeat(JOB, rank=r, local_rank=r, world_size=2, gpu_index=r) for r in range(2)]
saves = {105: 4.5, 115: 7.5}
step, saved, measured = 100, 100, None
while not os.path.exists(os.path.join(here, "stop")):
    step += 1
    if step in saves:
        time.sleep(saves[step])
        saved = step
        measured = measured or saves[step]
    for hb in ranks:
        hb.beat(step, step_time_s=0.2, checkpoint_step=saved, checkpoint_save_s=measured)
    with open(os.path.join(here, "steps.log"), "a") as f:
        f.write(f"{step} {time.time()}\\n")
    time.sleep(0.2)
""".replace("JOB", repr(JOB))


@pytest.mark.slow
def test_a_slow_blocking_save_is_not_taken_for_a_hang(
    tmp_path: Path, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    with in_place_service(tmp_path, SENTINEL_TRIAGE__HEARTBEAT_INTERVAL_S="4") as service:
        host = start_training_host(tmp_path, service, "saving-a", FAKE_TORCHRUN, agent_processes)
        launcher = host.launch(JOB)
        agent_processes.append(launcher)
        try:

            def stepped_to(n: int) -> bool:
                log = host.home / "steps.log"
                return log.exists() and int(log.read_text().split()[-2]) >= n

            eventually(
                lambda: (
                    [j for j in api_get(service, "/api/v1/jobs") if j["id"] == JOB]
                    and api_get(service, f"/api/v1/jobs/{JOB}")["checkpoint_save_s"] == 4.5
                ),
                60,
                "the measured save",
                host.launcher_log,
            )
            eventually(lambda: stepped_to(125), 60, "the ranks past the slow save")
            time.sleep(2)  # the watchdog's sweeps after the save (every 1 s)
            steps = [line.split() for line in (host.home / "steps.log").read_text().splitlines()]
            at = {int(s): float(t) for s, t in steps}
            assert at[115] - at[114] >= 7.5  # the slow save: no beat well past the 6 s threshold
            assert api_get(service, "/api/v1/incidents") == []
            assert api_get(service, "/api/v1/decisions") == []
            assert "restart" not in host.launcher_log.read_text()
        finally:
            (host.home / "stop").write_text("")
        assert launcher.wait(timeout=30) == 0
