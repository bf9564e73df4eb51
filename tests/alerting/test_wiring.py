"""Start-up wiring: settings to notifiers, a bad routing file refused, the leader's flush step."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from builders import T0
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.alerting.config import DEFAULT_ROUTES, ConfigError
from sentinel.alerting.notifiers.log import LogNotifier
from sentinel.alerting.notifiers.pagerduty import PagerDutyNotifier
from sentinel.alerting.notifiers.slack import SlackNotifier
from sentinel.alerting.notifiers.webhook import WebhookNotifier
from sentinel.alerting.settings import AlertingSettings
from sentinel.alerting.wiring import build_dispatcher, flush_step
from sentinel.clock import VirtualClock


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path) -> str:
    import shutil

    shutil.copy(sqlite_template, tmp_path / "w.db")
    return f"sqlite:///{tmp_path / 'w.db'}"


async def test_receivers_get_their_integrations(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        DEFAULT_ROUTES.read_text().replace(
            "receivers:\n",
            "receivers:\n  - {name: hooks, type: webhook}\n"
            "  - {name: team2, type: slack, url: 'http://x/'}\n",
        )
    )
    settings = AlertingSettings(
        routes_file=routes,
        pagerduty_routing_key="R" * 32,
        webhook_url="http://127.0.0.1:9/hook",
        webhook_secret="s",
    )
    async with httpx.AsyncClient() as client:
        d = build_dispatcher(settings, sessions, client)
    kinds = {name: type(n) for name, n in d.notifiers.items()}
    assert kinds == {
        "slack": LogNotifier,  # no webhook URL configured: logs instead, and says so
        "pagerduty": PagerDutyNotifier,
        "log": LogNotifier,
        "hooks": WebhookNotifier,
        "team2": SlackNotifier,
    }
    assert "receiver 'slack' (slack) has no credentials" in caplog.text


async def test_bad_routing_file_is_refused_at_start(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        DEFAULT_ROUTES.read_text().replace("repeat_interval: 4h", "repeat_interval: often")
    )
    async with httpx.AsyncClient() as client:
        with pytest.raises(ConfigError, match=rf"{routes}:11: route.repeat_interval: bad duration"):
            build_dispatcher(AlertingSettings(routes_file=routes), sessions, client)


def test_lease_must_outlive_a_send() -> None:
    with pytest.raises(ValidationError, match="lease_ttl_s"):
        AlertingSettings(lease_ttl_s=15, http_timeout_s=10)


async def test_flush_step_with_nothing_due(sessions: async_sessionmaker[AsyncSession]) -> None:
    clock = VirtualClock(T0)
    async with httpx.AsyncClient() as client:
        d = build_dispatcher(AlertingSettings(), sessions, client)
        report = await flush_step(d, clock)
    assert report.due == 0 and report.sent == 0
