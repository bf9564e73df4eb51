"""The flight recorder end to end, through real processes: a 64-rank job's dumps on 8 hosts
become one software-bug incident naming the rank that called a collective wrongly.

The path users run: PyTorch's flight-recorder dumps appear on each host -> the agent process
tailing that host's dump directory uploads them (the job id from the heartbeats it folds) ->
the service process stores them -> once they settle, the leader's flight-recorder loop analyses
the job's dumps in a process of its own, which parses them in a pool of processes that write
the parsed tables to spill files (64 ranks and 2 workers) -> an ``fr_verdict`` event on the
culprit's host and GPU (from the rank map the heartbeats built) -> triage -> one incident
naming that host and GPU -> the REST API. The verdict is the one ``sentinel fr analyze --json``
gives on the same files.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from agent_helpers import (
    agent_process_config,
    api_get,
    eventually,
    service_observations,
    start_agent,
)
from fr_cli import cli_verdict

from sentinel.flightrec.pool_settings import pooled
from sentinel.flightrec.synth import DUMP_PREFIX, Layout, Plan, write_dumps
from sentinel_agent.heartbeat import Heartbeat
from tests.harness.service import LiveService

JOB = "job-fr-e2e"
PER_HOST = 8  # the layout's tp: a host's ranks are one tensor-parallel group
HOSTS = [f"fr-e2e-{h}" for h in range(8)]
WORLD = PER_HOST * len(HOSTS)
CULPRIT = 37  # calls the final all_reduce with another size: a collective mismatch
PLAN = Plan(Layout(WORLD, tp=PER_HOST), entries=200, kind="mismatch", culprit=CULPRIT)
FR_WORKERS = 2  # the service's parsing processes per analysis
FR_SETTLE_S = 3.0  # the service analyses a job once its uploads have been quiet this long


def _host_of(rank: int) -> str:
    return HOSTS[rank // PER_HOST]


def _gpu_of(rank: int) -> int:
    # Not the local rank (CUDA_VISIBLE_DEVICES reversed): the GPU the verdict names can only
    # come from the ranks' heartbeats.
    return PER_HOST - 1 - rank % PER_HOST


@pytest.fixture
def fr_service(tmp_path: Path) -> Iterator[LiveService]:
    """The real service on SQLite, analysing flight-recorder dumps soon after they settle,
    with its temporary directory (where each analysis keeps its spill files) the test's."""
    data = tmp_path / "service"
    scratch = tmp_path / "service-tmp"
    scratch.mkdir()
    service = LiveService(
        database_url=f"sqlite:///{data / 'sentinel.db'}",
        data_dir=data,
        extra_env={
            "SENTINEL_TRIAGE__FR_SETTLE_S": str(FR_SETTLE_S),
            "SENTINEL_TRIAGE__FR_WORKERS": str(FR_WORKERS),
            "TMPDIR": str(scratch),
        },
    )
    service.start()
    yield service
    service.stop()


class _Ranks:
    """The job's 64 ranks, each beating through its host's agent socket, still training (the
    step advancing) so that the flight recorder is the job's only news, not a hang."""

    def __init__(self, sockets: dict[str, Path]) -> None:
        self._beats = [
            Heartbeat(
                JOB,
                rank,
                rank % PER_HOST,
                WORLD,
                gpu_index=_gpu_of(rank),
                address=f"unix://{sockets[_host_of(rank)]}",
            )
            for rank in range(WORLD)
        ]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ranks", daemon=True)

    def _run(self) -> None:
        step = 0
        while not self._stop.is_set():
            step += 1
            for hb in self._beats:
                hb.beat(step)
            self._stop.wait(0.5)

    def __enter__(self) -> _Ranks:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _job_ranks(service: LiveService) -> list[dict[str, Any]]:
    try:
        job = api_get(service, f"/api/v1/jobs/{JOB}")
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            return []
        raise
    return list(job["ranks"])


def _dumps(service: LiveService) -> dict[str, list[dict[str, Any]]]:
    """Each host's stored flight_recorder_dump observations (the agents' upload receipts)."""
    return {h: service_observations(service, h, "flight_recorder_dump") for h in HOSTS}


def _verdicts(service: LiveService) -> list[dict[str, Any]]:
    """The fr_verdict events on the job's hosts. (One that names no culprit, like an fr_error
    event, is on host '-', which only GET /api/v1/flight-recorder/analyses lists.)"""
    return [o for h in HOSTS for o in service_observations(service, h, "fr_verdict")]


def _analyses_failed(service: LiveService) -> float:
    """sentinel_flightrec_failures_total over its reasons: analyses that failed, and dumps
    left out of one as unreadable."""
    text = api_get(service, "/metrics")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("sentinel_flightrec_failures_total{")
    )


@pytest.mark.slow
def test_dumps_on_hosts_become_one_incident_naming_the_culprit_rank(
    fr_service: LiveService, tmp_path: Path, agent_processes: list[subprocess.Popen[bytes]]
) -> None:
    # Guard: 64 dumps and the service's workers are read by the pool, which spills its
    # tables; if the threshold moves, this test no longer covers that path: say so.
    assert pooled(WORLD, FR_WORKERS), "64 dumps are no longer parsed by the pool: raise WORLD"
    service_log = fr_service.data_dir / "service.log"
    dump_dirs: dict[str, Path] = {}
    sockets: dict[str, Path] = {}
    for host in HOSTS:
        home = tmp_path / host
        home.mkdir()
        dump_dirs[host] = home / "fr"
        sockets[host] = home / "hb.sock"
        config = home / "agent.yaml"
        settings = agent_process_config(
            home,
            fr_service,
            host,
            **{
                "collectors.heartbeat": {"enabled": True, "address": f"unix://{sockets[host]}"},
                "collectors.flight_recorder": {
                    "enabled": True,
                    "prefix": str(dump_dirs[host] / DUMP_PREFIX),
                    "settle_s": 0.5,
                },
                # Eight agents on a small machine: modest intervals.
                "intervals.heartbeat_s": 1.0,
                "intervals.flight_recorder_s": 0.5,
                "intervals.status_s": 2.0,
                "intervals.send_s": 0.5,
            },
        )
        config.write_text(yaml.safe_dump(settings))
        agent_processes.append(start_agent(config, home / "agent.log"))
    for host in HOSTS:
        eventually(partial(service_observations, fr_service, host), 60, f"{host}'s agent")
        eventually(sockets[host].exists, 30, f"{host}'s heartbeat socket")

    staged = tmp_path / "all-dumps"  # every rank's file, for the CLI
    write_dumps(PLAN, staged)
    files = {rank: (staged / f"{DUMP_PREFIX}{rank}").read_bytes() for rank in range(WORLD)}
    with _Ranks(sockets):
        # The service knows where every rank runs (and the agents know the job) before any
        # dump appears.
        ranks = eventually(
            lambda: (r := _job_ranks(fr_service)) and len(r) == WORLD and r,
            60,
            "the job's 64 ranks",
            service_log,
        )
        assert {(r["rank"], r["host_id"], r["gpu_index"]) for r in ranks} == {
            (rank, _host_of(rank), _gpu_of(rank)) for rank in range(WORLD)
        }
        # The job hits its watchdog timeout: every rank dumps on its own host.
        for rank, data in files.items():
            dump_dirs[_host_of(rank)].mkdir(exist_ok=True)
            (dump_dirs[_host_of(rank)] / f"{DUMP_PREFIX}{rank}").write_bytes(data)

        eventually(
            lambda: sum(map(len, _dumps(fr_service).values())) >= WORLD,
            90,
            "every dump uploaded",
            service_log,
        )
        eventually(
            lambda: _verdicts(fr_service) or _analyses_failed(fr_service),
            90,
            "the flight recorder's verdict",
            service_log,
        )
        assert _analyses_failed(fr_service) == 0, service_log.read_text()[-4000:]
        incidents = eventually(
            lambda: api_get(fr_service, "/api/v1/incidents", job_id=JOB),
            60,
            "an incident for the job",
            service_log,
        )
        time.sleep(2.0)  # a second upload, verdict or incident for the same fault shows now
        dumps = _dumps(fr_service)
        verdicts = _verdicts(fr_service)
        incidents = api_get(fr_service, "/api/v1/incidents", job_id=JOB)
        failed = _analyses_failed(fr_service)

    # 1. Every dump arrived once, from the host it was written on, with the job's id.
    for host, stored in dumps.items():
        got = sorted((o["data"]["rank"], o["data"]["sha256"]) for o in stored)
        want = [
            (rank, hashlib.sha256(files[rank]).hexdigest())
            for rank in range(WORLD)
            if _host_of(rank) == host
        ]
        assert got == want, host
        assert {o["data"]["job_id"] for o in stored} == {JOB}, host

    # 2. One verdict: the planted rank, located where its heartbeats came from, and otherwise
    # what the CLI says on the same files.
    assert failed == 0
    [event] = verdicts
    verdict = event["data"]["verdict"]
    assert (verdict["kind"], verdict["culprit_ranks"]) == ("mismatch", [CULPRIT])
    assert verdict["culprit_locations"] == [
        {"rank": CULPRIT, "host": _host_of(CULPRIT), "gpu": _gpu_of(CULPRIT)}
    ]
    assert event["data"]["rank"] == CULPRIT
    assert service_observations(fr_service, _host_of(CULPRIT), "fr_verdict") == [event]
    # The job's analyses, as operators read them: this one verdict.
    [analysis] = api_get(fr_service, "/api/v1/flight-recorder/analyses", job_id=JOB)
    assert (analysis["event_id"], analysis["kind"]) == (event["id"], "fr_verdict")
    assert analysis["verdict"] == verdict
    # The CLI has no rank map (it cannot know hosts or GPUs): its locations are empty, the
    # rest must be the same.
    cli = cli_verdict(staged)
    assert cli["culprit_locations"] == [] and cli["victim_locations"] == []
    assert verdict["victim_locations"] == []  # a mismatch has no victims in this plan
    assert {**verdict, "culprit_locations": []} == cli

    # 3. One software-bug incident, on the culprit's host and GPU (the heartbeats', not its
    # local rank), with the verdict as its evidence.
    [incident] = incidents
    culprit = tuple(incident[f"culprit_{part}"] for part in ("host", "gpu", "rank"))
    assert culprit == (_host_of(CULPRIT), str(_gpu_of(CULPRIT)), CULPRIT), incident
    assert incident["category"] == "software_bug", incident
    detail = api_get(fr_service, f"/api/v1/incidents/{incident['id']}")
    assert event["id"] in {e["event_id"] for e in detail["verdict"]["evidence"]}, detail
    assert api_get(fr_service, "/api/v1/incidents") == incidents  # nothing for another job

    # The analysis's directory for the spilled tables is gone with it.
    assert not list((tmp_path / "service-tmp").glob("sentinel-fr-job-*"))
