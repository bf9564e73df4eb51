"""A fake fleet for demos and tests: N agents with the scripted GPU provider in ONE process.

Every agent has its own host id, outbox and sender, and they share one event loop::

    import asyncio
    from sentinel_agent.sim import fleet_configs, run_fleet

    configs = fleet_configs(64, service_url="http://127.0.0.1:8080", token=AGENT_TOKEN,
                            workdir=Path("var/fleet"),
                            scenarios={"sim-0017": "xid79"})          # the rest: healthy
    asyncio.run(run_fleet(configs, duration_s=120, job_id="llama-405b", ranks_per_host=8))

With ``job_id`` each agent also reports heartbeats for its ranks (rank = host number x
ranks_per_host + local rank, GPU = local rank), and a rank whose GPU is lost stops beating,
as a hung rank would. For N separate processes instead, write each config to YAML with
``config_yaml`` and start ``sentinel-agent run --config FILE`` per host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sentinel.wire import HeartbeatSummary
from sentinel_agent.agent import Agent
from sentinel_agent.collectors.nvml import NvmlCollector
from sentinel_agent.config import HARDWARE_COLLECTORS, AgentConfig

SCENARIOS = Path(__file__).parent / "scenarios"
log = logging.getLogger(__name__)


def scenario_path(name_or_path: str | Path) -> Path:
    """A scenario by name (``xid79``) from agents/sentinel_agent/scenarios, or any scenario file."""
    path = Path(name_or_path)
    return path if path.suffix in (".yaml", ".yml") else SCENARIOS / f"{name_or_path}.yaml"


def fleet_configs(
    n: int,
    *,
    service_url: str,
    token: str,
    workdir: Path,
    scenarios: Mapping[str, str | Path] | None = None,
    default_scenario: str | Path = "healthy",
    host_prefix: str = "sim-",
    gpu_interval_s: float = 10.0,
    send_interval_s: float = 5.0,
    heartbeat_interval_s: float = 5.0,
    status_interval_s: float = 60.0,
) -> list[AgentConfig]:
    """One config per host ``{host_prefix}{i:04d}``; ``scenarios`` maps host id -> scenario."""
    chosen = dict(scenarios or {})
    configs = []
    for i in range(n):
        host_id = f"{host_prefix}{i:04d}"
        data: dict[str, Any] = {
            "host_id": host_id,
            "service": {"url": service_url, "token": token},
            "intervals": {
                "gpu_s": gpu_interval_s,
                "send_s": send_interval_s,
                "heartbeat_s": heartbeat_interval_s,
                "status_s": status_interval_s,
            },
            "collectors": {
                "nvml": {
                    "provider": "fake",
                    "scenario": str(scenario_path(chosen.get(host_id, default_scenario))),
                },
                "kernel_log": {"enabled": False},
                "training_logs": {"enabled": False},
                "heartbeat": {"enabled": False},
                "flight_recorder": {"enabled": False},
                # The simulating machine's own hardware is no simulated host's.
                **{name: {"enabled": False} for name in HARDWARE_COLLECTORS},
            },
            "outbox": {"path": str(workdir / host_id / "outbox.db")},
            "metrics": {"enabled": False},
        }
        configs.append(AgentConfig.model_validate(data))
    return configs


def config_yaml(config: AgentConfig) -> str:
    """The config as a YAML file for ``sentinel-agent run --config`` (one process per host)."""
    return yaml.safe_dump(config.model_dump(mode="json", exclude_none=True), sort_keys=False)


async def _beat(
    agent: Agent,
    host_number: int,
    job_id: str,
    ranks_per_host: int,
    world_size: int,
    stop: asyncio.Event,
) -> None:
    nvml = next((c for c in agent.collectors if isinstance(c, NvmlCollector)), None)
    step = 0
    interval = agent.config.intervals.heartbeat_s
    while not stop.is_set():
        step += 1
        lost = nvml.lost_gpus if nvml else frozenset()
        now = agent.clock.now()
        beats = [
            HeartbeatSummary(
                id=uuid.uuid4(),
                observed_at=now,
                job_id=job_id,
                rank=host_number * ranks_per_host + local,
                local_rank=local,
                gpu_index=local,
                step=step,
                step_time_s=interval,
                beats=1,
                last_beat_at=now,
                world_size=world_size,
            )
            for local in range(ranks_per_host)
            if local not in lost
        ]
        agent.emit(beats)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def run_fleet(
    configs: list[AgentConfig],
    *,
    stop: asyncio.Event | None = None,
    duration_s: float | None = None,
    job_id: str | None = None,
    ranks_per_host: int = 8,
) -> list[Agent]:
    """Run the agents until ``stop`` is set or ``duration_s`` passes; returns them (closed)."""
    stop = stop or asyncio.Event()
    agents = [Agent(config) for config in configs]
    tasks = [asyncio.create_task(agent.run(stop), name=agent.config.host_id) for agent in agents]
    if job_id is not None:
        world = ranks_per_host * len(agents)
        tasks += [
            asyncio.create_task(_beat(agent, i, job_id, ranks_per_host, world, stop))
            for i, agent in enumerate(agents)
        ]
    if duration_s is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=duration_s)
        stop.set()
    await asyncio.gather(*tasks)
    return agents


def main() -> None:
    """``python -m sentinel_agent.sim N URL TOKEN [HOST=SCENARIO ...]``: a quick demo fleet."""
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    n, url, token, *pairs = sys.argv[1:]
    chosen = dict(pair.split("=", 1) for pair in pairs)
    configs = fleet_configs(
        int(n), service_url=url, token=token, workdir=Path("var/fleet"), scenarios=chosen
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_fleet(configs, job_id="sim-job"))


if __name__ == "__main__":
    main()
