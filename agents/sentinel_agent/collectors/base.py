"""The collector protocol and what every collector is handed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from sentinel.wire import Observation
from sentinel_agent.clock import Clock
from sentinel_agent.metrics import AgentMetrics


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


@runtime_checkable
class Positioned(Protocol):
    """A collector that reads a source it can resume: log files, /dev/kmsg.

    After each ``poll`` the agent asks for the read positions and stores them in the outbox
    in the same transaction as what ``poll`` returned, so that after a crash the collector
    resumes exactly after the lines whose observations were stored. Keys are the
    collector's own (name them ``<collector>:<path>``); ``None`` forgets a key.
    """

    def positions(self) -> Mapping[str, str | None]: ...


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
    # Read positions the previous run stored (see Positioned), by key.
    positions: Mapping[str, str] = field(default_factory=dict)
