"""docker-compose.yml, checked without a Docker engine: pinned images, free ports, mounts
that exist, and the very provisioning and Prometheus files the other tests check; and what
issue 18 found missing: a way in (the operator token bootstrapped at the first start), "Sentinel
is down" routed around Sentinel, PUBLIC_URL in links, /data a volume."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.helpers import DASHBOARD, DASHBOARDS, ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def mounts(service: str) -> dict[str, Path]:
    """Container path -> repository path for the service's bind mounts."""
    out = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            out[target] = (ROOT / source).resolve()
    return out


def test_the_stack_has_its_five_services() -> None:
    assert set(SERVICES) == {"sentinel", "postgres", "prometheus", "alertmanager", "grafana"}


def test_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]*\d[\w.-]*(@sha256:[0-9a-f]{64})?", image), image
        assert not image.endswith(":latest"), name


def test_host_ports_do_not_collide() -> None:
    ports = [p.split(":")[0] for s in SERVICES.values() for p in s.get("ports", [])]
    assert len(ports) == len(set(ports))


def test_every_mounted_file_exists_in_the_repository() -> None:
    for name in SERVICES:
        for target, source in mounts(name).items():
            assert source.exists(), f"{name}: {source} (for {target}) is missing"
            assert ROOT in source.parents


def test_sentinel_is_built_here_and_migrates_before_serving() -> None:
    sentinel = SERVICES["sentinel"]
    assert (ROOT / sentinel["build"]["context"] / sentinel["build"]["dockerfile"]).is_file()
    command = " ".join(sentinel["command"])
    assert re.search(r"sentinel migrate && exec sentinel serve", command)
    assert sentinel["environment"]["SENTINEL_DATABASE__URL"].startswith(
        "postgresql://sentinel:sentinel@postgres:5432/"
    )
    assert sentinel["depends_on"]["postgres"]["condition"] == "service_healthy"
    tokens = sentinel["environment"]["SENTINEL_AUTH__TOKENS_FILE"]
    assert tokens in mounts("sentinel")


def test_the_alertmanager_token_is_a_sentinel_agent_token() -> None:
    from sentinel.auth import AuthSettings, digest

    token_file = mounts("alertmanager")["/etc/alertmanager/agent-token"]
    tokens_file = mounts("sentinel")["/etc/sentinel/tokens.yml"]
    specs = AuthSettings(tokens_file=tokens_file).all_tokens()
    secret = token_file.read_text().strip()
    assert any(s.sha256 == digest(secret) and s.role == "agent" for s in specs)


def test_grafana_mounts_the_checked_provisioning_and_dashboard() -> None:
    grafana = mounts("grafana")
    assert grafana["/etc/grafana/provisioning"] == DASHBOARDS / "grafana" / "provisioning"
    provider = yaml.safe_load(
        (grafana["/etc/grafana/provisioning"] / "dashboards" / "sentinel.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    assert grafana[path] == DASHBOARD.parent  # the dashboard the lint and PromQL tests check
    datasource = yaml.safe_load(
        (grafana["/etc/grafana/provisioning"] / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"


def test_prometheus_mounts_the_checked_config_and_scrapes_sentinel() -> None:
    prometheus = mounts("prometheus")
    config_path = prometheus["/etc/prometheus/prometheus.yml"]
    assert config_path == DASHBOARDS / "prometheus.yml"
    assert prometheus["/etc/prometheus/rules"] == DASHBOARDS / "rules"
    config = yaml.safe_load(config_path.read_text())
    targets = {t for job in config["scrape_configs"] for s in job["static_configs"]
               for t in s["targets"]}  # fmt: skip
    port = SERVICES["sentinel"]["environment"]["SENTINEL_SERVER__PORT"]
    assert f"sentinel:{port}" in targets
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager:9093"
    ]
    image = SERVICES["prometheus"]["image"]
    assert image.endswith(":v2.42.0")  # the version the tests run against


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_the_mounted_prometheus_config_passes_promtool() -> None:
    path = mounts("prometheus")["/etc/prometheus/prometheus.yml"]
    result = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True,
                            text=True, timeout=30, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed")
def test_the_mounted_alertmanager_config_passes_amtool() -> None:
    path = mounts("alertmanager")["/etc/alertmanager/alertmanager.yml"]
    result = subprocess.run(["amtool", "check-config", str(path)], capture_output=True,
                            text=True, timeout=30, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    webhook = config["receivers"][0]["webhook_configs"][0]
    assert webhook["url"] == "http://sentinel:8600/api/v1/alertmanager"
    assert webhook["http_config"]["authorization"]["credentials_file"] in mounts("alertmanager")


def test_the_dockerfile_installs_the_server_and_leaves_out_the_tests() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim", dockerfile, re.M)
    assert "'.[server,fast]'" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for match in re.finditer(r"^ENV ((?:.*\\\n)*.*)$", (ROOT / "Dockerfile").read_text(), re.M):
        for pair in match.group(1).replace("\\\n", " ").split():
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def test_the_data_dir_is_a_named_volume() -> None:
    assert _dockerfile_env()["SENTINEL_DATA_DIR"] == "/data"
    volumes = SERVICES["sentinel"]["volumes"]
    named = [v.split(":")[0] for v in volumes if v.split(":")[1] == "/data"]
    assert named == ["sentinel-data"]
    assert "sentinel-data" in COMPOSE["volumes"]


def test_public_url_is_set_and_is_the_setting_links_use() -> None:
    from sentinel.settings import Settings

    value = SERVICES["sentinel"]["environment"]["SENTINEL_ALERTING__PUBLIC_URL"]
    found = re.fullmatch(r"\$\{PUBLIC_URL:-(http[^}]+)\}", value)
    assert found, value  # the operator's PUBLIC_URL, else the published port
    default = found.group(1)
    assert default.endswith(":" + SERVICES["sentinel"]["ports"][0].split(":")[0])
    # The variable is the alerting setting of that name (a misspelt one is refused).
    os.environ["SENTINEL_ALERTING__PUBLIC_URL"] = default
    try:
        assert Settings().alerting.public_url == default
    finally:
        del os.environ["SENTINEL_ALERTING__PUBLIC_URL"]


def test_the_first_start_bootstraps_an_operator_token() -> None:
    """The committed tokens file has no operator (no secret of one in the repository); the
    service makes one at its first start and keeps its digest in the data volume."""
    from sentinel.auth import AuthSettings

    specs = AuthSettings(tokens_file=mounts("sentinel")["/etc/sentinel/tokens.yml"]).all_tokens()
    assert not any(s.role == "operator" for s in specs)
    env = SERVICES["sentinel"]["environment"]
    assert "SENTINEL_AUTH__BOOTSTRAP_OPERATOR" not in env
    assert AuthSettings().bootstrap_operator
    assert "SENTINEL_AUTH__BOOTSTRAP_FILE" not in env  # in data_dir, the sentinel-data volume


def _route_of(alertname: str) -> str:
    """The receiver Alertmanager's routing tree gives an alert (first matching child route)."""
    config = yaml.safe_load((DASHBOARDS / "alertmanager.yml").read_text())
    for route in config["route"].get("routes", []):
        for matcher in route.get("matchers", []):
            found = re.fullmatch(r'alertname=~"(.+)"', matcher)
            if found and re.fullmatch(found.group(1), alertname):
                return str(route["receiver"])
    return str(config["route"]["receiver"])


@pytest.mark.parametrize("alert", ["SentinelDown", "SentinelAbsent"])
def test_sentinel_down_is_routed_around_sentinel(alert: str) -> None:
    rules = yaml.safe_load((DASHBOARDS / "rules" / "sentinel.yml").read_text())
    assert alert in {r.get("alert") for g in rules["groups"] for r in g["rules"]}
    config = yaml.safe_load((DASHBOARDS / "alertmanager.yml").read_text())
    receiver = _route_of(alert)
    [spec] = [r for r in config["receivers"] if r["name"] == receiver]
    assert "sentinel:" not in json.dumps(spec), spec  # not through Sentinel
    assert spec.get("slack_configs") or spec.get("pagerduty_configs"), spec
    for slack in spec.get("slack_configs", []):
        assert slack["api_url_file"] in mounts("alertmanager")
    assert _route_of("TriageLagging") == "sentinel"  # the rest still goes through Sentinel


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed")
@pytest.mark.parametrize(
    ("alert", "receiver"),
    [("SentinelDown", "oncall"), ("SentinelAbsent", "oncall"), ("HostsUnhealthy", "sentinel")],
)
def test_alertmanager_itself_routes_sentinel_down_around_it(alert: str, receiver: str) -> None:
    result = subprocess.run(
        ["amtool", "config", "routes", "test", "--config.file",
         str(DASHBOARDS / "alertmanager.yml"), f"alertname={alert}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [receiver]
