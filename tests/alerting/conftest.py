"""Fixtures for the alert path: sessions on each database, local receivers, timelines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.alerting.notifiers.fakes import (
    FakeReceiver,
    Reply,
    check_pagerduty_event,
    check_slack_message,
)
from sentinel.db.engine import make_engine, make_sessionmaker


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(db_url, pool_size=5)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def slack() -> Iterator[FakeReceiver]:
    receiver = FakeReceiver(check=check_slack_message).start()
    yield receiver
    receiver.stop()


@pytest.fixture
def pagerduty() -> Iterator[FakeReceiver]:
    ok = Reply(202, '{"status": "success", "message": "Event processed"}')
    receiver = FakeReceiver(check=check_pagerduty_event, ok=ok).start()
    yield receiver
    receiver.stop()
