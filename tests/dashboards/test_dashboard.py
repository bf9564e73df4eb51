"""The Grafana dashboard: lint, metric names that exist, PromQL a real Prometheus accepts."""

from __future__ import annotations

import re

import httpx
import pytest

from dashboards.helpers import (
    BUILTINS,
    SYNTHETIC,
    load_dashboard,
    panels,
    queries,
    service_metric_names,
    substitute,
    variable_queries,
)
from tests.harness.prometheus import PrometheusStack

DASHBOARD = load_dashboard()
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Series names in a PromQL expression (functions, labels and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        follows = text[m.end() :].lstrip()[:1]
        if follows != "(" and m.group(0).lower() not in KEYWORDS:
            names.add(m.group(0))
    return names


def for_prometheus(expr: str) -> str:
    return substitute(expr, {**BUILTINS, "instance": ".*", "job_id": ".*", "datasource": "x"})


def test_metric_name_extraction() -> None:
    expr = 'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x=~"$i"}[5m]))) / b > bool 1'
    assert metric_names(expr) == {"a_bucket", "b"}


ALL_QUERIES = queries(DASHBOARD)


@pytest.mark.parametrize(("where", "expr"), ALL_QUERIES, ids=[w for w, _ in ALL_QUERIES])
def test_every_query_uses_only_metrics_the_service_exposes(where: str, expr: str) -> None:
    unknown = metric_names(expr) - service_metric_names() - SYNTHETIC
    assert not unknown, f"{where}: {sorted(unknown)} not in ServiceMetrics"


def test_every_template_variable_query_names_an_existing_metric() -> None:
    for query in variable_queries(DASHBOARD):
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert m, query
        assert m.group(1) in service_metric_names()


def test_every_query_is_valid_promql_for_a_real_prometheus(prometheus: PrometheusStack) -> None:
    url = f"{prometheus.prometheus_url}/api/v1/query"
    with httpx.Client(timeout=5) as client:
        bad = client.get(url, params={"query": "sum by (le (rate(x[5m]))"})
        assert bad.status_code == 400 and bad.json()["errorType"] == "bad_data"
        for where, expr in ALL_QUERIES:
            response = client.get(url, params={"query": for_prometheus(expr)})
            assert response.status_code == 200, f"{where}: {response.json().get('error')}"


def test_panel_ids_are_unique_and_every_panel_fits_the_grid() -> None:
    ids = [p["id"] for p in panels(DASHBOARD)]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], int] = {}
    for p in panels(DASHBOARD):
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0, p["title"]
        assert g["x"] + g["w"] <= 24, f"{p['title']} overflows the 24 columns"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['id']} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = p["id"]


def test_every_variable_used_is_defined() -> None:
    defined = {v["name"] for v in DASHBOARD["templating"]["list"]}
    text = [t for _, t in ALL_QUERIES] + [str(p.get("datasource")) for p in panels(DASHBOARD)]
    used = {m.group(1) or m.group(2) for t in text
            for m in re.finditer(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", t)}  # fmt: skip
    assert used - set(BUILTINS) <= defined, "a query uses an undefined variable"
    assert defined <= used, "a variable that nothing uses"


def test_panels_have_targets_with_unique_ref_ids_and_titles() -> None:
    for p in panels(DASHBOARD):
        if p["type"] == "row":
            continue
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        assert p["title"].strip()


def test_the_dashboard_covers_what_it_must() -> None:
    used: set[str] = set()
    for _, expr in ALL_QUERIES:
        used |= metric_names(expr)
    for needed in ("sentinel_hosts", "sentinel_incidents", "sentinel_incidents_opened_total",
                   "sentinel_detection_latency_seconds_bucket", "sentinel_decisions",
                   "sentinel_ingest_batches_total", "sentinel_ingest_latency_seconds_bucket",
                   "sentinel_job_ettr_ratio"):  # fmt: skip
        assert needed in used


def test_the_dashboard_has_a_stable_uid_and_no_hard_coded_datasource() -> None:
    assert DASHBOARD["uid"] == "sentinel-overview"
    for p in panels(DASHBOARD):
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
