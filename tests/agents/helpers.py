"""Builders shared by the agent tests."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.clock import ManualClock
from agents.collectors.base import Context, HostState
from agents.config import AgentConfig
from agents.metrics import AgentMetrics
from sentinel.wire import EccEvent, GpuSample, Observation, XidEvent


class Sink:
    """An Emit that remembers what it was given."""

    def __init__(self) -> None:
        self.items: list[Observation] = []
        self.critical: list[Observation] = []

    def __call__(self, observations: Sequence[Observation], *, critical: bool = False) -> None:
        self.items.extend(observations)
        if critical:
            self.critical.extend(observations)


def context(clock: ManualClock | None = None, host_id: str = "host-1") -> tuple[Context, Sink]:
    sink = Sink()
    ctx = Context(host_id=host_id, clock=clock or ManualClock(), emit=sink,
                  metrics=AgentMetrics(host_id), state=HostState())
    return ctx, sink


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def sample(gpu: int = 0) -> GpuSample:
    return GpuSample(id=uuid.uuid4(), observed_at=NOW, gpu_index=gpu, temperature_c=50.0)


def xid(n: int = 79) -> XidEvent:
    return XidEvent(id=uuid.uuid4(), observed_at=NOW, xid=n, gpu_index=0)


def ecc() -> EccEvent:
    return EccEvent(id=uuid.uuid4(), observed_at=NOW, gpu_index=0,
                    counter="ecc_volatile_uncorrected", previous=0, current=1)


def agent_config(tmp_path: Path, url: str, token: str, **over: Any) -> AgentConfig:
    """A fast config: everything on short intervals, nothing on fixed ports."""
    data: dict[str, Any] = {
        "host_id": "host-1",
        "service": {"url": url, "token": token},
        "intervals": {"gpu_s": 0.2, "logs_s": 0.1, "heartbeat_s": 0.2,
                      "flight_recorder_s": 0.1, "status_s": 0.5, "send_s": 0.2},
        "collectors": {
            "nvml": {"provider": "fake",
                     "scenario": str(Path(__file__).parents[2] / "agents/scenarios/healthy.yaml")},
            "kernel_log": {"path": str(tmp_path / "kern.log")},
            "training_logs": {"enabled": True, "paths": [str(tmp_path / "train*.log")]},
            "heartbeat": {"address": f"unix://{tmp_path}/hb.sock"},
            "flight_recorder": {"prefix": str(tmp_path / "fr" / "nccl_trace_rank_"),
                                "settle_s": 0.2},
        },
        "outbox": {"path": str(tmp_path / "outbox.db"), "backoff_initial_s": 0.1,
                   "backoff_max_s": 0.5},
        "metrics": {"enabled": False},
    }
    for key, value in over.items():
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return AgentConfig.model_validate(data)
