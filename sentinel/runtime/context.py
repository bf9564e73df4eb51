"""The service composed from its settings: every long-lived service, built once, in one place."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sentinel.alerting.dispatcher import Dispatcher
from sentinel.alerting.incidents import StateIncidentAlerts
from sentinel.alerting.wiring import build_dispatcher, http_client
from sentinel.auth import TokenStore
from sentinel.clock import Clock
from sentinel.db.engine import make_engine, make_sessionmaker
from sentinel.incidents.flightrec import FlightRecorderAnalyzer
from sentinel.incidents.service import TriageService
from sentinel.incidents.watchdog import Watchdog
from sentinel.incidents.worker import TriageWorker
from sentinel.ingest.service import IngestService
from sentinel.metrics import ServiceMetrics
from sentinel.pipeline import IncidentStages
from sentinel.remediation.service import RemediationService
from sentinel.schedulers.factory import make_scheduler
from sentinel.settings import Settings


@dataclass
class AppContext:
    """Everything a request or a loop may need, built once at start-up (``build_context``)."""

    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    tokens: TokenStore
    metrics: ServiceMetrics
    ingest: IngestService
    triage: TriageService
    triage_worker: TriageWorker
    watchdog: Watchdog
    remediation: RemediationService
    stages: IncidentStages
    flight_recorder: FlightRecorderAnalyzer
    dispatcher: Dispatcher
    alert_http: httpx.AsyncClient


def build_context(settings: Settings, clock: Clock) -> AppContext:
    """The services and how they hand work on: ingest tells the triage worker what is new;
    an incident change goes through the stages decide, then alert (``IncidentStages``)."""
    engine = make_engine(
        settings.database_url(),
        pool_size=settings.database.pool_size,
        echo=settings.database.echo,
    )
    sessions = make_sessionmaker(engine)
    metrics = ServiceMetrics()
    triage = TriageService(clock, settings.triage, metrics)
    worker = TriageWorker(sessions, clock, triage, settings.triage, metrics)
    ingest = IngestService(
        sessions,
        clock,
        metrics,
        max_group=settings.ingest.max_group,
        queue_limit=settings.ingest.queue_limit,
        linger_s=settings.ingest.linger_ms / 1000,
        listeners=[worker.on_ingest],
    )
    remediation = RemediationService(
        clock, settings.remediation, make_scheduler(settings.scheduler, clock=clock), triage
    )
    alert_http = http_client(settings.alerting)
    dispatcher = build_dispatcher(settings.alerting, sessions, alert_http)
    stages = IncidentStages(
        sessions,
        decide=remediation.on_incident_change,
        alert=StateIncidentAlerts(dispatcher.config, clock),
    )
    return AppContext(
        settings=settings,
        clock=clock,
        engine=engine,
        sessions=sessions,
        tokens=TokenStore(settings.auth.all_tokens()),
        metrics=metrics,
        ingest=ingest,
        triage=triage,
        triage_worker=worker,
        watchdog=Watchdog(clock, settings.triage, settings.health, triage),
        remediation=remediation,
        stages=stages,
        flight_recorder=FlightRecorderAnalyzer(
            clock,
            settings.triage.fr_settle_s,
            metrics=metrics,
            memory_budget_bytes=settings.triage.fr_memory_budget_bytes,
            timeout_s=settings.triage.fr_timeout_s,
            workers=settings.triage.fr_workers,
        ),
        dispatcher=dispatcher,
        alert_http=alert_http,
    )
