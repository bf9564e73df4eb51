"""Stored events (agent observations and Sentinel's own synthetic ones) turned into Signals."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from sentinel.db.models import Event
from sentinel.health import HW_POWER_BRAKE, HW_THERMAL, SW_THERMAL
from sentinel.triage.signals import (
    GpuCondition,
    Signal,
    fr_verdict_signal,
    gpu_sample_signal,
    heartbeat_stall_signal,
    host_silent_signal,
    log_signals,
    maintenance_signal,
    scheduler_node_signals,
    straggler_signal,
    xid_signal,
)
from sentinel.wire import GpuSample
from sentinel.wire.severity import Severity

# Synthetic events are written by Sentinel itself (watchdogs, GPU conditions, the flight
# recorder, Alertmanager); their ids are derived from what they describe so that two
# replicas, or two evaluations, never store the same fact twice.
SYNTHETIC_NS: Final = uuid.UUID("5e171e1a-0000-4000-8000-000000000000")


_ECC_CONDITIONS: Final[dict[str, GpuCondition]] = {
    "ecc_volatile_uncorrected": "uncorrectable_ecc",
    "retired_pages_dbe": "uncorrectable_ecc",
    "remapped_rows_uncorrectable": "uncorrectable_ecc",
    "remap_failure": "row_remap_failure",
    "remap_pending": "row_remap_pending",
}
# A multi-line record (a traceback, a driver report continued on the next lines) up to this
# size is shown whole as the evidence; a longer one shows the lines that matched.
RECORD_SHOWN_MAX: Final = 2000


# What an unrecognized record shows of itself (a multi-line message is bounded by the agent).
_MAX_UNRECOGNIZED: Final = 4_000


def synthetic_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(SYNTHETIC_NS, "|".join(str(p) for p in parts))


def gpu_conditions(sample: GpuSample) -> list[tuple[GpuCondition, str]]:
    """The bad conditions a GPU sample shows, each with a detail for the evidence line."""
    found: list[tuple[GpuCondition, str]] = []
    if sample.lost:
        found.append(("fallen_off_bus", "NVML: GPU is lost"))
    if sample.remap_failure:
        found.append(("row_remap_failure", "row remapping failed"))
    reasons = sample.clock_event_reasons or 0
    if reasons & (HW_THERMAL | SW_THERMAL):
        found.append(
            (
                "thermal_slowdown",
                f"clock event reasons {reasons:#x}, {sample.temperature_c or '?'} C",
            )
        )
    elif reasons & HW_POWER_BRAKE:
        found.append(("power_brake", f"clock event reasons {reasons:#x}"))
    return found


def _gpu_of(payload: dict[str, Any]) -> str | None:
    if payload.get("pci_bus_id"):
        return str(payload["pci_bus_id"])
    if payload.get("gpu_index") is not None:
        return str(payload["gpu_index"])
    return None


def _rank_gpu(ev: Event) -> str | None:
    """The GPU of the rank a synthetic event blames (a hang's, a straggler's), which its writer
    (the watchdog, the flight-recorder analyzer) reads from the job's rank map and stores in
    the event's column, not in its payload."""
    return None if ev.gpu_index is None else str(ev.gpu_index)


def _time(payload: dict[str, Any], fallback: datetime) -> datetime:
    raw = payload.get("observed_at")
    return datetime.fromisoformat(raw) if isinstance(raw, str) else fallback


def event_signals(ev: Event) -> list[Signal]:
    """The signals one stored event carries (none for kinds triage does not weigh), each
    knowing where its line was read and, for a short multi-line record, the whole record."""
    return [_located(s, ev.payload) for s in _signals(ev)]


def _located(signal: Signal, payload: dict[str, Any]) -> Signal:
    found: dict[str, str] = {}
    where = payload.get("path") or payload.get("source")
    if isinstance(where, str) and where:
        found["source"] = where
    message = payload.get("message")
    if isinstance(message, str) and len(message) <= RECORD_SHOWN_MAX and "\n" in message.strip():
        found["record"] = message
    return replace(signal, attrs={**signal.attrs, **found}) if found else signal


def _signals(ev: Event) -> list[Signal]:
    p = ev.payload
    host = None if ev.host_id == "-" else ev.host_id
    eid = str(ev.id)
    when = ev.observed_at
    match ev.kind:
        case "xid":
            return [
                xid_signal(
                    int(p["xid"]),
                    host=host,
                    gpu=_gpu_of(p),
                    time=when,
                    event_id=eid,
                    text=p.get("message") or None,
                )
            ]
        case "log":
            found = log_signals(str(p.get("message", "")), host=host, time=when, event_id=eid)
            if not found and p.get("pattern") is None:
                return [_unrecognized(p, host, when, eid)]
            gpu = _gpu_of(p)
            return [
                s if s.gpu or gpu is None or s.host != host else _with_gpu(s, gpu) for s in found
            ]
        case "ecc":
            condition = _ECC_CONDITIONS.get(str(p.get("counter")))
            if condition is None or int(p.get("current", 0)) <= int(p.get("previous", 0)):
                return []
            return [
                gpu_sample_signal(
                    condition,
                    host=host or "?",
                    gpu=_gpu_of(p) or "?",
                    time=when,
                    event_id=eid,
                    detail=f"{p['counter']} {p['previous']} → {p['current']}",
                )
            ]
        case "gpu_condition":
            return [
                gpu_sample_signal(
                    p["condition"],
                    host=host or "?",
                    gpu=p["gpu"],
                    time=when,
                    event_id=eid,
                    detail=p.get("detail", ""),
                )
            ]
        case "heartbeat_stall":
            return [
                heartbeat_stall_signal(
                    host=host,
                    rank=p.get("rank"),
                    seconds=float(p["seconds"]),
                    gpu=_rank_gpu(ev),
                    time=when,
                    event_id=eid,
                    stopped_first=p.get("stopped_first"),
                    summary=p.get("text"),
                )
            ]
        case "straggler":
            return [
                straggler_signal(
                    host=host or "?",
                    rank=p.get("rank"),
                    step_time_s=float(p["step_time_s"]),
                    median_s=float(p["median_s"]),
                    gpu=_rank_gpu(ev),
                    time=when,
                    event_id=eid,
                )
            ]
        case "host_silent":
            return [
                host_silent_signal(
                    host=host or "?", seconds=float(p["seconds"]), time=when, event_id=eid
                )
            ]
        case "maintenance":
            return [maintenance_signal(text=p["text"], host=host, time=when, event_id=eid)]
        case "scheduler_node":
            return scheduler_node_signals(
                host=host or "?",
                state=str(p["state"]),
                reason=str(p.get("reason") or ""),
                reason_by=str(p.get("reason_by") or ""),
                reservation=str(p.get("reservation") or ""),
                maintenance=bool(p.get("maintenance")),
                time=when,
                event_id=eid,
            )
        case "fr_verdict":
            return [
                fr_verdict_signal(
                    text=p["text"],
                    rank=p.get("rank"),
                    host=host,
                    mismatch=bool(p.get("mismatch")),
                    gpu=_rank_gpu(ev),
                    time=when,
                    event_id=eid,
                )
            ]
        case "alertmanager":
            text = " ".join(
                str(x)
                for x in (
                    p.get("labels", {}).get("alertname", ""),
                    p.get("annotations", {}).get("summary", ""),
                    p.get("annotations", {}).get("description", ""),
                )
                if x
            )
            return log_signals(text, host=host, time=when, event_id=eid)
    return []


def _unrecognized(p: dict[str, Any], host: str | None, when: datetime, eid: str) -> Signal:
    """A record the agent shipped because it looked like an error though no pattern knows it
    (or its count of those withheld by the rate limit): context that an `unknown` verdict (or
    any verdict's symptoms) shows as what was seen; never a cause, never a hard fault owed an
    answer, since nothing says what it means."""
    severity = Severity.parse(p.get("severity"), Severity.WARNING)
    return Signal(
        kind="log",
        family=str(p.get("family") or "unmatched"),
        text=str(p.get("message", ""))[:_MAX_UNRECOGNIZED],
        role="context",
        severity=Severity.ERROR if severity == Severity.CRITICAL else severity,
        host=host,
        gpu=_gpu_of(p),
        time=when,
        event_id=eid,
    )


def _with_gpu(signal: Signal, gpu: str) -> Signal:
    return replace(signal, gpu=gpu)


def signals_of(events: Iterable[Event]) -> list[Signal]:
    out: list[Signal] = []
    for ev in events:
        out.extend(event_signals(ev))
    return out


def weighs(signal: Signal) -> bool:
    """Whether a signal alone is reason to open an incident (context never is)."""
    return signal.role in ("cause", "symptom") and signal.severity_rank >= 2
