"""The kernel log (/dev/kmsg or a file): NVRM XIDs and host hardware faults."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from agents.collectors.base import Context
from agents.patterns import Match, Matcher, PatternFile, normalize_pci
from agents.tail import LineSource, open_source
from sentinel.wire import LogRecord, Observation, XidEvent

MAX_MESSAGE = 60_000


class KernelLogCollector:
    name = "kernel_log"

    def __init__(
        self,
        ctx: Context,
        *,
        path: Path,
        patterns: PatternFile,
        interval_s: float,
        from_start: bool = False,
    ) -> None:
        self.interval_s = interval_s
        self._ctx = ctx
        self._path = path
        self._from_start = from_start
        self._matcher = Matcher(patterns.patterns)
        self._source: LineSource | None = None
        self._key = f"{self.name}:{path}"

    def poll(self) -> Sequence[Observation]:
        if self._source is None:
            self._source = open_source(
                self._path, from_start=self._from_start, resume=self._ctx.positions.get(self._key)
            )
        out: list[Observation] = []
        for line in self._source.read_lines():
            found = self._matcher.match(line)
            if found is not None:
                out.append(self._observation(line, found))
        return out

    def positions(self) -> Mapping[str, str | None]:
        return {} if self._source is None else {self._key: self._source.position()}

    def _observation(self, line: str, found: Match) -> Observation:
        pattern, groups = found.pattern, found.groups
        pci = normalize_pci(groups["gpu_pci"]) if "gpu_pci" in groups else None
        gpu_index = self._ctx.state.gpu_by_pci.get(pci) if pci else None
        now = self._ctx.clock.now()
        if pattern.emit == "xid":
            xid = int(groups["xid"])
            if gpu_index is not None:
                self._ctx.metrics.observe_xid(gpu_index, xid)
            return XidEvent(
                id=uuid.uuid4(),
                observed_at=now,
                xid=xid,
                gpu_index=gpu_index,
                pci_bus_id=pci,
                message=groups.get("msg", line)[:MAX_MESSAGE],
                pid=int(groups["pid"]) if "pid" in groups else None,
                process_name=groups.get("name"),
                source="kernel_log",
            )
        return LogRecord(
            id=uuid.uuid4(),
            observed_at=now,
            source="kernel",
            pattern=pattern.name,
            family=pattern.family,
            severity=pattern.severity,
            message=line[:MAX_MESSAGE],
            path=str(self._path),
            gpu_index=gpu_index,
            pci_bus_id=pci,
        )

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
