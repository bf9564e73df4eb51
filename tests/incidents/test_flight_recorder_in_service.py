"""Dumps uploaded by the agents are analysed once complete; the hung rank's host is blamed."""

from __future__ import annotations

import gzip
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from builders import T0, batch, heartbeat, obs
from conftest import auth
from sqlalchemy import select

from sentinel.clock import VirtualClock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Event, Incident
from sentinel.flightrec.models import FrVerdict, RankLocation, VerdictKind
from sentinel.incidents.flightrec import FlightRecorderAnalyzer
from sentinel.incidents.signals import event_signals
from sentinel.knowledge.taxonomy import Category
from sentinel.triage import classify_signals, heartbeat_stall_signal

DUMPS = Path(__file__).parents[1] / "fixtures" / "flight-recorder" / "hang" / "raw"
HOSTS = ["fr-host-a", "fr-host-b"]  # ranks 0-3 on a, 4-7 on b: rank 5 is b's GPU 1


async def test_hung_rank_names_its_host(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> None:
    ctx = app_client.app.state.ctx  # type: ignore[attr-defined]
    agent = auth(tokens["agent"])
    for h, host in enumerate(HOSTS):
        beats = [
            heartbeat(
                job="job-fr",
                rank=h * 4 + g,
                local_rank=g,
                gpu_index=g,
                step=10,
                when=clock.now(),
                world_size=8,
            )
            for g in range(4)
        ]
        assert (
            await app_client.post("/api/v1/reports", json=batch(host, 1, beats), headers=agent)
        ).status_code == 202
    clock.advance(600)
    # The other seven ranks time out in the collective rank 5 never joined...
    for h, host in enumerate(HOSTS):
        logs = [
            obs(
                "log",
                clock.now(),
                source="application",
                job_id="job-fr",
                rank=r,
                message=f"[rank{r}]:[E1128 03:10:00.000 ProcessGroupNCCL.cpp:616] [Rank {r}] "
                "Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7, "
                "OpType=ALLREDUCE, NumelIn=4, NumelOut=4, Timeout(ms)=15000) ran for "
                "15010 milliseconds before timing out.",
            )
            for r in range(h * 4, h * 4 + 4)
            if r != 5
        ]
        await app_client.post("/api/v1/reports", json=batch(host, 2, logs), headers=agent)
    # ...and every rank dumps its flight recorder, which the agents upload.
    for path in sorted(DUMPS.iterdir()):
        rank = int(path.name.rsplit("_", 1)[1])
        r = await app_client.post(
            "/api/v1/flight-recorder/dumps",
            content=gzip.compress(path.read_bytes()),
            params={
                "host_id": HOSTS[rank // 4],
                "rank": rank,
                "job_id": "job-fr",
                "file_name": path.name,
            },
            headers=agent | {"Content-Type": "application/gzip"},
        )
        assert r.status_code == 201, r.text
    async with unit_of_work(ctx.sessions) as s:
        assert await ctx.flight_recorder.run_once(s) == []  # still settling
    clock.advance(11)
    async with unit_of_work(ctx.sessions) as s:
        [verdict] = await ctx.flight_recorder.run_once(s)
        assert verdict.culprit_ranks == [5]
        assert await ctx.flight_recorder.run_once(s) == []  # analysed once
    await ctx.triage_worker.run_once()
    async with unit_of_work(ctx.sessions) as s:
        [incident] = (await s.scalars(select(Incident))).all()
        fr = (await s.scalars(select(Event).where(Event.kind == "fr_verdict"))).one()
    assert fr.host_id == "fr-host-b" and fr.payload["rank"] == 5
    assert incident.category == "nccl_watchdog_timeout"
    assert (incident.culprit_host, incident.culprit_gpu, incident.culprit_rank) == (
        "fr-host-b",
        "1",
        5,
    )
    assert "flight recorder" in incident.reason


def test_the_verdicts_event_names_the_culprits_gpu_to_triage() -> None:
    """What the analyzer writes for a verdict becomes a signal on the culprit rank's host and
    GPU (the job's rank map's, not its local rank), so that the verdict names both: a
    mismatch (a bug) and a hung rank alike."""
    analyzer = FlightRecorderAnalyzer(VirtualClock(T0))
    where = [RankLocation(rank=37, host="fr-host-e", gpu=2)]
    mismatch = FrVerdict(kind=VerdictKind.mismatch, culprit_ranks=[37], culprit_locations=where)
    stuck = FrVerdict(kind=VerdictKind.stuck, culprit_ranks=[37], culprit_locations=where)

    bug = classify_signals(event_signals(Event(**analyzer._event("job", "d1", mismatch))))
    timeouts = [
        heartbeat_stall_signal(host=f"fr-host-{h}", rank=r, seconds=600)
        for r, h in enumerate("abc")
    ]
    hang = classify_signals(
        [*timeouts, *event_signals(Event(**analyzer._event("job", "d2", stuck)))]
    )

    assert bug.category == Category.SOFTWARE_BUG
    assert (bug.culprit_host, bug.culprit_gpu, bug.culprit_rank) == ("fr-host-e", "2", 37)
    assert hang.category == Category.NCCL_WATCHDOG_TIMEOUT
    assert (hang.culprit_host, hang.culprit_gpu, hang.culprit_rank) == ("fr-host-e", "2", 37)


def test_an_unreadable_upload_is_reported_and_the_rest_analysed(tmp_path: Path) -> None:
    from sentinel.flightrec.analyze import analyze_dumps
    from sentinel.incidents.fr_job import _load

    paths = []
    for path in sorted(DUMPS.iterdir()):
        rank = int(path.name.rsplit("_", 1)[1])
        data = path.read_bytes() if rank != 2 else b"\x80\x02garbage"
        stored = tmp_path / f"{rank}.gz"
        stored.write_bytes(gzip.compress(data))
        paths.append((rank, str(stored)))

    dump_set, errors = _load(paths)

    assert [e.split(":")[0] for e in errors] == ["rank 2"]
    assert sorted(d.rank for d in dump_set.dumps if d.rank is not None) == [0, 1, 3, 4, 5, 6, 7]
    assert analyze_dumps(dump_set).culprit_ranks == [5]


async def test_a_job_whose_dumps_cannot_be_read_fails_alone(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> None:
    """Job "a-bad" sorts first and its only dump is hostile (a memo index that once made
    the unpickler zero 32 GB): it gets an fr_error event and a failure counted, and
    "b-good", after it, is analysed and its verdict written; neither is tried again. The
    API lists each job's analysis: the failure (on no host, which the hosts' observations
    cannot show) with its reason, the verdict with its culprit."""
    ctx = app_client.app.state.ctx  # type: ignore[attr-defined]
    ctx.flight_recorder._metrics = ctx.metrics  # until app.py passes metrics= itself
    agent = auth(tokens["agent"])
    # LONG_BINPUT 2**31-1: before the size checks, a 32 GB memo table
    uploads = [("a-bad", 0, gzip.compress(b"\x80\x02}r\xff\xff\xff\x7f."))] + [
        ("b-good", int(p.name.rsplit("_", 1)[1]), gzip.compress(p.read_bytes()))
        for p in sorted(DUMPS.iterdir())
    ]
    for job, rank, body in uploads:
        r = await app_client.post(
            "/api/v1/flight-recorder/dumps",
            content=body,
            params={
                "host_id": HOSTS[rank // 4],
                "rank": rank,
                "job_id": job,
                "file_name": f"nccl_trace_rank_{rank}",
            },
            headers=agent | {"Content-Type": "application/gzip"},
        )
        assert r.status_code == 201, r.text
    clock.advance(11)

    async with unit_of_work(ctx.sessions) as s:
        [verdict] = await ctx.flight_recorder.run_once(s)
    assert verdict.culprit_ranks == [5]
    bad, good = ctx.flight_recorder.last_round
    assert bad.job_id == "a-bad" and bad.failure is not None
    assert bad.failure.reason == "unreadable_dump"
    assert good.job_id == "b-good" and good.verdict is verdict
    async with unit_of_work(ctx.sessions) as s:
        assert await ctx.flight_recorder.run_once(s) == []  # neither is tried again
        assert ctx.flight_recorder.last_round == []
        [err] = (await s.scalars(select(Event).where(Event.kind == "fr_error"))).all()
        [fr] = (await s.scalars(select(Event).where(Event.kind == "fr_verdict"))).all()
    assert (err.job_id, err.payload["reason"]) == ("a-bad", "unreadable_dump")
    assert "could be read" in err.payload["text"]
    assert fr.job_id == "b-good"
    failures = ctx.metrics.flightrec_failures.labels(reason="unreadable_dump")
    assert failures._value.get() == 1

    async def listed(**params: str) -> list[dict[str, Any]]:
        r = await app_client.get(
            "/api/v1/flight-recorder/analyses", params=params, headers=auth(tokens["viewer"])
        )
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    [failed] = await listed(job_id="a-bad")
    assert err.host_id == "-"
    assert (failed["event_id"], failed["kind"]) == (str(err.id), "fr_error")
    assert (failed["reason"], failed["dumps"], failed["verdict"]) == ("unreadable_dump", 1, None)
    assert "none of 1 dump(s) could be read" in failed["summary"]
    [analysed] = await listed(job_id="b-good")
    assert (analysed["event_id"], analysed["kind"]) == (str(fr.id), "fr_verdict")
    assert analysed["verdict"]["culprit_ranks"] == [5]
    assert datetime.fromisoformat(analysed["observed_at"]) == clock.now()
    assert {a["job_id"] for a in await listed()} == {"a-bad", "b-good"}
    assert await listed(job_id="no-such-job") == []


def test_an_analysis_over_its_budget_or_time_fails_as_a_recorded_reason(tmp_path: Path) -> None:
    from sentinel.incidents.flightrec import FrJobFailure, analyse_isolated

    paths = []
    for path in sorted(DUMPS.iterdir()):
        stored = tmp_path / f"{path.name}.gz"
        stored.write_bytes(gzip.compress(path.read_bytes()))
        paths.append((int(path.name.rsplit("_", 1)[1]), str(stored)))

    verdict, errors = analyse_isolated(paths, {}, timeout_s=120)
    assert verdict.culprit_ranks == [5] and errors == []
    # 1 MB over the imports: polars cannot even start its tables
    try:
        analyse_isolated(paths, {}, memory_budget_bytes=2**20, timeout_s=120)
    except FrJobFailure as failure:
        assert failure.reason in ("memory", "worker_died"), failure
    else:
        raise AssertionError("the analysis fitted in 1 MB")
    try:
        analyse_isolated(paths, {}, timeout_s=0.001)
    except FrJobFailure as failure:
        assert failure.reason == "timeout", failure
    else:
        raise AssertionError("the analysis ran in 1 ms")
