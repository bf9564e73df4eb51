"""POST /api/v1/reports: store once, drop duplicates, refuse bad input with a 4xx that names it."""

from __future__ import annotations

import gzip
import json
import uuid
from typing import Any

import httpx
import pytest
from builders import at, batch, gpu_sample, heartbeat, obs, xid
from conftest import auth
from pydantic import TypeAdapter
from sqlalchemy import func, select

from sentinel.db.engine import unit_of_work
from sentinel.db.models import Batch, Event, Gpu, JobRank
from sentinel.wire import PERIODIC_KINDS, Observation
from sentinel.wire import Batch as WireBatch


async def _count(client: httpx.AsyncClient, model: type) -> int:
    async with unit_of_work(client.app.state.ctx.sessions) as s:  # type: ignore[attr-defined]
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_valid_batch_is_accepted_and_stored_once(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    body = batch(observations=[gpu_sample(0), gpu_sample(1), xid(79, gpu=1), heartbeat(rank=3)])
    r = await app_client.post("/api/v1/reports", json=body, headers=auth(tokens["agent"]))
    assert r.status_code == 202, r.text
    assert r.json() | {"received_at": None} == {
        "host_id": "h001",
        "seq": 1,
        "duplicate": False,
        "accepted": 4,
        "duplicates": 0,
        "received_at": None,
    }
    again = await app_client.post("/api/v1/reports", json=body, headers=auth(tokens["agent"]))
    assert again.status_code == 202
    assert again.json()["duplicate"] is True and again.json()["accepted"] == 0
    assert await _count(app_client, Batch) == 1
    assert await _count(app_client, Event) == 1
    assert await _count(app_client, Gpu) == 2
    assert await _count(app_client, JobRank) == 1


async def test_event_redelivered_in_a_new_batch_is_stored_once(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    event = xid(48, gpu=2)
    first = batch(seq=1, observations=[event])
    second = batch(seq=2, observations=[event, xid(63, gpu=2)])
    await app_client.post("/api/v1/reports", json=first, headers=auth(tokens["agent"]))
    r = await app_client.post("/api/v1/reports", json=second, headers=auth(tokens["agent"]))
    assert r.json()["duplicate"] is False
    assert (r.json()["accepted"], r.json()["duplicates"]) == (1, 1)
    assert await _count(app_client, Event) == 2


async def test_concurrent_copies_of_one_batch_store_once(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    import asyncio

    body = batch(seq=7, observations=[xid(79)])
    results = await asyncio.gather(
        *[
            app_client.post("/api/v1/reports", json=body, headers=auth(tokens["agent"]))
            for _ in range(8)
        ]
    )
    assert [r.status_code for r in results] == [202] * 8
    assert sum(not r.json()["duplicate"] for r in results) == 1
    assert await _count(app_client, Event) == 1


async def test_host_last_seen_and_sequence_move_forward_only(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    for seq in (5, 3):
        await app_client.post("/api/v1/reports", json=batch(seq=seq), headers=auth(tokens["agent"]))
    r = await app_client.get("/api/v1/hosts/h001", headers=auth(tokens["viewer"]))
    assert r.json()["last_seq"] == 5


async def test_gzip_body_is_accepted(app_client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    data = gzip.compress(json.dumps(batch(observations=[gpu_sample()])).encode())
    r = await app_client.post(
        "/api/v1/reports",
        content=data,
        headers=auth(tokens["agent"])
        | {"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert r.status_code == 202, r.text


@pytest.mark.parametrize(
    ("mutate", "status", "needle"),
    [
        (lambda b: b.update(seq=False), 422, "seq"),
        (lambda b: b.update(seq="3"), 422, "seq"),
        (lambda b: b.pop("host_id"), 422, "host_id"),
        (lambda b: b.update(host_id="bad host/../x"), 422, "host_id"),
        (lambda b: b.update(sent_at="2026-11-28T03:00:00"), 422, "sent_at"),
        (lambda b: b.update(version=2), 422, "version"),
        (lambda b: b.update(surprise=1), 422, "surprise"),
        (lambda b: b["observations"].append(obs("teleport")), 422, "observations[0]"),
        (lambda b: b["observations"].append(xid(code=True)), 422, "observations[0].xid.xid"),
        (lambda b: b["observations"].append(gpu_sample(gpu=-1)), 422, "gpu_index"),
        (
            lambda b: b["observations"].append({"kind": "xid", "xid": 79}),
            422,
            "observations[0].xid.id",
        ),
    ],
)
async def test_invalid_batch_gets_4xx_naming_the_field(
    app_client: httpx.AsyncClient, tokens: dict[str, str], mutate, status: int, needle: str
) -> None:
    body = batch()
    mutate(body)
    r = await app_client.post("/api/v1/reports", json=body, headers=auth(tokens["agent"]))
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]
    assert await _count(app_client, Batch) == 0


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b'{"host_id": ', {}, 400),
        (b"\xff\xfe not json", {}, 400),
        (b"[]", {}, 422),
        (b"null", {}, 422),
        (b"not gzip at all", {"Content-Encoding": "gzip"}, 400),
        (gzip.compress(b"{}")[:-6], {"Content-Encoding": "gzip"}, 400),
        (b"{}", {"Content-Encoding": "br"}, 415),
    ],
)
async def test_malformed_bodies_are_refused(
    app_client: httpx.AsyncClient,
    tokens: dict[str, str],
    content: bytes,
    headers: dict[str, str],
    status: int,
) -> None:
    r = await app_client.post(
        "/api/v1/reports", content=content, headers=auth(tokens["agent"]) | headers
    )
    assert r.status_code == status, r.text
    assert r.json()["detail"]


async def test_oversized_bodies_get_413(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    limit = app_client.app.state.ctx.settings.server.max_body_bytes  # type: ignore[attr-defined]
    r = await app_client.post(
        "/api/v1/reports", content=b" " * (limit + 1), headers=auth(tokens["agent"])
    )
    assert r.status_code == 413
    bomb = gzip.compress(b" " * (limit + 10))
    r = await app_client.post(
        "/api/v1/reports",
        content=bomb,
        headers=auth(tokens["agent"]) | {"Content-Encoding": "gzip"},
    )
    assert r.status_code == 413
    assert "inflates" in r.json()["detail"]


async def test_too_many_observations_are_refused(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    from sentinel.wire import MAX_OBSERVATIONS_PER_BATCH

    body = batch(observations=[gpu_sample(0, id=uuid.uuid4())] * (MAX_OBSERVATIONS_PER_BATCH + 1))
    r = await app_client.post("/api/v1/reports", json=body, headers=auth(tokens["agent"]))
    assert r.status_code in (413, 422)


async def test_heartbeats_build_the_rank_map_and_checkpoint(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    for host_no, host in enumerate(("h001", "h002")):
        beats = [
            heartbeat(
                rank=host_no * 8 + r,
                step=120,
                when=at(5),
                world_size=16,
                checkpoint_step=100,
                gpu_index=r,
            )
            for r in range(8)
        ]
        await app_client.post(
            "/api/v1/reports",
            json=batch(host=host, observations=beats),
            headers=auth(tokens["agent"]),
        )
    r = await app_client.get("/api/v1/jobs/job-1", headers=auth(tokens["viewer"]))
    job = r.json()
    assert job["ranks_reporting"] == 16 and job["hosts"] == 2 and job["world_size"] == 16
    assert job["durable_checkpoint_step"] == 100
    assert {x["rank"]: x["host_id"] for x in job["ranks"]}[9] == "h002"


async def test_heartbeats_tell_the_code_version_and_the_last_that_trained(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    """Version A checkpoints at 100; version B restarts from it (the agent repeats the last
    checkpoint step): B runs, A is still the version that trained, until B checkpoints."""
    seq = 0

    async def beat(step: int, when: int, version: str | None, checkpoint: int) -> dict[str, Any]:
        nonlocal seq
        seq += 1
        beats = [
            heartbeat(rank=r, step=step, when=at(when), checkpoint_step=checkpoint,
                      **({"code_version": version} if version else {}))
            for r in range(2)
        ]  # fmt: skip
        r = await app_client.post(
            "/api/v1/reports",
            json=batch(seq=seq, observations=beats, when=at(when)),
            headers=auth(tokens["agent"]),
        )
        assert r.status_code == 202, r.text
        job = await app_client.get("/api/v1/jobs/job-1", headers=auth(tokens["viewer"]))
        return dict(job.json())

    job = await beat(90, 1, "A", 50)
    assert (job["code_version"], job["trained_version"]) == ("A", "A")
    job = await beat(120, 2, "A", 100)
    job = await beat(105, 3, "B", 100)
    assert (job["code_version"], job["trained_version"]) == ("B", "A")
    assert {(x["code_version"], x["checkpoint_version"]) for x in job["ranks"]} == {("B", "A")}
    job = await beat(106, 4, None, 100)  # a client given no version: the last one stands
    assert (job["code_version"], job["trained_version"]) == ("B", "A")
    job = await beat(220, 5, "B", 200)
    assert (job["code_version"], job["trained_version"]) == ("B", "B")


async def test_heartbeats_tell_how_long_the_job_takes_to_start_and_to_checkpoint(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    """Each rank's latest measured times are kept; the job's are its slowest rank's (the others
    wait for it); a rank that says nothing keeps what it said before."""
    seq = 0

    async def beat(when: int, per_rank: dict[int, dict[str, float]]) -> dict[str, Any]:
        nonlocal seq
        seq += 1
        beats = [
            heartbeat(rank=r, step=10 * when, when=at(when), checkpoint_step=10, **timings)
            for r, timings in per_rank.items()
        ]
        r = await app_client.post(
            "/api/v1/reports",
            json=batch(seq=seq, observations=beats, when=at(when)),
            headers=auth(tokens["agent"]),
        )
        assert r.status_code == 202, r.text
        job = await app_client.get("/api/v1/jobs/job-1", headers=auth(tokens["viewer"]))
        return dict(job.json())

    job = await beat(1, {0: {}, 1: {}})
    assert (job["startup_s"], job["checkpoint_save_s"], job["checkpoint_write_s"]) == (
        None,
        None,
        None,
    )
    job = await beat(2, {0: {"startup_s": 95.0, "checkpoint_save_s": 0.2},
                         1: {"startup_s": 120.5, "checkpoint_save_s": 0.3,
                             "checkpoint_write_s": 4.0}})  # fmt: skip
    assert (job["startup_s"], job["checkpoint_save_s"], job["checkpoint_write_s"]) == (
        120.5,
        0.3,
        4.0,
    )
    job = await beat(3, {0: {}, 1: {"checkpoint_save_s": 0.1}})
    assert (job["startup_s"], job["checkpoint_save_s"]) == (120.5, 0.2)
    assert {(x["rank"], x["startup_s"]) for x in job["ranks"]} == {(0, 95.0), (1, 120.5)}
    bad = heartbeat(rank=0, step=40, when=at(4), checkpoint_save_s=-1.0)
    r = await app_client.post(
        "/api/v1/reports",
        json=batch(seq=seq + 1, observations=[bad], when=at(4)),
        headers=auth(tokens["agent"]),
    )
    assert r.status_code == 422 and "checkpoint_save_s" in r.text


async def test_the_fast_path_answers_as_the_route_does(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    """Batches are answered by a plain ASGI layer (sentinel.api.routes.reports.ReportsFastPath),
    not FastAPI's router: its refusals are the route's, and a query string still reaches the
    route, whose dependencies refuse unknown parameters."""
    body = batch(host="h001", seq=1, observations=[gpu_sample(0)])
    r = await app_client.post("/api/v1/reports", json=body, headers=auth(tokens["viewer"]))
    assert r.status_code == 403
    assert r.json() == {"detail": "role 'viewer' may not do this; needs one of ['agent']"}
    r = await app_client.post("/api/v1/reports", json=body, headers={"Authorization": "Basic x"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = await app_client.post(
        "/api/v1/reports", params={"dry": "1"}, json=body, headers=auth(tokens["agent"])
    )
    assert r.status_code == 422 and "'dry'" in r.json()["detail"]
    assert await _count(app_client, Batch) == 0
    r = await app_client.post(
        "/api/v1/reports",
        content=b'{"version": 1',
        headers={**auth(tokens["agent"]), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("malformed JSON")
    r = await app_client.post(
        "/api/v1/reports",
        content=b"x",
        headers={**auth(tokens["agent"]), "Content-Encoding": "br"},
    )
    assert r.status_code == 415
    r = await app_client.post(
        "/api/v1/reports",
        content=gzip.compress(json.dumps(body).encode()),
        headers={**auth(tokens["agent"]), "Content-Encoding": "gzip"},
    )
    assert r.status_code == 202 and r.headers["content-type"] == "application/json"
    assert r.json()["accepted"] == 1 and await _count(app_client, Batch) == 1
    r = await app_client.get("/api/v1/reports", headers=auth(tokens["agent"]))
    assert r.status_code == 405


async def test_stored_samples_are_the_periodic_observations_serialised_as_before(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    """The batch's samples column, and each GPU's latest sample, are pydantic's JSON of the
    periodic observations without None fields (each observation is serialised once)."""
    body = batch(
        observations=[
            gpu_sample(0, temperature_c=71.5),
            xid(79, gpu=1),
            heartbeat(rank=3),
            obs("agent_status", version="1.2", collectors_ok=["nvml"], outbox_depth=2),
            gpu_sample(1, nvlink={"crc_flit": 1, "crc_data": 0, "replay": 0, "recovery": 0}),
        ]
    )
    r = await app_client.post("/api/v1/reports", json=body, headers=auth(tokens["agent"]))
    assert r.status_code == 202, r.text
    sent = WireBatch.model_validate_json(json.dumps(body))
    periodic = [o for o in sent.observations if o.kind in PERIODIC_KINDS]
    expected = TypeAdapter(list[Observation]).dump_json(periodic, exclude_none=True).decode()
    async with unit_of_work(app_client.app.state.ctx.sessions) as s:  # type: ignore[attr-defined]
        samples = (await s.execute(select(Batch.samples))).scalar_one()
        gpus = dict((await s.execute(select(Gpu.gpu_index, Gpu.sample))).all())
    assert samples == expected
    assert json.loads(samples)[2]["kind"] == "agent_status"
    assert gpus == {
        o.gpu_index: o.model_dump_json(exclude_none=True)
        for o in periodic
        if o.kind == "gpu_sample"
    }
