"""Observations held in memory while the outbox refuses writes (a full disk), in order.

Bounded by bytes of JSON. Over the bound, the oldest periodic samples go first (a later
sample says the same thing); events (XIDs, log lines) are dropped only when events alone
fill the bound, and then the newest are refused: the first fault of an episode is the one
triage needs. Every drop is counted; the caller logs it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sentinel_agent.transport.outbox import Row

# How far below the bound a drop round goes, so a full spill does not drop on every add.
_DROP_TARGET = 0.9


@dataclass(frozen=True)
class Dropped:
    samples: int = 0
    events: int = 0


@dataclass
class Spill:
    max_bytes: int
    rows: list[Row] = field(default_factory=list)
    positions: dict[str, str | None] = field(default_factory=dict)
    size_bytes: int = 0
    # Samples dropped here and not yet added to the outbox's persisted count.
    dropped_samples: int = 0
    urgent: bool = False  # something in here should wake the sender once it is stored

    def __bool__(self) -> bool:
        return bool(self.rows or self.positions or self.dropped_samples)

    def add(
        self, rows: Sequence[Row], positions: Mapping[str, str | None], *, urgent: bool
    ) -> Dropped:
        self.rows.extend(rows)
        self.positions.update(positions)  # the latest position of a source wins
        self.size_bytes += sum(len(r.body) for r in rows)
        self.urgent = self.urgent or urgent
        if self.size_bytes <= self.max_bytes:
            return Dropped()
        target = int(self.max_bytes * _DROP_TARGET)
        kept: list[Row] = []
        samples = 0
        for row in self.rows:
            if row.periodic and self.size_bytes > target:
                self.size_bytes -= len(row.body)
                samples += 1
            else:
                kept.append(row)
        events = 0
        while self.size_bytes > self.max_bytes and kept:
            self.size_bytes -= len(kept.pop().body)
            events += 1
        self.rows = kept
        self.dropped_samples += samples
        return Dropped(samples, events)

    def clear(self) -> None:
        self.rows = []
        self.positions = {}
        self.size_bytes = 0
        self.dropped_samples = 0
        self.urgent = False
