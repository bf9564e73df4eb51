"""Checkpoint cadence advice: the interval that minimises expected lost time (Young, Daly).

With a blocking checkpoint save of delta seconds, a restart of R seconds and a mean time to
failure M, Young's first-order optimum is sqrt(2 delta M) (J. W. Young, "A first order
approximation to the optimum checkpoint interval", CACM 17(9), 1974); Daly's higher-order one
(J. T. Daly, "A higher order estimate of the optimum checkpoint interval for restart dumps",
FGCS 22(3), 2006) is sqrt(2 delta M) (1 + sqrt(delta / 2M) / 3 + delta / 18M) - delta for
delta < 2M, else M. The expected ETTR at an interval tau is Daly's: the useful time over the
expected wall time, tau / (M e^(R/M) (e^((tau + delta) / M) - 1)), exponential failures assumed.

An asynchronous save blocks training only for its copy to host memory (delta), then writes in
the background; the next save cannot start before that write is done, so the advice never goes
below the background write time W the launcher reports (where Daly's optimum is shorter, the
interval is W: with a tiny delta the optimum can be seconds, faster than storage drains).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def _check(**values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


def young_interval(save_s: float, mttf_s: float) -> float:
    _check(save_s=save_s, mttf_s=mttf_s)
    return math.sqrt(2 * save_s * mttf_s)


def daly_interval(save_s: float, mttf_s: float) -> float:
    _check(save_s=save_s, mttf_s=mttf_s)
    if save_s >= 2 * mttf_s:
        return mttf_s
    x = save_s / (2 * mttf_s)
    return math.sqrt(2 * save_s * mttf_s) * (1 + math.sqrt(x) / 3 + x / 9) - save_s


def expected_ettr(interval_s: float, save_s: float, restart_s: float, mttf_s: float) -> float:
    """The share of wall time spent on useful training at this checkpoint interval."""
    _check(interval_s=interval_s, save_s=save_s, mttf_s=mttf_s)
    if restart_s < 0:
        raise ValueError(f"restart_s must not be negative, got {restart_s!r}")
    m = mttf_s
    return interval_s / (m * math.exp(restart_s / m) * math.expm1((interval_s + save_s) / m))


@dataclass(frozen=True)
class CadenceAdvice:
    """The interval to checkpoint at, and what it and the current one would give."""

    interval_s: float  # Daly's higher-order optimum, or the background write where longer
    young_interval_s: float
    ettr: float  # expected at interval_s
    current_interval_s: float | None
    current_ettr: float | None
    write_s: float | None = None  # the background write of one checkpoint, where known

    @property
    def write_bound(self) -> bool:
        """The interval is the background write's, not Daly's (storage drains no faster)."""
        return self.write_s is not None and self.interval_s == self.write_s

    def reason(self) -> str:
        now = (
            f"; every {self.current_interval_s:.0f} s gives {self.current_ettr:.2%}"
            if self.current_interval_s is not None and self.current_ettr is not None
            else ""
        )
        why = (
            f"the background write of one checkpoint takes {self.interval_s:.0f} s; Daly's "
            "optimum is shorter"
            if self.write_bound
            else f"Daly; Young: {self.young_interval_s:.0f} s"
        )
        return (
            f"checkpoint every {self.interval_s:.0f} s ({why}) for an expected ETTR of "
            f"{self.ettr:.2%}{now}"
        )


def advise(
    save_s: float,
    restart_s: float,
    mttf_s: float,
    current_interval_s: float | None = None,
    write_s: float | None = None,
) -> CadenceAdvice:
    """From the measured save time (its blocking part), restart time and the job's MTTF: the
    interval to use, never shorter than one checkpoint's background write (``write_s``)."""
    if write_s is not None:
        _check(write_s=write_s)
    interval = max(daly_interval(save_s, mttf_s), write_s or 0.0)
    current = (
        expected_ettr(current_interval_s, save_s, restart_s, mttf_s)
        if current_interval_s is not None
        else None
    )
    return CadenceAdvice(
        interval,
        young_interval(save_s, mttf_s),
        expected_ettr(interval, save_s, restart_s, mttf_s),
        current_interval_s,
        current,
        write_s,
    )
