"""The collector protocol and what every collector is handed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agents.clock import Clock
from agents.metrics import AgentMetrics
from sentinel.wire import Observation


class Emit(Protocol):
    def __call__(self, observations: Sequence[Observation], *, critical: bool = False) -> None:
        """Queue observations durably; critical ones (XID, GPU lost) are sent at once.

        XIDs are always critical; ``critical=True`` marks others, e.g. a GPU just lost.
        """
        ...


class Collector(Protocol):
    """Polled every ``interval_s`` from a worker thread; raising marks it failing.

    ``poll`` returns what it saw since the last call. A collector that also watches in the
    background (NVML's XID events) hands its findings to ``Emit`` as they happen.
    """

    name: str
    interval_s: float

    def poll(self) -> Sequence[Observation]: ...

    def close(self) -> None: ...


@dataclass
class HostState:
    """Facts one collector learns and another needs, e.g. which GPU sits at a PCI address."""

    gpu_by_pci: dict[str, int] = field(default_factory=dict)
    job_id: str | None = None


@dataclass(frozen=True)
class Context:
    host_id: str
    clock: Clock
    emit: Emit
    metrics: AgentMetrics
    state: HostState
