"""Helpers shared by the dashboard tests: the dashboard, its queries, the service's metric names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from sentinel.metrics import ServiceMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
DASHBOARD = DASHBOARDS / "grafana" / "sentinel.json"
# Grafana's own variables, and what to put in their place to send a query to Prometheus.
BUILTINS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
# Series that Prometheus makes itself for every target.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) for every panel target."""
    return [
        (f"panel {p['id']} {p['title']!r} {t['refId']}", t["expr"])
        for p in panels(dashboard)
        for t in p.get("targets", [])
    ]


def variable_queries(dashboard: dict[str, Any]) -> list[str]:
    return [
        v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        for v in dashboard["templating"]["list"]
        if v["type"] == "query"
    ]


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Grafana's $var, ${var} and ${var:opt} replaced as Grafana would before sending."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return variables.get(name, m.group(0))

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", one, expr)


def service_metric_names() -> set[str]:
    """Every series name the service's registry can expose (counters, histograms' parts)."""
    names: set[str] = set()
    for family in ServiceMetrics().registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
    return names


def populated_metrics() -> str:
    """The service's /metrics text with a sample in every family, for Prometheus to scrape."""
    m = ServiceMetrics()
    m.batches.labels("accepted").inc()
    m.observations.labels("gpu_sample").inc()
    m.rejected.labels("invalid").inc()
    m.retention_deleted.labels("batches").inc()
    m.incidents_opened.labels("faulty_gpu").inc()
    m.incidents_resolved.labels("faulty_gpu").inc()
    m.latency.observe(0.01)
    m.detection_latency.observe(1.0)
    m.hosts.labels("healthy").set(2048)
    m.incidents.labels("faulty_gpu", "open").set(1)
    m.incident_oldest_open.labels("faulty_gpu").set(60)
    m.decisions.labels("exclude_and_restart", "done").set(1)
    m.job_ettr.labels("llama3").set(0.95)
    return generate_latest(m.registry).decode()
