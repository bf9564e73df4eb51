"""The demo's jobs: disjoint hosts, which job a fault may interrupt, spreads within the job."""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from rich.console import Console

from sentinel.demo.faults import FAULTS, Fault
from sentinel.demo.run import DOWN_AT_LEAST_S, JOB, RACK, Demo, Job, layout, pick_job


def demo(tmp_path: Path, hosts: int = 256, jobs: int = 8) -> Demo:
    d = Demo(
        hosts=hosts,
        port=0,
        data_dir=tmp_path,
        duration_s=None,
        fault_every_s=15.0,
        seed=1,
        console=Console(quiet=True),
        jobs=jobs,
    )
    for h in range(d.agents):
        d.logs(d.host(h))[0].parent.mkdir(parents=True, exist_ok=True)
    return d


def fault(spread: str) -> Fault:
    return next(f for f in FAULTS if f.spread == spread)


def test_layout_splits_real_and_light_hosts_over_disjoint_jobs() -> None:
    jobs = layout(256, 256, 8)
    assert jobs == [tuple(range(32 * k, 32 * (k + 1))) for k in range(8)]
    big = layout(2048, 256, 8)
    assert sorted(h for j in big for h in j) == list(range(2048))
    for k, j in enumerate(big):  # each: 32 hosts with a real agent first, then 224 light ones
        assert j[:32] == tuple(range(32 * k, 32 * (k + 1)))
        assert all(h >= 256 for h in j[32:]) and len(j) == 256
    assert layout(32, 32, 1) == [tuple(range(32))]
    with pytest.raises(ValueError):
        layout(256, 256, 0)
    with pytest.raises(ValueError):
        layout(4, 4, 5)


def test_one_job_is_todays_demo(tmp_path: Path) -> None:
    d = demo(tmp_path, hosts=32, jobs=1)
    (job,) = d.sims
    assert (job.name, job.hosts, job.agents, job.world_size) == (JOB, tuple(range(32)), 32, 256)
    injection = d.inject(random.Random(3), fault("all"), job)
    assert injection.job_id == JOB and len(injection.hosts) == 32


def test_a_fault_goes_to_a_running_job_not_hit_recently() -> None:
    now, gap, resumed = 1000.0, 60.0, 20.0
    fresh = Job(name="fresh")  # never hit, training since the start
    rested = Job(name="rested", last_fault=now - 61, running_since=now - 30)
    stalled = Job(name="stalled", stalled_since=now - 100, last_fault=now - 100)
    restarting = Job(name="restarting", restart_at=now + 3, stalled_since=now - 80)
    recent = Job(name="recent", last_fault=now - 59, running_since=now - 30)
    just_back = Job(name="just back", last_fault=now - 100, running_since=now - 5)
    jobs = [fresh, rested, stalled, restarting, recent, just_back]
    for j in jobs:
        j.agents = 32
    rng = random.Random(7)
    picks = Counter(
        getattr(pick_job(rng, jobs, now, gap, resumed), "name", None) for _ in range(2000)
    )
    assert set(picks) == {"fresh", "rested"}
    assert abs(picks["fresh"] - picks["rested"]) < 200  # uniform among the eligible
    assert pick_job(rng, [stalled, restarting, recent, just_back], now, gap, resumed) is None
    assert pick_job(rng, jobs, now + 60, gap, resumed) is not None


def test_a_job_stays_down_until_its_restart_then_advances() -> None:
    job = Job(hosts=tuple(range(4)), agents=4)
    job.tick(0.0, steps=60)
    assert (job.step, job.checkpoint) == (60, 50)
    job.interrupt(100.0, 1e9)
    job.tick(105.0, steps=5)
    assert job.step == 60 and not job.running
    # Decided at once: back 5 s later, yet never before the service could see it stopped.
    assert job.restart_after(101.0, 5.0)
    assert job.restart_at == 100.0 + DOWN_AT_LEAST_S
    assert not job.restart_after(102.0, 5.0)  # already coming back
    job.tick(100.0 + DOWN_AT_LEAST_S, steps=5)
    assert job.running and job.step == 55 and job.restarts == 1
    assert job.running_since == 100.0 + DOWN_AT_LEAST_S
    job.tick(200.0, steps=5)
    assert job.step == 60  # every beat moves the step: the incident's resolve rule sees it
    assert not job.restart_after(201.0, 5.0)  # not down


@pytest.mark.parametrize("hosts", [256, 2048])
def test_spreads_stay_within_the_job(tmp_path: Path, hosts: int) -> None:
    d = demo(tmp_path, hosts=hosts)
    rng = random.Random(11)
    for job in d.sims:
        mine = {d.host(h) for h in job.hosts[: job.agents]}  # its hosts with a real agent
        for spread in ("culprit", "rack", "all"):
            f = fault(spread)
            inj = d.inject(rng, f, job)
            assert inj.job_id == job.name and set(inj.hosts) <= mine
            assert not job.running  # interrupted
            if spread == "culprit":
                assert inj.hosts == (inj.culprit,) and inj.culprit in mine
            elif spread == "rack":
                local = sorted(job.hosts.index(int(h[4:])) for h in inj.hosts)
                assert len(local) == RACK and local[0] % RACK == 0
                assert local == list(range(local[0], local[0] + RACK))
            else:
                assert set(inj.hosts) == mine and len(mine) == 32
            job.stalled_since = job.stalled_at = None
    # Ranks in the lines are the job's own: local host index x 8 + GPU, below its world size.
    job = d.sims[5]
    inj = d.inject(rng, fault("all"), job)
    text = (tmp_path / "logs" / inj.hosts[-1] / "train.log").read_text()
    assert {int(r) for r in re.findall(r"\[rank(\d+)\]", text)} <= set(range(31 * 8, 32 * 8))


def test_a_decision_restarts_its_own_job_only_if_made_after_the_fault(tmp_path: Path) -> None:
    d = demo(tmp_path)
    a, b = d.sims[2], d.sims[3]
    d.inject(random.Random(1), fault("culprit"), a)
    d.inject(random.Random(2), fault("culprit"), b)
    assert a.stalled_at is not None
    made = datetime.fromtimestamp(a.stalled_at + 1, UTC).isoformat()
    before = datetime.fromtimestamp(a.stalled_at - 30, UTC).isoformat()
    d._restart_after({"job_id": a.name, "action": "restart", "created_at": before}, {})
    assert a.restart_at is None  # a late word on an older incident of the job
    d._restart_after({"job_id": None, "action": "escalate", "created_at": made}, {"job_id": a.name})
    assert a.restart_at is not None and b.restart_at is None
    assert a.stalled_since is not None
    assert a.restart_at >= a.stalled_since + 30.0 - 1  # a human decides: 30 s


def test_light_hosts_beat_for_their_job(tmp_path: Path) -> None:
    d = demo(tmp_path, hosts=2048)
    job = d.sims[3]
    h = job.hosts[40]  # a light host (the job's 32 real-agent hosts come first)
    assert h >= 256

    def heartbeats(seq: int) -> list[dict[str, Any]]:
        observations = cast(list[dict[str, Any]], d._light_batch(h, seq)["observations"])
        return [o for o in observations if o["kind"] == "heartbeat"]

    beats = heartbeats(1)
    assert {b["job_id"] for b in beats} == {job.name}
    assert sorted(b["rank"] for b in beats) == list(range(40 * 8, 41 * 8))
    assert {b["world_size"] for b in beats} == {256 * 8}
    job.interrupt(0.0, 0.0)  # a stalled job's ranks do not beat
    assert not heartbeats(2)
