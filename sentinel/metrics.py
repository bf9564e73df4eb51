"""The service's Prometheus metrics, on a registry of its own (one per app, so tests stay apart)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.batches = Counter(
            "sentinel_ingest_batches_total",
            "Agent batches by result (accepted, duplicate, rejected, unavailable).",
            ["result"],
            registry=r,
        )
        self.observations = Counter(
            "sentinel_ingest_observations_total",
            "Observations stored, by kind.",
            ["kind"],
            registry=r,
        )
        self.duplicate_events = Counter(
            "sentinel_ingest_duplicate_events_total",
            "Events dropped because their id was already stored.",
            registry=r,
        )
        self.rejected = Counter(
            "sentinel_ingest_rejected_total",
            "Requests refused before storage, by reason.",
            ["reason"],
            registry=r,
        )
        self.latency = Histogram(
            "sentinel_ingest_latency_seconds",
            "Time from a batch's arrival to its commit.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.group_size = Histogram(
            "sentinel_ingest_group_batches",
            "Batches committed together by the ingest writer.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=r,
        )
        self.queue_depth = Gauge(
            "sentinel_ingest_queue_depth", "Batches waiting for the writer.", registry=r
        )
        self.retention_deleted = Counter(
            "sentinel_retention_deleted_rows_total",
            "Rows removed by retention, by table.",
            ["table"],
            registry=r,
        )
        self.retention_partitions_dropped = Counter(
            "sentinel_retention_partitions_dropped_total",
            "Day partitions of batches and events dropped whole by retention (PostgreSQL).",
            registry=r,
        )
        self.loop_overruns = Counter(
            "sentinel_loop_overruns_total",
            "Runs of a leader's interval loop that took longer than its interval, by loop.",
            ["loop"],
            registry=r,
        )
        self.incidents_opened = Counter(
            "sentinel_incidents_opened_total",
            "Incidents opened, by root-cause category.",
            ["category"],
            registry=r,
        )
        self.incidents_resolved = Counter(
            "sentinel_incidents_resolved_total",
            "Incidents resolved, by root-cause category.",
            ["category"],
            registry=r,
        )
        self.detection_latency = Histogram(
            "sentinel_detection_latency_seconds",
            "From the first signal of an incident to its opening.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )
        self.triage_lag = Gauge(
            "sentinel_triage_lag_seconds",
            "How long the oldest stored event not yet weighed by triage has waited (0: none).",
            registry=r,
        )
        self.triage_backlog = Gauge(
            "sentinel_triage_backlog_events",
            "Stored events waiting to be weighed by triage.",
            registry=r,
        )
        self.triage_pass = Histogram(
            "sentinel_triage_pass_seconds",
            "Duration of one triage pass (new events in, incidents out).",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.unaccounted = Gauge(
            "sentinel_unaccounted_hard_faults",
            "Hard-fault events neither linked to an incident nor dismissed within the bound.",
            registry=r,
        )
        self.hosts = Gauge(
            "sentinel_hosts", "Hosts by health (as of the last scrape).", ["health"], registry=r
        )
        # Filled from the database at scrape time (api/routes/ops.py), like sentinel_hosts.
        self.incidents = Gauge(
            "sentinel_incidents",
            "Incidents by root-cause category and state (open, mitigating, resolved).",
            ["category", "state"],
            registry=r,
        )
        self.incident_oldest_open = Gauge(
            "sentinel_incident_oldest_open_seconds",
            "Age of the oldest incident not yet resolved, by category.",
            ["category"],
            registry=r,
        )
        self.decisions = Gauge(
            "sentinel_decisions",
            "Remediation decisions by action and status (their outcome so far).",
            ["action", "status"],
            registry=r,
        )
        self.flightrec_failures = Counter(
            "sentinel_flightrec_failures_total",
            "Flight-recorder dumps that could not be read (reason unreadable_dump) and jobs "
            "whose analysis failed (memory, timeout, worker_died, error).",
            ["reason"],
            registry=r,
        )
        self.job_ettr = Gauge(
            "sentinel_job_ettr_ratio",
            "Effective training time ratio of each running job over its life (reports.tables).",
            # Not "job": Prometheus's own target label would rename it to exported_job.
            ["job_id"],
            registry=r,
        )
