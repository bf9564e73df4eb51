"""Fixtures for the dashboard tests: the scenario database, the app over it, a live server."""

from __future__ import annotations

import asyncio
import shutil
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

# The test modules share builders through web_scenario, found on this folder's path.
sys.path.insert(0, str(Path(__file__).parent))

from web_scenario import (
    LiveServer,
    Scenario,
    build,
    free_port,
    scenario_copy,
    web_settings,
)

from sentinel.api.app import create_app
from sentinel.clock import VirtualClock


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


@pytest.fixture
def live_server(scenario: Scenario, tokens: dict[str, str], tmp_path: Path) -> Iterator[LiveServer]:
    """The real app under uvicorn on loopback, in a thread, on the scenario's virtual clock."""
    app = create_app(
        web_settings(scenario_copy(scenario, tmp_path), tokens), VirtualClock(scenario.now)
    )
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
