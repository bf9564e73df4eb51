"""Sizing the hot-spare pool from the fleet's record: the hosts out at once (drains a day x
repair time, Little's law) covered at a Poisson quantile."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from sentinel.remediation.pool_sizing import (
    DRAIN,
    RETURN,
    CoverHostsOutAtQuantile,
    Record,
    poisson_quantile,
    record_from,
)

NOW = datetime(2026, 3, 1, tzinfo=UTC)
DAY = 86400.0


def cdf(mean: float, k: int) -> float:
    return sum(math.exp(-mean) * mean**i / math.factorial(i) for i in range(k + 1))


@pytest.mark.parametrize("mean", [0.05, 1.0, 4.0, 9.3, 11.67, 40.0])
@pytest.mark.parametrize("q", [0.5, 0.9, 0.99, 0.999])
def test_the_poisson_quantile_is_the_smallest_count_that_covers_q(mean: float, q: float) -> None:
    k = poisson_quantile(mean, q)
    assert cdf(mean, k) >= q
    assert k == 0 or cdf(mean, k - 1) < q


def test_known_quantiles_and_the_edges() -> None:
    # Poisson(9.3): P(N <= 16) = 0.9857, P(N <= 17) = 0.9935.
    assert poisson_quantile(9.3, 0.99) == 17
    assert poisson_quantile(0.0, 0.99) == 0
    # A mean past exp()'s range still answers, near mean + 2.33 sd at p99.
    k = poisson_quantile(2000.0, 0.99)
    assert 2000 + 2.2 * math.sqrt(2000) < k < 2000 + 2.5 * math.sqrt(2000)


def test_the_record_counts_drains_in_the_window_and_pairs_each_with_its_return() -> None:
    at = [NOW - timedelta(days=d) for d in (20, 10, 9, 8, 1)]
    entries = [
        ("old", DRAIN, at[0]),  # before the window
        ("a", DRAIN, at[1]),
        ("a", RETURN, at[1] + timedelta(hours=30)),
        ("b", DRAIN, at[2]),
        ("b", DRAIN, at[2] + timedelta(hours=1)),  # drained again while out: one repair
        ("b", RETURN, at[2] + timedelta(hours=50)),
        ("c", RETURN, at[3]),  # a return with no drain in the window: no repair measured
        ("d", DRAIN, at[4]),  # still out
    ]
    record = record_from(reversed(entries), NOW, 14 * DAY)
    assert record.drains == 4
    assert record.window_s == 14 * DAY
    assert sorted(record.repairs_s) == [30 * 3600.0, 50 * 3600.0]
    assert record.drains_per_day == pytest.approx(4 / 14)


def test_the_rule_uses_the_configured_repair_time_until_enough_are_measured() -> None:
    rule = CoverHostsOutAtQuantile(0.99, repair_s=2 * DAY, min_repairs=3)
    # 250 hosts in 54 days out 48 h: 9.26 hosts out on average, 17 at p99.
    advice = rule.advise(Record(250, 54 * DAY, (3600.0, 7200.0)))
    assert not advice.repair_measured
    assert advice.repair_s == 2 * DAY
    assert advice.hosts_out == pytest.approx(250 / 54 * 2)
    assert advice.recommended == 17 == poisson_quantile(250 / 54 * 2, 0.99)
    assert advice.rule == "CoverHostsOutAtQuantile"
    assert "250 hosts drained in 54 days" in advice.reason
    assert "48.0 h to repair (configured; 2 repairs measured, fewer than 3)" in advice.reason
    assert "(configured; none measured)" in rule.advise(Record(1, DAY)).reason
    assert "17 cover the hosts out at once at p99" in advice.reason


def test_the_rule_uses_the_measured_mean_repair_time_once_it_has_enough() -> None:
    rule = CoverHostsOutAtQuantile(0.9, repair_s=2 * DAY, min_repairs=2)
    advice = rule.advise(Record(28, 14 * DAY, (10 * 3600.0, 14 * 3600.0)))
    assert advice.repair_measured
    assert advice.repair_s == 12 * 3600.0
    assert advice.hosts_out == pytest.approx(2 * 0.5)  # 2 a day x half a day
    assert advice.recommended == poisson_quantile(1.0, 0.9) == 2
    assert "measured over 2 repairs" in advice.reason and "p90" in advice.reason


def test_no_drains_recommend_no_spares_and_a_bad_quantile_is_refused() -> None:
    rule = CoverHostsOutAtQuantile(0.99, repair_s=DAY, min_repairs=1)
    assert rule.advise(Record(0, 14 * DAY)).recommended == 0
    with pytest.raises(ValueError, match="quantile"):
        CoverHostsOutAtQuantile(1.0, repair_s=DAY, min_repairs=1)
