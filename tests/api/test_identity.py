"""An agent token speaks only for its hosts; events and sequence numbers are per host.

Issue 14, finding 8: any agent token posted as any host (an XID posted as another host drained
it); event ids were a global dedup key, so host B's event with host A's id was dropped, and so
was a reused (host, seq) with different content.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import pytest
from builders import batch, heartbeat, xid
from conftest import auth
from sqlalchemy import select

from sentinel.auth import TokenSpec, new_token
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Event, JobRank
from sentinel.settings import Settings

RACK_A = new_token()
FLEET = new_token()


@pytest.fixture
def settings(db_url: str, tokens: dict[str, str], tmp_path: Path) -> Settings:
    specs = [TokenSpec(name=r, role=r, token=t) for r, t in tokens.items()]  # type: ignore[arg-type]
    specs += [
        TokenSpec(name="rack-a", role="agent", token=RACK_A, hosts=["h0*"]),  # type: ignore[arg-type]
        TokenSpec(name="fleet", role="agent", token=FLEET, hosts=["*"]),  # type: ignore[arg-type]
    ]
    return Settings(
        data_dir=tmp_path / "data",
        database={"url": db_url},  # type: ignore[arg-type]
        run_loops=False,
        auth={"tokens": specs},  # type: ignore[arg-type]
    )


async def _events(client: httpx.AsyncClient) -> list[Event]:
    async with unit_of_work(client.app.state.ctx.sessions) as s:  # type: ignore[attr-defined]
        return list((await s.scalars(select(Event).order_by(Event.host_id))).all())


async def test_a_bound_token_may_post_only_for_its_hosts(app_client: httpx.AsyncClient) -> None:
    mine = await app_client.post(
        "/api/v1/reports", json=batch(host="h001", observations=[xid(79)]), headers=auth(RACK_A)
    )
    assert mine.status_code == 202, mine.text
    # An XID (and heartbeats) posted as a host of another rack: refused, nothing stored.
    other = batch(host="x017", observations=[xid(79), heartbeat(rank=3)])
    r = await app_client.post("/api/v1/reports", json=other, headers=auth(RACK_A))
    assert r.status_code == 403, r.text
    assert "x017" in r.json()["detail"] and "rack-a" in r.json()["detail"]
    assert [e.host_id for e in await _events(app_client)] == ["h001"]
    async with unit_of_work(app_client.app.state.ctx.sessions) as s:  # type: ignore[attr-defined]
        assert (await s.scalars(select(JobRank))).all() == []
    dump = await app_client.post(
        "/api/v1/flight-recorder/dumps",
        params={"host_id": "x017", "rank": 3, "file_name": "rank3.pkl"},
        content=gzip.compress(b"{}"),
        headers=auth(RACK_A) | {"Content-Type": "application/gzip"},
    )
    assert dump.status_code == 403, dump.text
    # A fleet-wide token (hosts: ["*"]) may speak for any host.
    r = await app_client.post("/api/v1/reports", json=other, headers=auth(FLEET))
    assert r.status_code == 202, r.text


async def test_an_unbound_agent_token_is_fleet_wide_as_before(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    for host in ("h001", "x017"):
        r = await app_client.post(
            "/api/v1/reports", json=batch(host=host), headers=auth(tokens["agent"])
        )
        assert r.status_code == 202, r.text


async def test_events_are_deduplicated_per_host(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    a = xid(79, gpu=1)
    b = xid(48, gpu=5) | {"id": a["id"]}  # another host's event that reuses A's id
    agent = auth(tokens["agent"])
    r = await app_client.post("/api/v1/reports", json=batch("h001", 1, [a]), headers=agent)
    assert r.json()["accepted"] == 1
    r = await app_client.post("/api/v1/reports", json=batch("h002", 1, [b]), headers=agent)
    assert (r.json()["accepted"], r.json()["duplicates"]) == (1, 0), r.text
    # Each host's own resend of it, in a later batch, is still a duplicate.
    for host, event in (("h001", a), ("h002", b)):
        r = await app_client.post("/api/v1/reports", json=batch(host, 2, [event]), headers=agent)
        assert (r.json()["accepted"], r.json()["duplicates"]) == (0, 1), r.text
    stored = await _events(app_client)
    assert [(e.host_id, e.payload["xid"]) for e in stored] == [("h001", 79), ("h002", 48)]
    assert all(e.payload["id"] == a["id"] for e in stored)


async def test_a_reused_sequence_number_with_other_content_is_refused(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    agent = auth(tokens["agent"])
    first = batch("h001", 5, [xid(79)])
    assert (await app_client.post("/api/v1/reports", json=first, headers=agent)).status_code == 202
    resend = await app_client.post("/api/v1/reports", json=first, headers=agent)
    assert resend.status_code == 202 and resend.json()["duplicate"] is True
    other = batch("h001", 5, [xid(48)])
    r = await app_client.post("/api/v1/reports", json=other, headers=agent)
    assert r.status_code == 409, r.text
    assert "seq 5" in r.json()["detail"]
    assert [e.payload["xid"] for e in await _events(app_client)] == [79]
