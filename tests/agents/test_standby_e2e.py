"""An exclusion carried out in the job onto a standby host of its allocation, through real
processes (issue 17).

The job holds three hosts (the fake scheduler's allocation, as ``sbatch -N 3``) and runs its
ranks on two: a fake torchrun under ``sentinel-agent launch`` on each, its ranks beating to
that host's real agent process; the third host's agent reports it healthy and its launcher
waits with ``--standby``. An XID 79 in one host's kernel log -> its agent -> the live service
(one incident, the policy's exclude_and_restart, carried out in the job: the culprit drained,
the advice naming it and the standby) -> the culprit's launcher stops its command and waits,
the survivor's restarts it and the standby's starts it, each told the hosts excluded and the
standby; the first acknowledgment makes the decision done; no requeue; exactly once; the
incident resolves when the ranks train again.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

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

JOB = "4343"
CULPRIT, SURVIVOR, STANDBY = "xjob-a", "xjob-b", "xjob-c"
XID79 = (
    "[ 1843.301] NVRM: Xid (PCI:0000:3b:00): 79, pid=20241, name=python, "
    "GPU has fallen off the bus.\n"
)
# A torchrun stand-in for one host (argv[1]): two ranks beating through the stdlib heartbeat
# client. Its "rendezvous" forms the world from the hosts first launched, an excluded one
# replaced by the standby (SENTINEL_EXCLUDED_HOSTS, SENTINEL_STANDBY_HOST), and takes its
# host's place in it for its ranks; as torchrun's does, it waits until every host of that world
# has joined before its ranks train (a standby started first does not train alone). A run on
# a host whose GPU fell off the bus ("fault") dies.
# Each run logs: generation, excluded hosts, standby, its node rank.
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
joined = os.path.join(RDZV, "-".join(world) + ".")
open(joined + host, "w").close()
while not all(os.path.exists(joined + h) for h in world):
    if os.path.exists(os.path.join(here, "stop")):
        sys.exit(0)
    time.sleep(0.1)
with open(os.path.join(here, "runs.log"), "a") as f:
    f.write(f"{generation} {','.join(excluded) or '-'} {standby or '-'} {node}\\n")
ranks = [
    Heartbeat(JOB, rank=node * 2 + r, local_rank=r, world_size=4, gpu_index=r) for r in range(2)
]
while True:
    if os.path.exists(os.path.join(here, "stop")):
        sys.exit(0)
    if os.path.exists(os.path.join(here, "fault")):
        sys.exit(1)
    step = 100 + int((time.time() - T0) * 5)
    for hb in ranks:
        hb.beat(step, step_time_s=0.2, checkpoint_step=100)
    time.sleep(0.2)
"""


def _runs(home: Path) -> list[str]:
    path = home / "runs.log"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
def test_an_xid79_is_carried_out_in_the_job_onto_the_standby(
    tmp_path: Path, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    with in_place_service(
        tmp_path,
        **{
            "SENTINEL_SCHEDULER__KIND": "fake",
            "SENTINEL_SCHEDULER__FAKE__NODES": f"{CULPRIT},{SURVIVOR},{STANDBY}",
            # The job's allocation holds the standby too (sbatch -N 3 for two hosts' ranks).
            "SENTINEL_SCHEDULER__FAKE__JOBS": f'{{"{JOB}": "{CULPRIT},{SURVIVOR},{STANDBY}"}}',
        },
    ) as service:
        _run(tmp_path, service, agent_processes)


def _run(
    tmp_path: Path, service: LiveService, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    script = FAKE_TORCHRUN.replace("JOB", repr(JOB))
    script = script.replace("WORLD", repr([CULPRIT, SURVIVOR])).replace("T0", repr(time.time()))
    rendezvous = tmp_path / "rendezvous"  # the job's shared storage
    rendezvous.mkdir()
    script = script.replace("RDZV", repr(str(rendezvous)))
    homes: dict[str, Path] = {}
    launchers: dict[str, subprocess.Popen[bytes]] = {}
    for host in (CULPRIT, SURVIVOR, STANDBY):
        home = homes[host] = tmp_path / host
        home.mkdir()
        (home / "kern.log").write_text("")
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
                        "collectors.kernel_log": {
                            "enabled": True,
                            "path": str(home / "kern.log"),
                        },
                        "intervals.heartbeat_s": 1.0,
                    },
                )
            )
        )
        agent_processes.append(start_agent(config, home / "agent.log"))
    for host, home in homes.items():
        eventually(lambda h=host: service_observations(service, h), 30, f"{host}'s agent")
        eventually((home / "hb.sock").exists, 30, f"{host}'s heartbeat socket")
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

    # The job trains on two hosts; the third reports healthy and runs nothing.
    def training() -> bool:
        jobs = {j["id"] for j in api_get(service, "/api/v1/jobs")}
        ranks = api_get(service, f"/api/v1/jobs/{JOB}")["ranks"] if JOB in jobs else []
        return sorted({r["host_id"] for r in ranks}) == [CULPRIT, SURVIVOR]

    eventually(training, 60, "the job training", service.data_dir / "service.log")
    assert _runs(homes[STANDBY]) == []
    # The culprit's GPU falls off the bus: the driver says so, its ranks die.
    (homes[CULPRIT] / "fault").write_text("")
    with (homes[CULPRIT] / "kern.log").open("a") as f:
        f.write(XID79)

    eventually(
        lambda: len(_runs(homes[STANDBY])) == 1 and len(_runs(homes[SURVIVOR])) == 2,
        90,
        "the survivor restarted and the standby started",
        homes[STANDBY] / "launcher.log",
    )
    decisions = eventually(
        lambda: [d for d in api_get(service, "/api/v1/decisions") if d["status"] == "done"],
        30,
        "the decision acknowledged",
        service.data_dir / "service.log",
    )
    [decision] = decisions
    assert (decision["action"], decision["rule"], decision["job_id"]) == (
        "exclude_and_restart",
        "ExcludeHostOnHardwareFault",
        JOB,
    ), decision
    assert decision["exclude_hosts"] == [CULPRIT]
    assert decision["outcome"]["standby_host"] == STANDBY
    assert f"standby host {STANDBY}" in decision["reason"]
    ops = [s["op"] for s in decision["outcome"]["steps"]]
    assert ops == ["drain", "in_place", "ack"], decision  # no requeue: the allocation kept
    # Each run's rendezvous: the standby took the culprit's place (node 0), the survivor kept
    # its own; the culprit's command was not started again.
    assert _runs(homes[SURVIVOR]) == ["1 - - 1", f"2 {CULPRIT} {STANDBY} 1"]
    assert _runs(homes[STANDBY]) == [f"1 {CULPRIT} {STANDBY} 0"]
    assert _runs(homes[CULPRIT]) == ["1 - - 0"]
    # The culprit's launcher learns of its exclusion on its own next poll, which may come after
    # the standby's and the survivor's: it says so and waits for the job's end.
    eventually(
        lambda: "excluded" in (homes[CULPRIT] / "launcher.log").read_text(),
        30,
        "the culprit's launcher told of its exclusion",
        homes[CULPRIT] / "launcher.log",
    )
    assert launchers[CULPRIT].poll() is None  # waits for the job's end
    assert api_get(service, "/api/v1/hosts/excluded?format=hostlist").strip() == CULPRIT

    # The ranks train again on the survivor and the standby: the incident resolves.
    def resolved() -> bool:
        incident = api_get(service, f"/api/v1/incidents/{decision['incident_id']}")
        return bool(incident["state"] == "resolved")

    eventually(resolved, 60, "the incident resolved", service.data_dir / "service.log")
    ranks = api_get(service, f"/api/v1/jobs/{JOB}")["ranks"]
    assert sorted({r["host_id"] for r in ranks}) == [SURVIVOR, STANDBY]
    advice = api_get(service, f"/api/v1/jobs/{JOB}/advice")
    assert advice["restart_in_place"] is False and advice["restart_standby_host"] is None
    assert len(api_get(service, "/api/v1/decisions")) == 1  # exactly once
    # The run ends well on the hosts that train; the culprit's launcher ends with the job.
    for host in (SURVIVOR, STANDBY):
        (homes[host] / "stop").write_text("")
        assert launchers[host].wait(timeout=30) == 0
    launchers[CULPRIT].terminate()
    launchers[CULPRIT].wait(timeout=30)
