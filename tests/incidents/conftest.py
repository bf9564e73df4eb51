"""The incidents tests' timeline: a job started and weighed once before each test."""

from __future__ import annotations

import httpx
import pytest
from incidents.timeline import Timeline

from sentinel.clock import VirtualClock


@pytest.fixture
async def timeline(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> Timeline:
    t = Timeline(app_client, tokens, clock)
    await t.start_job()
    await t.triage()
    return t
