"""How many hot spares the pool should hold, from the fleet's record: how many hosts leave jobs
(drained by exclusions and swaps) and how long each takes to come back (issue 17).

Hosts leave as a stream and each is out for its repair, so the number out at once is an M/G/inf
queue: its mean is the rate times the mean repair time (Little's law) and, for Poisson arrivals,
its distribution is Poisson with that mean whatever the repair times' spread (Palm's theorem).
A pool that covers that count at a quantile finds a spare for every host that leaves on all but
the rest of the time; with fewer, an exclusion waits for a node from the queue.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

DRAIN: Final = "host.drain"  # the audit action of every drain (an exclusion's, a swap's)
RETURN: Final = "host.repaired"  # the audit action of a host back in service (repair or human)
DAY_S: Final = 86400.0


@dataclass(frozen=True)
class Record:
    """What the fleet's record says over a window."""

    drains: int  # hosts drained by exclusions and swaps within the window
    window_s: float
    repairs_s: tuple[float, ...] = ()  # drain to return, for hosts that came back in it

    @property
    def drains_per_day(self) -> float:
        return self.drains * DAY_S / self.window_s


@dataclass(frozen=True)
class PoolAdvice:
    """The recommended pool, with the rule that sized it, why, and what it rested on."""

    recommended: int
    rule: str
    reason: str
    drains_per_day: float
    repair_s: float
    repair_measured: bool  # False: the configured repair time (too few repairs measured)
    hosts_out: float  # the mean number of hosts out at once
    quantile: float
    window_s: float


def poisson_quantile(mean: float, q: float) -> int:
    """The smallest k with P(N <= k) >= q for N ~ Poisson(mean)."""
    if mean <= 0:
        return 0
    k, cdf = 0, 0.0
    while True:
        # In logs: exp(-mean) underflows for a mean past ~745.
        cdf += math.exp(k * math.log(mean) - mean - math.lgamma(k + 1))
        if cdf >= q or k > mean + 40 * math.sqrt(mean) + 40:
            return k
        k += 1


def record_from(
    entries: Iterable[tuple[str, str, datetime]], now: datetime, window_s: float
) -> Record:
    """The record from audit entries (host, action, at) of drains and returns: the drains in
    the window, and the time from each host's drain to its next return."""
    start = now - timedelta(seconds=window_s)
    drains = 0
    out_since: dict[str, datetime] = {}
    repairs: list[float] = []
    for host, action, at in sorted(entries, key=lambda e: e[2]):
        if at < start or at > now:
            continue
        if action == DRAIN:
            drains += 1
            out_since.setdefault(host, at)
        elif action == RETURN and host in out_since:
            repairs.append((at - out_since.pop(host)).total_seconds())
    return Record(drains, window_s, tuple(repairs))


class CoverHostsOutAtQuantile:
    """Hold a spare for every host out at once at the quantile: the hosts out are Poisson with
    mean drains per day x the repair time in days (Little's law, M/G/inf), the repair time
    measured from the record once it holds ``min_repairs`` repairs, else the configured one."""

    def __init__(self, quantile: float, repair_s: float, min_repairs: int) -> None:
        if not 0 < quantile < 1:
            raise ValueError(f"quantile {quantile} is not within (0, 1)")
        self.quantile = quantile
        self.repair_s = repair_s
        self.min_repairs = min_repairs

    def advise(self, record: Record) -> PoolAdvice:
        measured = len(record.repairs_s) >= max(1, self.min_repairs)
        repair_s = sum(record.repairs_s) / len(record.repairs_s) if measured else self.repair_s
        rate = record.drains_per_day
        hosts_out = rate * repair_s / DAY_S
        size = poisson_quantile(hosts_out, self.quantile)
        n = len(record.repairs_s)
        if measured:
            repair = f"measured over {n} repairs"
        elif n:
            repair = f"configured; {n} repairs measured, fewer than {self.min_repairs}"
        else:
            repair = "configured; none measured"
        reason = (
            f"{record.drains} hosts drained in {record.window_s / DAY_S:g} days "
            f"({rate:.2f} a day) x {repair_s / 3600:.1f} h to repair ({repair}) = "
            f"{hosts_out:.2f} hosts out on average (Little's law); {size} cover the hosts "
            f"out at once at p{self.quantile * 100:g} (Poisson)"
        )
        return PoolAdvice(
            recommended=size,
            rule=type(self).__name__,
            reason=reason,
            drains_per_day=rate,
            repair_s=repair_s,
            repair_measured=measured,
            hosts_out=hosts_out,
            quantile=self.quantile,
            window_s=record.window_s,
        )
