"""Ingest tests run the real service (a subprocess) on each database, with settings of their own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.service import LiveService

StartService = Callable[..., LiveService]


@pytest.fixture
def start_service(db_url: str, tmp_path: Path) -> Iterator[StartService]:
    """Start `sentinel serve` on this test's database; keyword arguments are SENTINEL_* settings."""
    started: list[LiveService] = []

    def start(**env: str) -> LiveService:
        service = LiveService(
            database_url=db_url,
            data_dir=tmp_path / f"service-{len(started)}",
            extra_env={f"SENTINEL_{k.upper()}": v for k, v in env.items()},
        )
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
