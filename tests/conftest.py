"""Shared fixtures: databases (SQLite and a real PostgreSQL 15), the app, a live service."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from builders import T0

from sentinel.auth import TokenSpec, new_token
from sentinel.clock import VirtualClock
from sentinel.db import migrate
from sentinel.runtime.app import create_app
from sentinel.settings import Settings
from tests.harness.postgres import PostgresCluster, PostgresUnavailable, start_cluster
from tests.harness.service import LiveService

if TYPE_CHECKING:  # timeline.py imports this module's helpers
    from remediation.timeline import Timeline

SKIP_PG = os.environ.get("SENTINEL_TEST_SKIP_POSTGRES") == "1"
# The session's PostgreSQL lives in memory: a database per test copied from the template
# and removed again cost a tenth of a second on disk each, and the last test's teardown
# waited up to a minute for the hundreds of them to be deleted (fsync is off anyway).
SHM = Path("/dev/shm")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    if SKIP_PG:
        pytest.skip("SENTINEL_TEST_SKIP_POSTGRES=1: PostgreSQL tests skipped")
    try:
        cluster = start_cluster(SHM if SHM.is_dir() else None)
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg_template(pg_cluster: PostgresCluster) -> str:
    pg_cluster.psql("CREATE DATABASE sentinel_template")
    migrate.upgrade(pg_cluster.url("sentinel_template"))
    return "sentinel_template"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


def _fresh_pg(cluster: PostgresCluster, template: str | None) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    cluster.psql(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    return cluster.url(name)


@contextlib.contextmanager
def _pg_for_test(cluster: PostgresCluster, template: str | None) -> Iterator[str]:
    """A fresh database, dropped after the test (the cluster is in memory: keep it small)."""
    url = _fresh_pg(cluster, template)
    yield url
    cluster.psql(f"DROP DATABASE {url.rsplit('/', 1)[1]} WITH (FORCE)")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of each kind; every test gets its own."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "sentinel.db"
        shutil.copy(template, target)
        yield f"sqlite:///{target}"
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    with _pg_for_test(cluster, request.getfixturevalue("pg_template")) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all, for migration tests."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with _pg_for_test(request.getfixturevalue("pg_cluster"), None) as url:
        yield url


@pytest.fixture(scope="session")
def tokens() -> dict[str, str]:
    return {role: new_token() for role in ("agent", "operator", "viewer")}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
def settings(db_url: str, tokens: dict[str, str], tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database={"url": db_url},  # type: ignore[arg-type]
        run_loops=False,
        auth={"tokens": [TokenSpec(name=r, role=r, token=t) for r, t in tokens.items()]},  # type: ignore[arg-type]
    )


@pytest.fixture
async def app_client(settings: Settings, clock: VirtualClock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sentinel") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture
async def tl(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> Timeline:
    """A Slurm-like fleet's job on the virtual clock, its ranks beating (tests/remediation)."""
    from remediation.timeline import Timeline

    t = Timeline(app_client, tokens, clock)
    await t.beats()
    return t


@pytest.fixture
def live_service(tmp_path: Path) -> Iterator[LiveService]:
    """The real service in a subprocess on loopback, on a fresh SQLite file."""
    data = tmp_path / "service"
    service = LiveService(database_url=f"sqlite:///{data / 'sentinel.db'}", data_dir=data)
    service.start()
    yield service
    service.stop()
