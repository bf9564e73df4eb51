"""Fixtures for the dashboard tests: the scenario database, the app over it, a live server."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

# The test modules share builders through web_scenario, found on this folder's path.
sys.path.append(str(Path(__file__).parent))

from web_scenario import (
    LiveServer,
    Scenario,
    add_hosts,
    build,
    free_port,
    scenario_copy,
    web_settings,
)

from sentinel.clock import VirtualClock
from sentinel.runtime.app import create_app


@pytest.fixture(scope="session")
def scenario(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, tokens: dict[str, str]
) -> Scenario:
    # Built once (a few seconds of replay), copied for each test.
    path = tmp_path_factory.mktemp("web") / "scenario.db"
    shutil.copy(sqlite_template, path)
    return asyncio.run(build(path, tokens))


@pytest.fixture
async def web_app(
    scenario: Scenario, tokens: dict[str, str], tmp_path: Path
) -> AsyncIterator[FastAPI]:
    app = create_app(
        web_settings(scenario_copy(scenario, tmp_path), tokens), VirtualClock(scenario.now)
    )
    async with app.router.lifespan_context(app):
        yield app


def _serve(path: Path, tokens: dict[str, str], now: datetime) -> Iterator[LiveServer]:
    """The real app under uvicorn on loopback, in a thread, on a virtual clock."""
    app = create_app(web_settings(path, tokens), VirtualClock(now))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield LiveServer(f"http://127.0.0.1:{port}", tokens)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def live_server(scenario: Scenario, tokens: dict[str, str], tmp_path: Path) -> Iterator[LiveServer]:
    yield from _serve(scenario_copy(scenario, tmp_path), tokens, scenario.now)


@pytest.fixture
def waiting_live_server(
    request: pytest.FixtureRequest, scenario: Scenario, tokens: dict[str, str], tmp_path: Path
) -> Iterator[LiveServer]:
    """The scenario with its decision waiting for a person: `request.param` is its status
    (escalated, held, proposed), given by indirect parametrization."""
    path = scenario_copy(scenario, tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE decisions SET status = ?", (request.param,))
    yield from _serve(path, tokens, scenario.now)


@pytest.fixture
def big_live_server(
    scenario: Scenario, tokens: dict[str, str], tmp_path: Path
) -> Iterator[LiveServer]:
    """The scenario grown to the full 2,048 hosts, as the benchmark fills it."""
    path = scenario_copy(scenario, tmp_path)
    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, add_hosts(path, tokens, scenario.now, 2048 - 24)).result()
    yield from _serve(path, tokens, scenario.now)
