"""A value the database cannot store is refused at the wire (422 naming it), never a 503 forever.

Issue 14, finding 1: such batches passed validation, got 503 from the database, and the agent
resent them for ever; in a group commit they also made their neighbours be re-committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from builders import T0, batch, gpu_sample, heartbeat, obs, xid
from conftest import auth
from sqlalchemy.exc import DataError

from sentinel.auth import TokenSpec
from sentinel.clock import VirtualClock
from sentinel.ingest import service as ingest_service
from sentinel.runtime.app import create_app
from sentinel.settings import Settings

Mutation = Callable[[dict[str, Any]], None]

# (what is changed, the field the answer must name)
UNSTORABLE: list[tuple[Mutation, str]] = [
    (lambda b: b.update(seq=2**63), "seq"),
    (lambda b: b["observations"].append(gpu_sample(ecc_volatile_uncorrected=2**63)), "ecc"),
    (lambda b: b["observations"].append(gpu_sample(clock_event_reasons=2**64 - 1)), "clock"),
    (lambda b: b["observations"].append(heartbeat(step=2**63)), "step"),
    (lambda b: b["observations"].append(heartbeat(checkpoint_step=2**63)), "checkpoint_step"),
    (lambda b: b["observations"].append(heartbeat(rank=2**31)), "rank"),
    (lambda b: b["observations"].append(heartbeat(local_rank=2**31)), "local_rank"),
    (lambda b: b["observations"].append(heartbeat(world_size=2**31)), "world_size"),
    (
        lambda b: b["observations"].append(
            obs("xid", xid=79) | {"observed_at": "0001-01-01T00:00:00+01:00"}
        ),
        "observed_at",
    ),
    (lambda b: b.update(sent_at="9999-12-31T23:30:00-01:00"), "sent_at"),
    (
        lambda b: b["observations"].append(
            heartbeat() | {"last_beat_at": "0001-01-01T00:59:59+01:00"}
        ),
        "last_beat_at",
    ),
    (lambda b: b["observations"].append(xid(79, message="NVRM: Xid\x00")), "message"),
    (
        lambda b: b["observations"].append(obs("log", source="kernel", message="oops\x00")),
        "message",
    ),
    (
        lambda b: b["observations"].append(obs("agent_status", version="1.0\x00")),
        "version",
    ),
]


@pytest.mark.slow
def test_unstorable_values_are_refused_by_name_and_the_host_moves_on(start_service) -> None:  # type: ignore[no-untyped-def]
    service = start_service()
    headers = service.headers("agent")
    with httpx.Client(base_url=service.url, timeout=10) as client:
        for n, (mutate, needle) in enumerate(UNSTORABLE, start=1):
            body = batch(host="h001", seq=n)
            mutate(body)
            r = client.post("/api/v1/reports", json=body, headers=headers)
            assert r.status_code == 422, (needle, r.status_code, r.text)
            assert needle in r.json()["detail"], (needle, r.text)
        # The host is not blocked: its next batch is stored.
        r = client.post(
            "/api/v1/reports",
            json=batch(host="h001", seq=1000, observations=[xid(79), heartbeat(rank=2**31 - 1)]),
            headers=headers,
        )
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 2


@pytest.fixture
def settings(db_url: str, tokens: dict[str, str], tmp_path: Path) -> Settings:
    # A long linger so that concurrent posts share one group commit.
    return Settings(
        data_dir=tmp_path / "data",
        database={"url": db_url},  # type: ignore[arg-type]
        run_loops=False,
        ingest={"linger_ms": 200},  # type: ignore[arg-type]
        auth={"tokens": [TokenSpec(name=r, role=r, token=t) for r, t in tokens.items()]},  # type: ignore[arg-type]
    )


async def test_a_batch_the_database_refuses_never_costs_its_neighbours(
    settings: Settings, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    groups: list[list[str]] = []
    store = ingest_service.store_group

    async def store_refusing_poison(session: Any, items: Any) -> None:
        groups.append([it.batch.host_id for it in items])
        if any(it.batch.host_id == "poison" for it in items):
            # What a driver raises for a value its column cannot hold.
            raise DataError("INSERT ...", {}, ValueError("value out of range"))
        await store(session, items)

    monkeypatch.setattr(ingest_service, "store_group", store_refusing_poison)
    app = create_app(settings, VirtualClock(T0))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sentinel") as client:
            poison = batch(host="poison", seq=1, observations=[xid(79)])

            async def post(host: str, seq: int) -> httpx.Response:
                # The agent resends a batch byte for byte.
                body = poison if host == "poison" else batch(host, seq, [xid(79)])
                return await client.post(
                    "/api/v1/reports", json=body, headers=auth(tokens["agent"])
                )

            hosts = [f"h{n:03d}" for n in range(5)]
            first = await asyncio.gather(post("poison", 1), *(post(h, 1) for h in hosts))
            assert [r.status_code for r in first[1:]] == [202] * 5
            # Its own error, one the agent does not retry: the bytes will never be storable.
            assert first[0].status_code == 422, first[0].text
            assert "cannot store" in first[0].json()["detail"]
            groups.clear()
            # The agent resends it with its neighbours' next batches: they are committed once,
            # together, and it gets its answer again without joining them.
            again = await asyncio.gather(post("poison", 1), *(post(h, 2) for h in hosts))
            assert [r.status_code for r in again] == [422] + [202] * 5
            assert [sorted(g) for g in groups] == [hosts]
