"""Build the dispatcher from settings, and the flush step the leader runs at its interval."""

from __future__ import annotations

import logging
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.alerting.config import ConfigError, ReceiverSpec, RoutingConfig, load_routing
from sentinel.alerting.dispatcher import Dispatcher, FlushReport
from sentinel.alerting.notifiers.alertmanager import (
    AlertmanagerAuth,
    AlertmanagerNotifier,
    CredentialsError,
)
from sentinel.alerting.notifiers.base import Notifier
from sentinel.alerting.notifiers.log import LogNotifier
from sentinel.alerting.notifiers.pagerduty import PagerDutyNotifier
from sentinel.alerting.notifiers.slack import SlackNotifier
from sentinel.alerting.notifiers.webhook import WebhookNotifier
from sentinel.alerting.settings import AlertingSettings
from sentinel.clock import Clock

log = logging.getLogger(__name__)


def build_notifier(
    spec: ReceiverSpec, settings: AlertingSettings, client: httpx.AsyncClient
) -> Notifier:
    """The integration for one receiver; without its credentials it logs instead (and says so)."""
    if spec.type == "slack":
        url = spec.url or (
            settings.slack_webhook_url and settings.slack_webhook_url.get_secret_value()
        )
        if url:
            return SlackNotifier(client, url)
    elif spec.type == "pagerduty":
        if settings.pagerduty_routing_key is not None:
            return PagerDutyNotifier(
                client,
                settings.pagerduty_routing_key.get_secret_value(),
                spec.url or settings.pagerduty_url,
            )
    elif spec.type == "alertmanager":
        url = spec.url or settings.alertmanager_url
        if url:
            try:
                auth = AlertmanagerAuth.from_files(
                    settings.alertmanager_basic_auth_file,
                    settings.alertmanager_bearer_token_file,
                )
            except CredentialsError as exc:
                raise ConfigError(f"receiver {spec.name!r} (alertmanager): {exc}") from None
            return AlertmanagerNotifier(
                client,
                url,
                valid_for=timedelta(seconds=settings.alertmanager_valid_for_s),
                auth=auth,
            )
    elif spec.type == "webhook":
        url = spec.url or settings.webhook_url
        if url and settings.webhook_secret is not None:
            return WebhookNotifier(client, url, settings.webhook_secret.get_secret_value())
    else:
        return LogNotifier()
    log.warning(
        "receiver %r (%s) has no credentials configured: logging instead", spec.name, spec.type
    )
    return LogNotifier()


def build_dispatcher(
    settings: AlertingSettings,
    sessions: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    config: RoutingConfig | None = None,
) -> Dispatcher:
    """Validates the routing file (raising ConfigError naming the line) and wires notifiers."""
    config = config or load_routing(settings.routes_file)
    notifiers = {
        name: build_notifier(spec, settings, client) for name, spec in config.receivers.items()
    }
    check_reposting(config, notifiers)
    return Dispatcher(
        sessions,
        config,
        notifiers,
        public_url=settings.public_url,
        retry=settings.retry,
        lease_ttl=timedelta(seconds=settings.lease_ttl_s),
        max_concurrent=settings.max_concurrent_sends,
    )


def check_reposting(config: RoutingConfig, notifiers: dict[str, Notifier]) -> None:
    """Alertmanager resolves an alert not posted again before its endsAt: every route to an
    Alertmanager receiver must repeat sooner than the alerts it posts stay valid."""
    for route in config.root.walk():
        notifier = notifiers.get(route.receiver)
        if (
            isinstance(notifier, AlertmanagerNotifier)
            and route.repeat_interval >= notifier.valid_for
        ):
            raise ConfigError(
                f"{config.source}: route {route.id} sends to Alertmanager receiver "
                f"{route.receiver!r} every {route.repeat_interval} (repeat_interval), but its "
                f"alerts are valid for {notifier.valid_for} (alertmanager_valid_for_s): "
                "set a shorter repeat_interval on that route"
            )


def http_client(settings: AlertingSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=settings.http_timeout_s, follow_redirects=False)


async def flush_step(dispatcher: Dispatcher, clock: Clock) -> FlushReport:
    """One loop iteration: the leader runs it every ``flush_interval_s`` (runtime.loops)."""
    report = await dispatcher.flush(clock.now())
    if report.sent or report.failed:
        log.info(
            "alerts: %d due, %d sent, %d retrying, %d failed",
            report.due,
            report.sent,
            report.retrying,
            report.failed,
        )
    return report
