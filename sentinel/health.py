"""A host's current health from its latest facts; past faults clear once they are old and gone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sentinel.db.models import OUT_OF_SERVICE, Gpu, Host
from sentinel.incidents.settings import HealthSettings

# Bits of nvmlClocksEventReasons (nvml.h) that mean the GPU is slowing itself down to survive.
HW_SLOWDOWN, SW_THERMAL, HW_THERMAL, HW_POWER_BRAKE = 0x08, 0x20, 0x40, 0x80
HARD_THROTTLE_MASK = HW_SLOWDOWN | SW_THERMAL | HW_THERMAL | HW_POWER_BRAKE


class HealthState(StrEnum):
    healthy = "healthy"
    degraded = "degraded"
    unhealthy = "unhealthy"
    silent = "silent"
    drained = "drained"


@dataclass(frozen=True)
class Health:
    state: HealthState
    reason: str


def host_health(host: Host, gpus: Sequence[Gpu], now: datetime, settings: HealthSettings) -> Health:
    if host.drain_state in OUT_OF_SERVICE:
        return Health(HealthState.drained, host.drain_reason or "drained")
    silent_for = (now - host.last_seen).total_seconds()
    if silent_for > settings.silent_after_s:
        return Health(HealthState.silent, f"no report for {silent_for:.0f} s")
    lost = [g.gpu_index for g in gpus if g.lost]
    if lost:
        return Health(HealthState.unhealthy, f"GPU {', '.join(map(str, lost))} lost")
    failed = [g.gpu_index for g in gpus if g.remap_failure]
    if failed:
        return Health(HealthState.unhealthy, f"row-remap failure on GPU {failed[0]}")
    if host.last_critical_at is not None and now - host.last_critical_at < timedelta(
        seconds=settings.critical_clear_s
    ):
        return Health(HealthState.unhealthy, host.last_critical or "critical event")
    throttled = [g.gpu_index for g in gpus if (g.clock_event_reasons or 0) & HARD_THROTTLE_MASK]
    if throttled:
        return Health(HealthState.degraded, f"GPU {throttled[0]} throttling (thermal/power)")
    return Health(HealthState.healthy, "")
