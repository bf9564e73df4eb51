"""Degraded findings: leading indicators that a host will fail, read from what its agent
already sends, opened as a finding on the host (persisted, with its evidence) and never as an
incident: the job keeps training until its next checkpoint, when a swap (swap.py) takes the
host out.

Each indicator is a small named rule over one host's recent events (ecc, xid, gpu_condition
and hardware-source log events within ``swap.window_s``); thresholds are settings. An indicator
is a detector, not a decision (policy.NamedRule): every one runs and each may find several
things (one per GPU), so it keeps `find` returning a list, as the flight recorder's do.
"""

from __future__ import annotations

import logging
import re
import uuid
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.clock import Clock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import DegradedFinding, Event, Host
from sentinel.db.upsert import dialect_of, insert_for
from sentinel.knowledge import default_knowledge
from sentinel.remediation.policy import NamedRule
from sentinel.remediation.settings import SwapSettings
from sentinel.wire.severity import Severity

log = logging.getLogger(__name__)

# The kinds of event an indicator may be read from; others are not loaded.
KINDS: Final = ("ecc", "xid", "gpu_condition", "log")
# The log sources an indicator reads (the hardware's own reports).
LOG_SOURCES: Final = frozenset({"infiniband", "ipmi", "redfish"})
# How far behind the newest event read a scan looks again.
OVERLAP: Final = timedelta(seconds=30)
# NVIDIA's actions that ask for a reset or reboot; on an XID the catalog calls no worse than
# an error caused by the hardware, the job survives it, so the reset waits for the next
# opportunity (the catalog has no "next opportunity" field: derived from cause and severity).
_RESET_ACTIONS: Final = frozenset({"RESET_GPU", "RESTART_BM", "RESTART_VM"})
_RESET_SEVERITIES: Final = frozenset({Severity.WARNING, Severity.ERROR})
_PSU_REDUNDANCY_LOST: Final = re.compile(r"(?i)redundancy\s+(lost|degraded)")
# ipmitool sdr elist: "FAN3 | 32h | cr | 29.3 | 0 RPM"; Redfish: "Reading": 0 with RPM units.
_FAN_STOPPED: Final = re.compile(r"(?i)\bfan[^|\n]*\|.*\|\s*0(?:\.0+)?\s*RPM\b")
_IB_RATE: Final = re.compile(r"(symbol_error|link_error_recovery)\b.*per minute")


@dataclass(frozen=True)
class Seen:
    """One event as the rules read it."""

    id: str
    kind: str
    at: datetime
    gpu: str | None
    payload: dict[str, Any]

    def line(self) -> str:
        p = self.payload
        text = p.get("message") or p.get("detail") or ""
        if self.kind == "ecc":
            text = f"{p.get('counter')} {p.get('previous')} -> {p.get('current')}"
        elif self.kind == "gpu_condition":
            text = f"{p.get('condition')}: {p.get('detail', '')}"
        elif self.kind == "xid":
            text = f"Xid {p.get('xid')}: {text}"
        gpu = f" GPU {self.gpu}" if self.gpu is not None else ""
        return f"{self.at:%Y-%m-%dT%H:%M:%SZ}{gpu} {text}".strip()[:500]


@dataclass(frozen=True)
class Found:
    indicator: str
    rule: str
    reason: str
    gpu: str | None
    evidence: tuple[Seen, ...]


@dataclass(frozen=True)
class HostWindow:
    """One host's recent events, oldest first, and the settings the rules read."""

    host: str
    events: tuple[Seen, ...]
    settings: SwapSettings = field(default_factory=SwapSettings)

    def of(self, kind: str) -> list[Seen]:
        return [e for e in self.events if e.kind == kind]


class Indicator(NamedRule, ABC):
    """Finds the signs of one way a host degrades in its recent events, or nothing."""

    @abstractmethod
    def find(self, w: HostWindow) -> list[Found]: ...

    def _f(self, indicator: str, reason: str, gpu: str | None, ev: Sequence[Seen]) -> Found:
        return Found(indicator, self.name, reason, gpu, tuple(ev))


class RowRemapPending(Indicator):
    """A row remap waits for the GPU's next reset: until then the row stays mapped out by a
    pending entry, and one more error in the bank is uncorrectable."""

    def find(self, w: HostWindow) -> list[Found]:
        out: list[Found] = []
        by_gpu: dict[str | None, list[Seen]] = defaultdict(list)
        for e in w.of("ecc"):
            p = e.payload
            if p.get("counter") == "remap_pending" and int(p.get("current") or 0) > 0:
                by_gpu[e.gpu].append(e)
        for gpu, ev in by_gpu.items():
            out.append(
                self._f(
                    f"remap_pending:{gpu}",
                    f"GPU {gpu}: a row remap is pending; it completes at the next GPU reset",
                    gpu,
                    ev,
                )
            )
        return out


class RisingCorrectableEcc(Indicator):
    """Correctable ECC errors rising fast on one GPU: its memory is wearing out, and the
    uncorrectable error that stops the job tends to follow."""

    def find(self, w: HostWindow) -> list[Found]:
        out: list[Found] = []
        by_gpu: dict[str | None, list[Seen]] = defaultdict(list)
        for e in w.of("ecc"):
            if e.payload.get("counter") == "ecc_volatile_corrected":
                by_gpu[e.gpu].append(e)
        cap = w.settings.ecc_corrected_per_window
        for gpu, ev in by_gpu.items():
            rise = int(ev[-1].payload.get("current") or 0) - int(ev[0].payload.get("previous") or 0)
            if rise >= cap:
                out.append(
                    self._f(
                        f"ecc_corrected:{gpu}",
                        f"GPU {gpu}: {rise} correctable ECC errors within "
                        f"{w.settings.window_s:g} s (threshold {cap})",
                        gpu,
                        ev,
                    )
                )
        return out


class XidResetAtNextOpportunity(Indicator):
    """An XID that NVIDIA says needs a reset but that the job survives (caused by the
    hardware, no worse than an error): reset the GPU when the job can spare it."""

    def find(self, w: HostWindow) -> list[Found]:
        table = default_knowledge().xids
        out: list[Found] = []
        for e in w.of("xid"):
            entry = table.get(int(e.payload.get("xid") or 0))
            if (
                entry is None
                or entry.cause != "hardware"
                or entry.severity not in _RESET_SEVERITIES
                or entry.action not in _RESET_ACTIONS
            ):
                continue
            out.append(
                self._f(
                    f"xid{entry.code}:{e.gpu}",
                    f"GPU {e.gpu}: Xid {entry.code} ({entry.mnemonic}), NVIDIA's action "
                    f"{entry.action}, survivable: reset at the next opportunity",
                    e.gpu,
                    [e],
                )
            )
        return out


class RepeatedThermalSlowdown(Indicator):
    """A GPU throttling for heat again and again: its cooling is failing, and every
    collective waits on the slow GPU meanwhile."""

    def find(self, w: HostWindow) -> list[Found]:
        ev = [e for e in w.of("gpu_condition") if e.payload.get("condition") == "thermal_slowdown"]
        n = w.settings.thermal_repeats
        if len(ev) < n:
            return []
        return [
            self._f(
                "thermal",
                f"thermal slowdown {len(ev)} times within {w.settings.window_s:g} s "
                f"(threshold {n}): cooling is failing",
                None,
                ev,
            )
        ]


class RisingLinkErrors(Indicator):
    """An InfiniBand port whose symbol-error or link-recovery rate keeps crossing its threshold:
    the cable or transceiver is going, before the link goes down."""

    def find(self, w: HostWindow) -> list[Found]:
        ev = [
            e
            for e in w.of("log")
            if e.payload.get("source") == "infiniband"
            and _IB_RATE.search(str(e.payload.get("message", "")))
        ]
        n = w.settings.link_error_repeats
        if len(ev) < n:
            return []
        return [
            self._f(
                "ib_errors",
                f"InfiniBand symbol-error or link-recovery rate above its threshold "
                f"{len(ev)} times within {w.settings.window_s:g} s (threshold {n})",
                None,
                ev,
            )
        ]


class PsuRedundancyLost(Indicator):
    """A power supply lost redundancy: the host runs on, but one more PSU fault powers it off."""

    def find(self, w: HostWindow) -> list[Found]:
        ev = [
            e
            for e in w.of("log")
            if e.payload.get("source") in ("ipmi", "redfish")
            and _PSU_REDUNDANCY_LOST.search(str(e.payload.get("message", "")))
        ]
        if not ev:
            return []
        return [
            self._f(
                "psu_redundancy",
                "a power supply lost redundancy: one more PSU fault powers the host off",
                None,
                ev,
            )
        ]


class FanStopped(Indicator):
    """A fan reads 0 RPM: the host runs hotter until its GPUs throttle."""

    def find(self, w: HostWindow) -> list[Found]:
        ev = [
            e
            for e in w.of("log")
            if e.payload.get("source") in ("ipmi", "redfish")
            and _FAN_STOPPED.search(str(e.payload.get("message", "")))
        ]
        if not ev:
            return []
        return [
            self._f("fan", "a fan reads 0 RPM: the host runs hotter until it throttles", None, ev)
        ]


INDICATORS: Final[tuple[Indicator, ...]] = (
    RowRemapPending(),
    RisingCorrectableEcc(),
    XidResetAtNextOpportunity(),
    RepeatedThermalSlowdown(),
    RisingLinkErrors(),
    PsuRedundancyLost(),
    FanStopped(),
)


def leading_indicator(text: str, xid: int | None = None) -> bool:
    """Whether one piece of evidence only warns (the host degrades, the job runs on): a PSU
    without redundancy, a stopped fan, an IB error rate, an XID to reset at the next
    opportunity. Triage may still have opened an incident on it; remediation then leaves the
    host to the swap at the next checkpoint instead of stopping the job now."""
    if xid is not None:
        entry = default_knowledge().xids.get(xid)
        return (
            entry is not None
            and entry.cause == "hardware"
            and entry.severity in _RESET_SEVERITIES
            and entry.action in _RESET_ACTIONS
        )
    return bool(
        _PSU_REDUNDANCY_LOST.search(text) or _FAN_STOPPED.search(text) or _IB_RATE.search(text)
    )


def find_all(w: HostWindow, indicators: Sequence[Indicator] = INDICATORS) -> list[Found]:
    return [f for rule in indicators for f in rule.find(w)]


def _seen(ev: Event) -> Seen:
    gpu = ev.payload.get("pci_bus_id") or ev.payload.get("gpu")
    if gpu is None and ev.gpu_index is not None:
        gpu = str(ev.gpu_index)
    return Seen(str(ev.id), ev.kind, ev.observed_at, gpu, dict(ev.payload))


def open_key(host: str, indicator: str) -> str:
    return f"{host}|{indicator}"[:256]


class DegradedWatch:
    """Loop step on the leader: reads each host's recent events, opens the findings its
    indicators give. Idempotent (open_key): a new leader re-reading the window opens nothing
    twice; a finding resolved earlier is not re-opened by the events it was opened from."""

    def __init__(
        self, clock: Clock, settings: SwapSettings, indicators: Sequence[Indicator] = INDICATORS
    ) -> None:
        self._clock = clock
        self._settings = settings
        self._indicators = indicators
        self._cursor: datetime | None = None  # newest received_at read, per process

    async def scan(self, sessions: async_sessionmaker[AsyncSession]) -> list[DegradedFinding]:
        """Re-read the window of each host with events received since the last scan (a short
        overlap: an ingest commit may land behind the cursor)."""
        now = self._clock.now()
        since = now - timedelta(seconds=self._settings.window_s)
        async with unit_of_work(sessions) as session:
            touched = select(Event.host_id, Event.kind, Event.payload).where(Event.kind.in_(KINDS))
            if self._cursor is not None:
                touched = touched.where(Event.received_at > self._cursor - OVERLAP)
            else:
                touched = touched.where(Event.observed_at >= since)
            # Only hosts with news an indicator reads: most log lines (kernel, training) are
            # none of theirs, and re-reading a busy host's window every pass would cost.
            hosts = {
                host
                for host, kind, payload in (await session.execute(touched)).all()
                if host != "-" and (kind != "log" or payload.get("source") in LOG_SOURCES)
            }
            newest = await session.scalar(select(func.max(Event.received_at)))
            opened: list[DegradedFinding] = []
            for host_id in sorted(hosts):
                host = await session.get(Host, host_id)
                if host is not None and host.drain_state != "none":
                    continue  # already out of service: nothing to swap
                rows = (
                    await session.scalars(
                        select(Event)
                        .where(
                            Event.host_id == host_id,
                            Event.kind.in_(KINDS),
                            Event.observed_at >= since,
                        )
                        .order_by(Event.observed_at)
                    )
                ).all()
                seen = tuple(
                    _seen(ev)
                    for ev in rows
                    if ev.kind != "log" or ev.payload.get("source") in LOG_SOURCES
                )
                for f in find_all(HostWindow(host_id, seen, self._settings), self._indicators):
                    row = await self._open(session, host_id, f, now)
                    if row is not None:
                        opened.append(row)
            if newest is not None:
                self._cursor = newest
        for row in opened:
            log.info("degraded: %s on %s (%s)", row.indicator, row.host_id, row.rule)
        return opened

    async def _open(
        self, session: AsyncSession, host_id: str, f: Found, now: datetime
    ) -> DegradedFinding | None:
        # Evidence a resolved finding already answered does not open it again.
        resolved = await session.scalar(
            select(DegradedFinding.resolved_at)
            .where(
                DegradedFinding.host_id == host_id,
                DegradedFinding.indicator == f.indicator,
                DegradedFinding.state == "resolved",
            )
            .order_by(DegradedFinding.resolved_at.desc())
            .limit(1)
        )
        evidence = [e for e in f.evidence if resolved is None or e.at > resolved]
        if not evidence:
            return None
        ins = insert_for(dialect_of(session), DegradedFinding)
        row: dict[str, Any] = {
            "id": uuid.uuid4(),
            "host_id": host_id,
            "gpu": f.gpu,
            "indicator": f.indicator[:64],
            "rule": f.rule,
            "reason": f.reason,
            "evidence": [{"event_id": e.id, "kind": e.kind, "line": e.line()} for e in evidence],
            "open_key": open_key(host_id, f.indicator),
            "state": "open",
            "opened_at": evidence[0].at,
            "updated_at": now,
            "resolved_at": None,
        }
        result = await session.execute(
            ins.on_conflict_do_nothing(index_elements=["open_key"]).returning(ins.table.c.id),
            [row],
        )
        if not result.all():
            return None
        return await session.get(DegradedFinding, row["id"])


async def resolve_host(session: AsyncSession, host_id: str, now: datetime, why: str) -> int:
    """Close the host's open findings (it left its job, or a human cleared it)."""
    rows = (
        await session.scalars(
            select(DegradedFinding).where(
                DegradedFinding.host_id == host_id, DegradedFinding.state == "open"
            )
        )
    ).all()
    for f in rows:
        f.state = "resolved"
        f.open_key = None
        f.resolved_at = now
        f.updated_at = now
        f.reason = f"{f.reason}; resolved: {why}"
    return len(rows)
