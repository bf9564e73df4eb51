"""The watchdogs on the virtual clock: stragglers named with host and GPU, silent hosts, hangs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from builders import batch, gpu_sample, heartbeat
from conftest import auth
from sqlalchemy import select

from sentinel.clock import VirtualClock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Event, Incident


async def _post_beats(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    clock: VirtualClock,
    seq: int,
    slow: dict[int, float] | None = None,
    step: int = 100,
    hosts: tuple[str, ...] = ("w1", "w2"),
    **fields: Any,
) -> None:
    for h, host in enumerate(hosts):
        beats = [
            heartbeat(
                rank=h * 8 + g,
                gpu_index=g,
                step=step,
                when=clock.now(),
                step_time_s=(slow or {}).get(h * 8 + g, 2.0),
                **fields,
            )
            for g in range(8)
        ]
        r = await client.post(
            "/api/v1/reports",
            json=batch(host, seq, beats, clock.now()),
            headers=auth(tokens["agent"]),
        )
        assert r.status_code == 202


async def _sweep(client: httpx.AsyncClient) -> list[Event]:
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    async with unit_of_work(ctx.sessions) as s:
        await ctx.watchdog.run_once(s)
        return list((await s.scalars(select(Event).order_by(Event.kind))).all())


async def _triage(client: httpx.AsyncClient) -> Incident:
    """Triage weighs what the sweeps wrote: the one incident it opens."""
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    await ctx.triage_worker.run_once()
    async with unit_of_work(ctx.sessions) as s:
        return (await s.scalars(select(Incident))).one()


async def test_a_straggler_is_named_with_host_and_gpu(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> None:
    await _post_beats(app_client, tokens, clock, 1, slow={13: 6.5})
    events = await _sweep(app_client)
    [straggler] = [e for e in events if e.kind == "straggler"]
    assert (straggler.host_id, straggler.gpu_index, straggler.payload["rank"]) == ("w2", 5, 13)
    assert "6.50 s vs median 2.00 s" in straggler.payload["text"]
    assert len([e for e in await _sweep(app_client) if e.kind == "straggler"]) == 1  # once
    incident = await _triage(app_client)
    assert (incident.culprit_host, incident.culprit_gpu, incident.culprit_rank) == ("w2", "5", 13)


async def test_a_hang_and_a_silent_host_become_signals(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> None:
    await _post_beats(app_client, tokens, clock, 1)
    clock.advance(10)
    await _post_beats(app_client, tokens, clock, 2, step=105)
    assert not [e for e in await _sweep(app_client) if e.kind == "heartbeat_stall"]
    # Only w1's agent keeps reporting, and no rank advances: a hang; later w2 is silent.
    for n in range(7):
        clock.advance(10)
        await _post_beats(app_client, tokens, clock, 3 + n, step=105, hosts=("w1",))
    events = await _sweep(app_client)
    stall = [e for e in events if e.kind == "heartbeat_stall" and e.host_id == "-"]
    # w1 kept reporting with no progress: its 8 ranks hang. w2's ranks are the silent-host
    # watchdog's (nothing it said arrived, so nothing says they stopped).
    assert stall and stall[0].payload["ranks_stalled"] == 8
    [silent] = [e for e in events if e.kind == "host_silent"]
    assert silent.host_id == "w2" and silent.payload["seconds"] > 60


async def _beat_hosts(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    clock: VirtualClock,
    seq: int,
    steps: dict[str, int],
) -> None:
    """Each named host's 8 ranks (host wN has ranks 8N..8N+7) at a step."""
    for host, step in steps.items():
        first = int(host[1:]) * 8
        beats = [
            heartbeat(rank=first + g, gpu_index=g, step=step, when=clock.now()) for g in range(8)
        ]
        r = await client.post(
            "/api/v1/reports",
            json=batch(host, seq, beats, clock.now()),
            headers=auth(tokens["agent"]),
        )
        assert r.status_code == 202


async def test_the_host_whose_ranks_stopped_first_is_named_with_its_step_and_time(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> None:
    start = clock.now()
    await _beat_hosts(app_client, tokens, clock, 1, {"w1": 100, "w2": 100, "w3": 100})
    clock.advance(5)
    await _beat_hosts(app_client, tokens, clock, 2, {"w3": 101})
    # w3's ranks beat no more (its agent still reports its GPUs); w1 and w2 keep stepping
    # for 15 s more.
    for n, step in enumerate((105, 110)):
        clock.advance(10)
        await _beat_hosts(app_client, tokens, clock, 3 + n, {"w1": step, "w2": step})
        r = await app_client.post(
            "/api/v1/reports",
            json=batch("w3", 3 + n, [gpu_sample(0, clock.now())], clock.now()),
            headers=auth(tokens["agent"]),
        )
        assert r.status_code == 202
    clock.advance(5)
    events = await _sweep(app_client)
    [first] = [e for e in events if e.kind == "heartbeat_stall" and e.host_id != "-"]
    assert (first.host_id, first.gpu_index, first.payload["rank"]) == ("w3", 0, 24)
    assert first.payload["stopped_first"] == {
        "step": 101,
        "at": (start + timedelta(seconds=5)).isoformat(),
        "rest_step": 110,
        "rest_at": (start + timedelta(seconds=25)).isoformat(),
    }
    # The hang is blamed on that rank: its host and its GPU (the job's rank map's).
    incident = await _triage(app_client)
    assert incident.category == "nccl_watchdog_timeout"
    assert (incident.culprit_host, incident.culprit_gpu, incident.culprit_rank) == ("w3", "0", 24)


async def test_a_job_whose_ranks_all_stop_together_names_no_host(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> None:
    await _post_beats(app_client, tokens, clock, 1, step=100)
    clock.advance(30)
    await _post_beats(app_client, tokens, clock, 2, step=100)
    events = [e for e in await _sweep(app_client) if e.kind == "heartbeat_stall"]
    assert [e.host_id for e in events] == ["-"]


async def test_reports_held_back_by_the_service_are_not_a_hang(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> None:
    """A host whose agent backs off (the service shed its uploads) reports late: its ranks' last
    steps are old because nothing newer has arrived yet, not because they stopped."""
    for n in range(3):
        await _post_beats(app_client, tokens, clock, 1 + n, step=100 + 5 * n)
        clock.advance(5)
    # w2's agent is told to retry later: 18 s pass with only w1's reports arriving...
    for n in range(3):
        clock.advance(6)
        await _post_beats(app_client, tokens, clock, 4 + n, step=115 + 5 * n, hosts=("w1",))
    assert not [e for e in await _sweep(app_client) if e.kind == "heartbeat_stall"]
    # ...then w2's held-back batch arrives, its ranks having advanced all along.
    await _post_beats(app_client, tokens, clock, 7, step=130)
    assert not [e for e in await _sweep(app_client) if e.kind == "heartbeat_stall"]


async def test_a_late_first_batch_with_old_readings_is_not_a_hang(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> None:
    """At start-up w2's first batch is shed and arrives 12 s late: its beats and GPU samples
    are as old as the batch. It was received just now, but it observed nothing recent."""
    start = clock.now()
    await _post_beats(app_client, tokens, clock, 1, step=5, hosts=("w1",))
    for n in range(1, 4):
        clock.advance(5)
        await _post_beats(app_client, tokens, clock, 1 + n, step=5 + 5 * n, hosts=("w1",))
    late = [
        heartbeat(rank=8 + g, gpu_index=g, step=5, when=start, step_time_s=2.0) for g in range(8)
    ]
    late += [gpu_sample(g, start) for g in range(8)]
    r = await app_client.post(
        "/api/v1/reports", json=batch("w2", 1, late, start), headers=auth(tokens["agent"])
    )
    assert r.status_code == 202
    clock.advance(1)
    assert not [e for e in await _sweep(app_client) if e.kind == "heartbeat_stall"]


async def test_a_hang_needs_news_from_most_of_the_jobs_hosts(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> None:
    """The soak's three phantom hangs: the load generator stalled for 18 s on a loaded machine;
    two hosts' GPU samples got through, 30 hosts told nothing. Sixteen ranks looked stalled, but
    missing news from most of the job is not a hang; once most hosts report, it is."""
    hosts = tuple(f"w{i}" for i in range(1, 9))
    await _post_beats(app_client, tokens, clock, 1, step=100, hosts=hosts)
    clock.advance(20)
    for seq, host in enumerate(hosts[:3], start=2):  # 3 of 8 hosts report their GPUs
        r = await app_client.post(
            "/api/v1/reports",
            json=batch(host, seq, [gpu_sample(0, clock.now())], clock.now()),
            headers=auth(tokens["agent"]),
        )
        assert r.status_code == 202
    assert not [e for e in await _sweep(app_client) if e.kind == "heartbeat_stall"]
    for seq, host in enumerate(hosts[3:6], start=5):  # now 6 of 8: the ranks really stopped
        r = await app_client.post(
            "/api/v1/reports",
            json=batch(host, seq, [gpu_sample(0, clock.now())], clock.now()),
            headers=auth(tokens["agent"]),
        )
        assert r.status_code == 202
    stalls = [e for e in await _sweep(app_client) if e.kind == "heartbeat_stall"]
    assert [e.host_id for e in stalls] == ["-"]
    assert stalls[0].payload["ranks_stalled"] == 48


async def test_a_blocking_checkpoint_save_is_not_a_hang(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> None:
    """The ranks measured their blocking checkpoint save at 30 s (the heartbeat's
    checkpoint_save_s): standing still at a save for 45 s, past the 15 s the heartbeat
    interval allows, is the save; standing still for over twice that is a hang."""

    async def beat(seq: int, step: int) -> None:
        await _post_beats(
            app_client, tokens, clock, seq, step=step, checkpoint_step=step, checkpoint_save_s=30.0
        )

    await beat(1, 100)
    for n in range(3):  # the agents report on (their GPUs, the beats they hold): no progress
        clock.advance(15)
        await beat(2 + n, 100)
    assert not [e for e in await _sweep(app_client) if e.kind == "heartbeat_stall"]
    clock.advance(20)  # 65 s standing still: over twice the longest save
    await beat(5, 100)
    stalls = [e for e in await _sweep(app_client) if e.kind == "heartbeat_stall"]
    assert [e.host_id for e in stalls] == ["-"]
    assert "for over 60 s" in stalls[0].payload["text"]
