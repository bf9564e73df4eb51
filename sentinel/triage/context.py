"""What the rules see: the signals of one incident window plus what is known about the job."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

from sentinel.knowledge.taxonomy import Category
from sentinel.triage.signals import Signal
from sentinel.wire.severity import Severity


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

    @cached_property
    def implicated_hosts(self) -> frozenset[str]:
        """Hosts the window's effects single out: whose ranks stopped first or straggle (the
        watchdog's findings from the heartbeats), the flight recorder's stuck rank, a peer that
        NCCL names, a host whose own ranks report the failure. Reports that every peer makes
        (watchdog timeouts, a job-wide stall) single out none."""
        hosts: set[str] = set()
        for s in self.signals:
            if s.kind == "fr_verdict" and s.attrs.get("stuck_rank") and s.host:
                hosts.add(s.host)
            if s.role != "symptom":
                continue
            if s.family == "heartbeat":
                if s.host and (s.kind == "straggler" or s.attrs.get("stopped_first")):
                    hosts.add(s.host)
            elif (named := s.attrs.get("host") or s.attrs.get("peer")) is not None:
                hosts.add(named)
            elif s.host and s.category_hint != Category.NCCL_WATCHDOG_TIMEOUT:
                hosts.add(s.host)
        return frozenset(hosts)

    @cached_property
    def _symptom_hosts(self) -> frozenset[str | None]:
        return frozenset(s.host for s in self.symptoms)

    def explains_effects(self, cause: Signal) -> bool:
        """Whether a cause can account for what went wrong in this window. An error-level fault
        can (a dead GPU stops every collective); a lesser sign (a corrected DIMM error, a
        warning-level Xid) only on a host the effects single out, or where nothing went wrong
        beyond its own host: healthy hosts log such signs all day."""
        if cause.severity_rank >= Severity.ERROR.rank:
            return True
        if cause.host is None:
            return not self.symptoms
        return self._symptom_hosts <= {cause.host} or cause.host in self.implicated_hosts

    def causes_in(self, categories: Iterable[Category], min_rank: int = 0) -> list[Signal]:
        wanted = frozenset(categories)
        return [s for s in self.causes if s.category_hint in wanted and s.severity_rank >= min_rank]

    def select(self, predicate: Callable[[Signal], bool]) -> list[Signal]:
        return [s for s in self.signals if predicate(s)]

    def unrecognized(self) -> list[Signal]:
        """Error lines the agents shipped that no pattern knows: what was seen where nothing
        known explains a failure."""
        return [s for s in self.signals if s.kind == "log" and s.pattern is None]

    def others(self, used: Iterable[Signal]) -> list[Signal]:
        """Symptoms not among `used`: what the named cause explains."""
        ids = {id(s) for s in used}
        return [s for s in self.symptoms if id(s) not in ids]
