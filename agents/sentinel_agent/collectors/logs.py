"""What the two log collectors share: the knowledge that decides what a message is, the GPU
it names, and the rate limit on messages that may matter though no pattern knows them.

The agent keeps no pattern table of its own: it matches the service's knowledge base
(``sentinel.knowledge``), so a pattern added for triage is shipped by every agent.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, TypedDict

from sentinel.knowledge import PatternCatalog, default_knowledge
from sentinel.knowledge.keywords import trie_regex
from sentinel.knowledge.lines import parse_line
from sentinel.knowledge.matcher import Found, Matcher
from sentinel.wire import LogRecord
from sentinel.wire.identity import normalize_pci
from sentinel.wire.severity import Severity
from sentinel_agent.collectors.base import Context

# What one record may carry (the wire allows 65,536 characters of message).
MAX_MESSAGE: Final = 60_000
# Lines in one multi-line message (a driver report, a machine-check block, NCCL's context).
MAX_MESSAGE_LINES: Final = 64
# A multi-line message is shipped when its next line has not come for this long.
MESSAGE_IDLE_S: Final = 1.0
# A record no pattern knows (pattern None) has this family; a count of those withheld by the
# rate limit has the other.
UNMATCHED: Final = "unmatched"
SUPPRESSED: Final = "suppressed"

# The wire's LogRecord.source.
LogSource = Literal["kernel", "nccl", "application"]

# Families whose "pci" group is a GPU's (elsewhere it may be a NIC's or a switch port's).
_GPU_FAMILIES: Final = frozenset({"kernel_xid", "gsp", "nvidia_smi"})
_PCI_IN_NVRM: Final = re.compile(
    r"(?:PCI:|GPU )(?P<pci>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}(?:\.[0-7])?)"
)


def catalog_matcher(patterns: PatternCatalog | None) -> Matcher:
    """The matcher of a pattern catalog; the packaged knowledge when none is given."""
    return (patterns or default_knowledge().patterns).matcher


def line_matches(matcher: Matcher, raw: str) -> list[Found]:
    """What triage reads from one line as printed: its message under the prefixes, matched."""
    return matcher.matches(parse_line(raw).body)


def _strength(found: Found) -> tuple[bool, int]:
    spec = found[0]
    return (spec.kind == "xid", spec.severity.rank)


def best_match(matcher: Matcher, lines: Iterable[str]) -> Found | None:
    """What a record is said to be: an XID if one of its lines reports one, else its most
    severe match, on a tie the later line's (a traceback's exception line, the fault line of a
    driver report) and in a line the earlier pattern; None: no pattern knows it."""
    best: Found | None = None
    for raw in lines:
        in_line: Found | None = None
        for found in line_matches(matcher, raw):
            if in_line is None or _strength(found) > _strength(in_line):
                in_line = found
        if in_line is not None and (best is None or _strength(in_line) >= _strength(best)):
            best = in_line
    return best


def gpu_pci(found: Found | None, text: str) -> str | None:
    """The GPU a record names (NVML's spelling): a GPU pattern's "pci" group, else the first
    GPU address of a driver report (whose fault line may not repeat it)."""
    if found is not None and found[0].family in _GPU_FAMILIES:
        pci = found[1].groupdict().get("pci")
        if pci:
            return normalize_pci(pci)
    if "NVRM" in text:
        named = _PCI_IN_NVRM.search(text)
        if named:
            return normalize_pci(named.group("pci"))
    return None


def join_message(lines: list[str]) -> str:
    """A record's lines as one message, bounded; the end is kept (an exception line, the
    fault line of a driver report), with the head."""
    message = "\n".join(lines)
    if len(message) <= MAX_MESSAGE:
        return message
    half = MAX_MESSAGE // 2
    return message[:half] + "\n...\n" + message[-half:]


@dataclass(frozen=True)
class RateLimit:
    """Records of messages no pattern knows, per host and source: `per_s` sustained, and up to
    `burst` at once after a quiet spell."""

    per_s: float = 0.2
    burst: int = 20


@dataclass(frozen=True)
class Suppressed:
    count: int
    first: datetime
    last: datetime


class TokenBucket:
    """Admits `burst` records, then one per 1/`per_s` seconds; counts what it turned away."""

    def __init__(self, limit: RateLimit, now: float) -> None:
        self._limit = limit
        self._tokens = float(limit.burst)
        self._at = now
        self._count = 0
        self._first: datetime | None = None
        self._last: datetime | None = None

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._at)
        self._tokens = min(float(self._limit.burst), self._tokens + elapsed * self._limit.per_s)
        self._at = now

    def take(self, now: float, wall: datetime) -> bool:
        self._refill(now)
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self._count += 1
        self._first = self._first or wall
        self._last = wall
        return False

    def lifted(self, now: float) -> Suppressed | None:
        """What was turned away, once a record would be admitted again (then forgotten)."""
        if not self._count:
            return None
        self._refill(now)
        if self._tokens < 1:
            return None
        assert self._first is not None and self._last is not None
        out = Suppressed(self._count, self._first, self._last)
        self._count, self._first, self._last = 0, None, None
        return out


class UnmatchedGate:
    """The rate limit of each source a collector ships unknown messages from."""

    def __init__(self, limit: RateLimit, clock_monotonic: Callable[[], float]) -> None:
        self._limit = limit
        self._monotonic = clock_monotonic
        self._buckets: dict[LogSource, TokenBucket] = {}

    def _bucket(self, source: LogSource) -> TokenBucket:
        if source not in self._buckets:
            self._buckets[source] = TokenBucket(self._limit, self._monotonic())
        return self._buckets[source]

    def admit(self, source: LogSource, wall: datetime) -> bool:
        return self._bucket(source).take(self._monotonic(), wall)

    def lifted(self) -> list[tuple[LogSource, Suppressed]]:
        now = self._monotonic()
        return [
            (source, found)
            for source, bucket in self._buckets.items()
            if (found := bucket.lifted(now)) is not None
        ]

    def describe(self, source: LogSource, what: str, suppressed: Suppressed) -> str:
        return (
            f"sentinel-agent: {suppressed.count} {what} no pattern knows were not shipped "
            f"between {suppressed.first:%Y-%m-%dT%H:%M:%SZ} and "
            f"{suppressed.last:%Y-%m-%dT%H:%M:%SZ} (rate limit for {source}: "
            f"{self._limit.per_s:g}/s, bursts of {self._limit.burst})"
        )


class LogOptions(TypedDict, total=False):
    """How a log collector reads: its files from their start (else from their end on a first
    run), with which knowledge (the packaged one by default), and how many messages no pattern
    knows it ships."""

    from_start: bool
    patterns: PatternCatalog | None
    unmatched: RateLimit


class MessageCollector:
    """What both log collectors keep (the knowledge they match, one search that tells a line
    that may matter, the rate limit on messages no pattern knows) and how a message of theirs
    becomes a record."""

    name: str

    def __init__(
        self, ctx: Context, interval_s: float, words: Iterable[str], options: LogOptions
    ) -> None:
        self.interval_s = interval_s
        self._ctx = ctx
        self._from_start = options.get("from_start", False)
        self._matcher = catalog_matcher(options.get("patterns"))
        # The knowledge's keywords and the collector's own words (lower case).
        self._interesting = re.compile(trie_regex(self._matcher.keywords | set(words)))
        self._gate = UnmatchedGate(options.get("unmatched", RateLimit()), ctx.clock.monotonic)

    def _log_record(
        self,
        source: LogSource,
        text: str,
        pattern: str | None,
        family: str,
        severity: Severity,
        *,
        path: str | None,
        gpu_index: int | None = None,
        pci: str | None = None,
        rank: int | None = None,
        job_id: str | None = None,
    ) -> LogRecord:
        return LogRecord(
            id=uuid.uuid4(),
            observed_at=self._ctx.clock.now(),
            source=source,
            pattern=pattern,
            family=family,
            severity=severity,
            message=text,
            path=path,
            gpu_index=gpu_index,
            pci_bus_id=pci,
            rank=rank,
            job_id=job_id,
        )
