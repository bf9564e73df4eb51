"""Timeline tests on the virtual clock, in the manner of Alertmanager's acceptance tests:
at t push these alerts; run the sender every second; between a and b expect these sends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from builders import T0
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.alerting.config import RoutingConfig, parse_routing
from sentinel.alerting.dispatcher import Dispatcher
from sentinel.alerting.model import AlertIn
from sentinel.alerting.notifiers.base import Notifier
from sentinel.alerting.notifiers.fakes import RecordingNotifier
from sentinel.alerting.service import push_alerts
from sentinel.alerting.settings import RetryPolicy
from sentinel.clock import VirtualClock
from sentinel.db.engine import unit_of_work

ROUTES = """
route:
  receiver: team
  group_by: [job]
  group_wait: 10s
  group_interval: 30s
  repeat_interval: 2m
  routes:
    - matchers: ['severity="critical"']
      receiver: pager
      continue: true
    - receiver: team
receivers:
  - name: team
    type: log
  - name: pager
    type: log
inhibit_rules:
  - source_matchers: ['role="cause"']
    target_matchers: ['role="symptom"']
    equal: [incident]
"""


def alert(name: str, *, at: float = 0, ends: float | None = None, **labels: str) -> AlertIn:
    return AlertIn(
        labels={"alertname": name, "job": "job-1", **labels},
        annotations={"summary": f"{name} fired"},
        starts_at=T0 + timedelta(seconds=at),
        ends_at=None if ends is None else T0 + timedelta(seconds=ends),
    )


@dataclass(frozen=True)
class Sent:
    t: float
    receiver: str
    kind: str
    firing: frozenset[str]

    def __repr__(self) -> str:
        return f"Sent({self.t:g}, {self.receiver}, {self.kind}, {sorted(self.firing)})"


def sent(t: float, receiver: str, kind: str, *firing: str) -> Sent:
    return Sent(t, receiver, kind, frozenset(firing))


class Timeline:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: VirtualClock,
        routes: str = ROUTES,
        notifiers: dict[str, Notifier] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.config: RoutingConfig = parse_routing(routes, "test-routes")
        self.notifiers: dict[str, Notifier] = notifiers or {
            name: RecordingNotifier(name) for name in self.config.receivers
        }
        self.dispatcher = Dispatcher(
            sessions,
            self.config,
            self.notifiers,
            public_url="https://sentinel.test",
            retry=retry,
            identity="timeline",
        )
        self.log: list[Sent] = []
        self.reports: list[Any] = []

    @property
    def t(self) -> float:
        return (self.clock.now() - T0).total_seconds()

    async def push(self, *alerts: AlertIn) -> None:
        async with unit_of_work(self.sessions) as session:
            await push_alerts(session, self.config, alerts, self.clock.now())

    async def flush(self) -> None:
        report = await self.dispatcher.flush(self.clock.now())
        self.reports.append(report)
        for n in report.notifications:
            self.log.append(
                Sent(self.t, n.receiver, n.kind, frozenset(a.labels["alertname"] for a in n.firing))
            )

    async def run_until(self, t: float) -> None:
        """Flush at the current second, then every second up to and including ``t``."""
        await self.flush()
        while self.t + 1 <= t:
            self.clock.advance(1)
            await self.flush()

    def between(self, a: float, b: float, receiver: str | None = None) -> list[Sent]:
        return [s for s in self.log if a <= s.t <= b and receiver in (None, s.receiver)]
