"""Alert rules and the Prometheus config, checked and unit-tested by promtool itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards.helpers import DASHBOARDS, service_metric_names
from dashboards.test_dashboard import metric_names

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (prometheus)")
RULES = sorted((DASHBOARDS / "rules").glob("*.yml"))
TESTS = sorted((DASHBOARDS / "tests").glob("*.yml"))


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=30, check=False
    )


def test_rules_pass_promtool_check() -> None:
    assert RULES
    result = promtool("check", "rules", *RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_promtool_unit_tests() -> None:
    assert TESTS
    result = promtool("test", "rules", *TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    alerts = {r["alert"] for f in RULES for g in yaml.safe_load(f.read_text())["groups"]
              for r in g["rules"] if "alert" in r}  # fmt: skip
    tested = {case["alertname"] for f in TESTS for t in yaml.safe_load(f.read_text())["tests"]
              for case in t.get("alert_rule_test", [])}  # fmt: skip
    assert {"SentinelDown", "IngestLatencyHigh", "HostsUnhealthy", "IncidentOpenTooLong"} <= alerts
    assert alerts == tested


def test_rules_use_only_metrics_the_service_exposes() -> None:
    known = service_metric_names() | {"up"}
    for f in RULES:
        for group in yaml.safe_load(f.read_text())["groups"]:
            for rule in group["rules"]:
                assert metric_names(rule["expr"]) <= known, rule


def test_rule_tests_stay_out_of_the_rule_files_glob() -> None:
    config = yaml.safe_load((DASHBOARDS / "prometheus.yml").read_text())
    matched = {p for pattern in config["rule_files"] for p in DASHBOARDS.glob(pattern)}
    assert matched == set(RULES)


def test_prometheus_config_passes_promtool_check() -> None:
    result = promtool("check", "config", DASHBOARDS / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
