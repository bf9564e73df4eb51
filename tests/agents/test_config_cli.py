"""Configuration: validated at start, bad config exits 2 naming the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from sentinel_agent.config import load_config

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_AGENT_")}
    return subprocess.run(
        [sys.executable, "-m", "sentinel_agent", *args],
        cwd=REPO,
        text=True,
        capture_output=True,
        env={**base, **(env or {})},
        timeout=30,
    )


def test_env_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("service: {url: 'http://s:8080', token: t}\nintervals: {gpu_s: 5}\n")
    cfg = load_config(
        path,
        {
            "SENTINEL_AGENT_INTERVALS__GPU_S": "2.5",
            "SENTINEL_AGENT_HOST_ID": "gpu-0042",
            "SENTINEL_AGENT_COLLECTORS__KERNEL_LOG__ENABLED": "false",
        },
    )
    assert cfg.intervals.gpu_s == 2.5 and cfg.host_id == "gpu-0042"
    assert cfg.collectors.kernel_log.enabled is False
    assert cfg.service.base_url == "http://s:8080"


def test_token_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    cfg = load_config(
        None,
        {
            "SENTINEL_AGENT_SERVICE__URL": "http://s",
            "SENTINEL_AGENT_SERVICE__TOKEN_FILE": str(token),
        },
    )
    assert cfg.service.read_token() == "s3cret"
    with pytest.raises(ValidationError, match="exactly one"):
        load_config(None, {"SENTINEL_AGENT_SERVICE__URL": "http://s"})


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("service: {url: 'not a url', token: t}", "service.url"),
        ("service: {url: 'http://s', token: t}\nintervals: {gpu_s: 0}", "intervals.gpu_s"),
        ("service: {url: 'http://s', token: t}\nhost_id: 'bad host!'", "host_id"),
        (
            "service: {url: 'http://s', token: t}\ncollectors: {nvml: {provider: fake}}",
            "collectors.nvml",
        ),
        ("service: {url: 'http://s', token: t}\noutbox: {max_bytes: 10}", "outbox.max_bytes"),
        ("service: {url: 'http://s', token: t}\nmetrics: {prot: 1}", "metrics.prot"),
        (  # the agent keeps no pattern table: it ships what sentinel/knowledge knows
            "service: {url: 'http://s', token: t}\ncollectors: {kernel_log: {patterns: p.yaml}}",
            "collectors.kernel_log.patterns",
        ),
        (
            "service: {url: 'http://s', token: t}\n"
            "collectors: {training_logs: {unmatched: {per_s: 0}}}",
            "collectors.training_logs.unmatched.per_s",
        ),
    ],
)
def test_bad_config_exits_2_naming_the_field(tmp_path: Path, yaml_text: str, field: str) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(yaml_text)
    result = _cli("run", "--config", str(path))
    assert result.returncode == 2, result.stderr
    assert f"bad config: {field}" in result.stderr


def test_bad_scenario_file_exits_2(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("gpus: nonsense")
    path = tmp_path / "a.yaml"
    path.write_text(
        "service: {url: 'http://s', token: t}\n"
        f"outbox: {{path: '{tmp_path}/o.db'}}\nmetrics: {{enabled: false}}\n"
        f"collectors: {{nvml: {{provider: fake, scenario: '{scenario}'}}, kernel_log: "
        "{enabled: false}, heartbeat: {enabled: false}, flight_recorder: {enabled: false}}\n"
    )
    result = _cli("run", "--config", str(path))
    assert result.returncode == 2 and "collectors.nvml.scenario" in result.stderr


def test_check_config_hides_the_token(tmp_path: Path) -> None:
    result = _cli(
        "check-config",
        env={"SENTINEL_AGENT_SERVICE__URL": "http://s", "SENTINEL_AGENT_SERVICE__TOKEN": "hunter2"},
    )
    assert result.returncode == 0 and "hunter2" not in result.stdout
    assert '"host_id"' in result.stdout
