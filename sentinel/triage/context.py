"""What the rules see: the signals of one incident window plus what is known about the job."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

from sentinel.triage.signals import Signal
from sentinel.triage.taxonomy import Category


@dataclass(frozen=True)
class TriageContext:
    """Signals plus job facts, preloaded so that rules stay pure and replays deterministic."""

    signals: tuple[Signal, ...]
    job_hosts: int | None = None
    job_ranks: int | None = None
    # Hosts known to be in the job (from the scheduler or heartbeats), even if they said nothing.
    hosts_seen: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(
        cls,
        signals: Iterable[Signal],
        *,
        job_hosts: int | None = None,
        job_ranks: int | None = None,
        hosts_seen: Iterable[str] = (),
    ) -> TriageContext:
        return cls(tuple(signals), job_hosts, job_ranks, frozenset(hosts_seen))

    def without(self, explained: frozenset[int]) -> TriageContext:
        """The same window less the signals a verdict already accounts for."""
        rest = tuple(s for s in self.signals if id(s) not in explained)
        return TriageContext(rest, self.job_hosts, self.job_ranks, self.hosts_seen)

    @cached_property
    def causes(self) -> tuple[Signal, ...]:
        return tuple(s for s in self.signals if s.role == "cause")

    @cached_property
    def symptoms(self) -> tuple[Signal, ...]:
        return tuple(s for s in self.signals if s.role == "symptom")

    @cached_property
    def hosts(self) -> frozenset[str]:
        """Hosts that reported anything in this window."""
        return frozenset(s.host for s in self.signals if s.host)

    def causes_in(self, categories: Iterable[Category], min_rank: int = 0) -> list[Signal]:
        wanted = frozenset(categories)
        return [s for s in self.causes if s.category_hint in wanted and s.severity_rank >= min_rank]

    def select(self, predicate: Callable[[Signal], bool]) -> list[Signal]:
        return [s for s in self.signals if predicate(s)]

    def others(self, used: Iterable[Signal]) -> list[Signal]:
        """Symptoms not among `used`: what the named cause explains."""
        ids = {id(s) for s in used}
        return [s for s in self.symptoms if id(s) not in ids]
