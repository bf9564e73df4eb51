"""The ingest writer keeps its PostgreSQL connection between group commits (no pre-ping per
group, issue 19); a connection that died meanwhile is replaced and the group stored on the new
one, so the agent sees no error and nothing is lost."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from builders import T0, batch, heartbeat, xid
from conftest import auth
from sqlalchemy import func, select

from sentinel.auth import TokenSpec
from sentinel.clock import VirtualClock
from sentinel.db.models import Batch, Event
from sentinel.runtime.app import create_app
from sentinel.settings import Settings
from tests.harness.postgres import PostgresCluster


@pytest.mark.postgres
async def test_a_batch_after_the_writers_connection_died_is_stored(
    pg_cluster: PostgresCluster,
    pg_template: str,
    tokens: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pg_cluster.psql(f"CREATE DATABASE ingest_reconnect TEMPLATE {pg_template}")
    settings = Settings(
        data_dir=tmp_path / "data",
        database={"url": pg_cluster.url("ingest_reconnect")},  # type: ignore[arg-type]
        run_loops=False,
        auth={"tokens": [TokenSpec(name=r, role=r, token=t) for r, t in tokens.items()]},  # type: ignore[arg-type]
    )
    app = create_app(settings, VirtualClock(T0))
    ctx = app.state.ctx
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sentinel") as client:

            async def post(seq: int) -> httpx.Response:
                body = batch("h001", seq, [xid(79), heartbeat(step=seq)])
                return await client.post(
                    "/api/v1/reports", json=body, headers=auth(tokens["agent"])
                )

            assert (await post(1)).status_code == 202
            # Every backend of the database ends, the writer's among them (a restart, an
            # idle connection cut by a firewall or idle_session_timeout).
            killed = pg_cluster.psql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = 'ingest_reconnect' AND pid <> pg_backend_pid()"
            )
            assert int(killed.strip().splitlines()[-1].strip() or 0) >= 1, killed
            with caplog.at_level(logging.WARNING, logger="sentinel.ingest.service"):
                r = await post(2)
            assert r.status_code == 202, r.text
            assert "database connection was lost" in caplog.text
            assert r.json()["accepted"] == 2 and not r.json()["duplicate"]
            assert (await post(3)).status_code == 202
    async with ctx.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Batch)) == 3
        assert await session.scalar(select(func.count()).select_from(Event)) == 3
    await ctx.engine.dispose()
