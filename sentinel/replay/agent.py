"""A recording's printed log lines, read by the agent's own log collectors into batches.

Each host that prints gets an agent of its own: its kernel log and training logs are real
files, tailed by the real `KernelLogCollector` and `TrainingLogCollector` with the packaged
knowledge and the default rate limits, on a clock set to the recording's time. So a replay
sends the service what the agent would have shipped, through the same filter, grouping of
multi-line messages and rate limit as production, never a record the agent could not make.

A host's other sources (mcelog, the BMC's SEL, InfiniBand sysfs, DCGM's health watches) are
read by the agent's collectors for them too (`sentinel.replay.sources`), polled with the logs:
a line is printed at the time the agent's poll reads it.

What the agent learns from its other collectors comes from the host's recorded batches: the
GPUs' PCI addresses (its NVML samples) and the job (its ranks' heartbeats). Each poll that
ships something is one batch, posted at the poll's time (the sender, which holds routine
observations for a few seconds, is not modelled).
"""

from __future__ import annotations

import itertools
import json
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sentinel.replay.recording import Line, Printed
from sentinel.replay.sources import SOURCES, HostSources
from sentinel.wire import Batch, Observation
from sentinel.wire.identity import normalize_pci
from sentinel_agent.clock import ManualClock
from sentinel_agent.collectors.base import Collector, Context, HostState
from sentinel_agent.collectors.kernel_log import KernelLogCollector
from sentinel_agent.collectors.training_log import TRACEBACK_FLUSH_S, TrainingLogCollector
from sentinel_agent.config import Intervals
from sentinel_agent.metrics import AgentMetrics

# The agent's default tailing interval: an open multi-line message is shipped on a later poll.
POLL_S: Final = Intervals().logs_s
# Polls go on this long after a host's last printed line: a traceback's idle time, and one.
QUIET_S: Final = TRACEBACK_FLUSH_S + POLL_S
# The collectors' batches are numbered apart from the host's recorded ones: a seq is a batch's
# identity, never reused.
SEQ_BASE: Final = 1 << 40
# Observation ids derived from the host and the batch, so that a replay is reproducible.
_IDS: Final = uuid.UUID("5e4c0a6f-3d1b-4d39-9a55-7a1d0c2b9e10")


def _nothing(observations: Sequence[Observation], *, critical: bool = False) -> None:
    """The log collectors hand everything back from `poll`; none of them emits."""


class HostAgent:
    """One host's log collectors, tailing files in `folder`, on the recording's clock."""

    def __init__(
        self,
        host: str,
        folder: Path,
        training_files: set[str],
        start: datetime,
        sources: frozenset[str] = frozenset(),
    ):
        self.host = host
        self.clock = ManualClock(start)
        self.state = HostState()
        ctx = Context(
            host_id=host,
            clock=self.clock,
            emit=_nothing,
            metrics=AgentMetrics(host),
            state=self.state,
        )
        folder.mkdir(parents=True)
        self._kernel = folder / "kern.log"
        self._training = {name: folder / "training" / name for name in sorted(training_files)}
        for path in [self._kernel, *self._training.values()]:
            path.parent.mkdir(exist_ok=True)
            path.touch()
        self._collectors: list[Collector] = [
            KernelLogCollector(ctx, path=self._kernel, interval_s=POLL_S, from_start=True),
            TrainingLogCollector(
                ctx,
                paths=[str(p) for p in self._training.values()],
                interval_s=POLL_S,
                from_start=True,
            ),
        ]
        self._sources = HostSources(ctx, self.clock, folder, sources, POLL_S)
        self._collectors += self._sources.collectors
        self._seq = SEQ_BASE
        self._last_poll = start
        self._quiet_at = start

    def learn(self, batch: dict[str, Any]) -> None:
        """What the host's NVML and heartbeat collectors tell the log collectors."""
        for obs in batch.get("observations", []):
            if obs.get("kind") == "gpu_sample" and obs.get("pci_bus_id"):
                self.state.gpu_by_pci[normalize_pci(obs["pci_bus_id"])] = obs["gpu_index"]
            elif obs.get("kind") == "heartbeat":
                self.state.job_id = obs["job_id"]

    def catch_up(self, until: datetime | None = None) -> list[Line]:
        """The polls between the last one and `until` (None: until all is quiet), every
        `POLL_S`, while a message may still be open."""
        out: list[Line] = []
        step = timedelta(seconds=POLL_S)
        while self._last_poll + step <= self._quiet_at and (
            until is None or self._last_poll + step < until
        ):
            out += self.poll(self._last_poll + step)
        return out

    def print(self, at: datetime, printed: Printed) -> None:
        """The host prints `printed` at `at` (the caller polls once it has printed all)."""
        if printed.log in SOURCES:
            self.clock.advance((at - self.clock.now()).total_seconds())
            self._sources.write(printed)
        else:
            path = self._kernel if printed.file is None else self._training[printed.file]
            with path.open("a") as f:
                f.write(printed.text + "\n")
        self._quiet_at = at + timedelta(seconds=QUIET_S)

    def poll(self, at: datetime) -> list[Line]:
        self.clock.advance((at - self.clock.now()).total_seconds())
        self._last_poll = at
        shipped = [obs for collector in self._collectors for obs in collector.poll()]
        if not shipped:
            return []
        self._seq += 1
        batch = Batch(
            host_id=self.host,
            agent_id=f"{self.host}-agent",
            seq=self._seq,
            sent_at=at,
            observations=[
                obs.model_copy(update={"id": uuid.uuid5(_IDS, f"{self.host}/{self._seq}/{n}")})
                for n, obs in enumerate(shipped)
            ],
        )
        line = Line(at=at, batch=batch.model_dump(mode="json"))
        line.batch_json = json.dumps(line.batch)
        return [line]

    def close(self) -> None:
        for collector in self._collectors:
            collector.close()


@contextmanager
def host_agents(lines: Sequence[Line]) -> Iterator[dict[str, HostAgent]]:
    """An agent for every host that prints in `lines`, each with the files it prints to."""
    files: dict[str, set[str]] = {}
    sources: dict[str, set[str]] = {}
    for line in lines:
        if line.lines is not None:
            named = files.setdefault(line.lines.host, set())
            sources.setdefault(line.lines.host, set()).add(line.lines.log)
            if line.lines.file is not None:
                named.add(line.lines.file)
    with tempfile.TemporaryDirectory(prefix="sentinel-replay-agents-") as tmp, ExitStack() as stack:
        agents: dict[str, HostAgent] = {}
        for host, named in files.items():
            agents[host] = HostAgent(
                host, Path(tmp) / host, named, lines[0].at, frozenset(sources[host])
            )
            stack.callback(agents[host].close)
        yield agents


def through_the_agents(lines: list[Line]) -> list[Line]:
    """The recording (in time order) with its printed lines replaced by the batches the hosts'
    agents ship for them, in time order."""
    if all(line.lines is None for line in lines):
        return lines
    out = [line for line in lines if line.lines is None]
    with host_agents(lines) as agents:
        for at, same_time in itertools.groupby(lines, key=lambda x: x.at):
            involved = [(line, agents[h]) for line in same_time if (h := _host(line)) in agents]
            for agent in {agent.host: agent for _, agent in involved}.values():
                out += agent.catch_up(at)
            # What a host prints at one instant is read by one poll, shipped in one batch.
            printing: dict[str, HostAgent] = {}
            for line, agent in involved:
                if line.batch is not None:
                    agent.learn(line.batch)
                if line.lines is not None:
                    agent.print(at, line.lines)
                    printing[agent.host] = agent
            for agent in printing.values():
                out += agent.poll(at)
        for agent in agents.values():
            out += agent.catch_up()
    return sorted(out, key=lambda x: x.at)


def _host(line: Line) -> str | None:
    if line.lines is not None:
        return line.lines.host
    return None if line.batch is None else line.batch.get("host_id")
