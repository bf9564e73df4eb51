"""The replay cases' fleet and case registry: a Fleet with reproducible ids and a few more
injections (late delivery, stragglers, other sources), the `@case` registry the builder runs,
and `write`/`incident` for a case's recording and expectations."""

from __future__ import annotations

import gzip
import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentinel.replay.synth import Fleet

BUILDERS: dict[str, Callable[[Path], None]] = {}

# Cases that fail for a reason outside triage (the service's incident lifecycle); built only
# with --held-back, each with the reason, so they join the corpus once the service is fixed.
HELD_BACK: dict[str, str] = {}


def case(fn: Callable[[Path], None]) -> Callable[[Path], None]:
    """Register a case: its name is the function's, its description the function's docstring."""
    if not fn.__doc__:
        raise ValueError(f"case {fn.__name__} has no docstring: it is the case's description")
    BUILDERS[fn.__name__.replace("_", "-")] = fn
    return fn


def held_back(reason: str) -> Callable[[Callable[[Path], None]], Callable[[Path], None]]:
    def mark(fn: Callable[[Path], None]) -> Callable[[Path], None]:
        HELD_BACK[fn.__name__.replace("_", "-")] = reason
        return case(fn)

    return mark


@dataclass
class CaseFleet(Fleet):
    """A Fleet whose observation ids are a counter: reproducible recordings that compress well.

    Agents choose random UUIDs; here random ones would be ~40% of a recording's gzipped size
    and change on every rebuild. Triage never reads ids, it only needs them unique.

    Beyond the base fleet: host numbers may start past 0 (a second job's hosts), other jobs'
    fleets may share the recording, an event may reach the service late, and a host's ranks
    may slow down (a straggler).
    """

    first_host: int = 0
    also: list[CaseFleet] = field(default_factory=list)
    _ids: itertools.count[int] | None = None
    _late: list[tuple[float, float, int, dict[str, Any]]] = field(default_factory=list)
    _slow: dict[int, tuple[float, float]] = field(default_factory=dict)
    _nodes: list[tuple[float, str]] = field(default_factory=list)

    def _obs(self, t: float, obs: dict[str, Any]) -> dict[str, Any]:
        if self._ids is None:
            self._ids = itertools.count(1)
        oid = uuid.UUID(int=(self.seed << 64) | next(self._ids))
        return {"id": str(oid), "observed_at": self.at(t).isoformat(), **obs}

    def late(self, t: float, delivered: float, host: int, obs: dict[str, Any]) -> None:
        """An observation made at t that reaches the service only at `delivered`."""
        self._late.append((t, delivered, host, obs))

    def mcelog(self, t: float, host: int, record: str) -> None:
        """At time t mcelog writes this record to its log (/var/log/mcelog)."""
        self._printed.append((t, host, {"log": "mcelog", "text": record}))

    def sel(self, t: float, host: int, *entries: str) -> None:
        """By time t (when the agent's poll reads it) the host's BMC has added these entries
        to its SEL, each as `ipmitool sel elist` prints it."""
        self._printed.append((t, host, {"log": "ipmi_sel", "text": "\n".join(entries)}))

    def redfish(self, t: float, host: int, *entries: dict[str, Any]) -> None:
        """By time t (when the agent's poll reads it) the host's BMC has added these LogEntry
        resources to its Redfish event log."""
        text = "\n".join(json.dumps(e) for e in entries)
        self._printed.append((t, host, {"log": "redfish", "text": text}))

    def sysfs(self, t: float, host: int, *writes: str) -> None:
        """At time t these InfiniBand sysfs files of the host hold new values, each
        `<path under /sys/class/infiniband> <value>`."""
        self._printed.append((t, host, {"log": "infiniband", "text": "\n".join(writes)}))

    def dcgm_health(self, t: float, host: int, output: str) -> None:
        """From time t `dcgmi health -c -j` on the host answers `output`."""
        self._printed.append((t, host, {"log": "dcgm_health", "text": output}))

    def slurm_nodes(self, t: float, output: str) -> None:
        """From time t `scontrol show nodes --json` prints `output`."""
        self._nodes.append((t, output))

    def slow_down(self, t: float, host: int, factor: float) -> None:
        """From time t the host's ranks take `factor` times as long per step (a straggler)."""
        self._slow[host] = (t, factor)

    def lines(self, duration: float) -> list[dict[str, Any]]:
        out = super().lines(duration)
        # Out of the agent's usual sequence, so it is no duplicate of a regular batch.
        for n, (t, delivered, h, obs) in enumerate(self._late, 1):
            out.append(self._line(h, 1_000_000 + n, delivered, [self._obs(t, obs)]))
        for t, text in self._nodes:
            out.append({"at": self.at(t).isoformat(), "nodes": text})
        for other in self.also:
            out += other.lines(duration)
        return sorted(out, key=lambda x: x["at"])

    def _beats(self, h: int, t: float) -> list[dict[str, Any]]:
        beats = super()._beats(h, t)
        since, factor = self._slow.get(h, (t, 1.0))
        progress = min(t, self._stalls.get(h, t))
        if not beats or progress <= since:
            return beats
        slow = self.step_time * factor
        step = int(since / self.step_time) + int((progress - since) / slow)
        return [b | {"step": step, "step_time_s": slow} for b in beats]

    # ---------------------------------------------------------------- names as tools print them

    def name(self, host: int) -> str:
        return f"node-{self.first_host + host:04d}"

    def bus(self, gpu: int) -> str:
        """The GPU's address as dmesg prints it in an Xid line: 0000:5d:00."""
        return self.pci(gpu)[4:].lower()[:10]

    def ip(self, host: int, port: int = 0) -> str:
        """The address of one of the host's eight IB ports (one subnet per rail)."""
        n = self.first_host + host
        return f"10.{128 + port}.{n // 8}.{n % 8 + 10}"

    def rank(self, host: int, gpu: int) -> int:
        return host * self.gpus + gpu


def write(
    f: Fleet, folder: Path, duration: float, incidents: list[dict[str, Any]], **extra: Any
) -> None:
    """Write the case in `folder` (named after its case): the recording of `duration` seconds
    and what triage must conclude (`incidents`, and `extra` expectations such as decisions)."""
    # The case's docstring, on one line, describes it in expect.yaml.
    description = " ".join((BUILDERS[folder.name].__doc__ or "").split())
    f.write(
        folder,
        duration,
        # Past the recording's end every host falls silent and every rank looks stalled, which
        # no case is about: run just long enough for the last lines to be triaged.
        {
            "name": folder.name,
            "description": description,
            "incidents": incidents,
            "run_for_s": 10,
            **extra,
        },
    )
    # gzip stamps the time it wrote; a rebuild that changes nothing should change no byte.
    path = folder / "recording.jsonl.gz"
    data = gzip.decompress(path.read_bytes())
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as out:
        out.write(data)


def incident(
    category: str, by_s: float, host: int | None = None, gpu: int | None = None, **extra: Any
) -> dict[str, Any]:
    """An incident triage must open by `by_s` seconds into the recording, with this category
    and culprit host and GPU (when named); `extra` adds expectations (after_s, job_id, ...)."""
    out: dict[str, Any] = {"category": category}
    if host is not None:
        out["culprit_host"] = f"node-{host:04d}"
    if gpu is not None:
        out["culprit_gpu"] = Fleet().pci(gpu)
    return {**out, "by_s": by_s, **extra}
