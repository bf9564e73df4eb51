"""The deployment files in deploy/: the example agent config lists every key with its default
and loads with the agent's own config model; the systemd units start console scripts that
the package installs, with arguments their CLIs accept (issue 18: they were only in docs)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from sentinel_agent.config import AgentConfig, load_config

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
EXAMPLE = DEPLOY / "agent.example.yaml"
# Keys the example shows commented out or as the example's own: the host's name (default: the
# hostname), the token (token_file is set instead; exactly one of the two), the service's URL.
NOT_DEFAULTS = {"host_id", "service.token", "service.url", "service.token_file"}


def _model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(prefix + name)
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            keys |= _model_keys(kind, f"{prefix}{name}.")
    return keys


def _yaml_keys(tree: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for name, value in tree.items():
        keys.add(prefix + name)
        # a dict-valued field (infiniband.thresholds) is a value, not a section
        if isinstance(value, dict) and prefix + name != "collectors.infiniband.thresholds":
            keys |= _yaml_keys(value, f"{prefix}{name}.")
    return keys


def test_the_example_agent_config_loads_with_the_agents_model() -> None:
    config = load_config(EXAMPLE, environ={})
    assert str(config.service.url) == "https://sentinel.example:8600/"
    assert config.service.token_file == Path("/etc/sentinel/agent.token")


def test_the_example_agent_config_has_every_key() -> None:
    written = _yaml_keys(yaml.safe_load(EXAMPLE.read_text()))
    model = _model_keys(AgentConfig)
    missing = sorted(model - written - NOT_DEFAULTS)
    assert missing == [], f"add these keys, with their defaults, to {EXAMPLE}: {missing}"
    assert sorted(written - model) == []


def test_the_example_agent_config_shows_the_defaults() -> None:
    config = load_config(EXAMPLE, environ={})
    default = AgentConfig(host_id=config.host_id, service=config.service)
    assert config.model_dump(mode="json") == default.model_dump(mode="json")


def _unit(name: str) -> dict[str, str]:
    """The [Service] keys of a systemd unit (one value each: the units here repeat none)."""
    values: dict[str, str] = {}
    section = ""
    for line in (DEPLOY / "systemd" / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        if section == "Service":
            assert key not in values, f"{name}: {key} twice"
            values[key] = value
    return values


SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize(
    ("unit", "keys"),
    [
        ("sentinel-agent.service", ("ExecStartPre", "ExecStart")),
        ("sentinel.service", ("ExecStartPre", "ExecStart")),
    ],
)
def test_the_units_start_installed_console_scripts(unit: str, keys: tuple[str, ...]) -> None:
    service = _unit(unit)
    for key in keys:
        argv = shlex.split(service[key])
        script = Path(argv[0]).name
        assert script in SCRIPTS, f"{unit} {key}: {script} is not a console script"
        # the script's entry point, with the unit's sub-command: it exists and takes these
        module, function = SCRIPTS[script].split(":")
        entry = f"import sys; sys.argv = sys.argv[1:]; import {module} as m; m.{function}()"
        run = subprocess.run(
            [sys.executable, "-c", entry, script, *argv[1:2], "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("SENTINEL")},
        )
        assert run.returncode == 0, (unit, key, run.stderr)
        for option in (a for a in argv[2:] if a.startswith("--")):
            assert option in run.stdout, f"{unit} {key}: {argv[1]} has no {option}"


def test_the_agent_unit_runs_the_example_configs_paths() -> None:
    """The unit's state and runtime folders are the example's outbox and heartbeat socket."""
    service = _unit("sentinel-agent.service")
    config = load_config(EXAMPLE, environ={})
    assert config.outbox.path.parent == Path("/var/lib") / service["StateDirectory"]
    assert config.collectors.heartbeat.address.startswith(
        f"unix:///run/{service['RuntimeDirectory']}/"
    )
    assert "--config /etc/sentinel/agent.yaml" in service["ExecStart"]
