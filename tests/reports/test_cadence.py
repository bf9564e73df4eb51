"""Checkpoint cadence advice: Young's and Daly's intervals and the ETTR they give."""

from __future__ import annotations

import math

import pytest

from sentinel.reports.cadence import advise, daly_interval, expected_ettr, young_interval

# Llama 3's 419 unexpected interruptions in 54 days: one every ~3.09 h.
MTTF = 54 * 86400 / 419


def test_young_is_the_square_root_of_twice_the_save_time_the_mttf() -> None:
    assert young_interval(10.0, 5000.0) == pytest.approx(math.sqrt(2 * 10 * 5000))


def test_daly_is_youngs_corrected_for_the_save_time() -> None:
    delta = 30.0
    x = delta / (2 * MTTF)
    expected = math.sqrt(2 * delta * MTTF) * (1 + math.sqrt(x) / 3 + x / 9) - delta
    assert daly_interval(delta, MTTF) == pytest.approx(expected)
    # For a save short against the MTTF the two agree within a few percent.
    assert daly_interval(1.0, MTTF) == pytest.approx(young_interval(1.0, MTTF), rel=0.01)
    # A save longer than twice the MTTF: checkpoint once per MTTF.
    assert daly_interval(500.0, 200.0) == 200.0


def test_dalys_interval_maximises_the_expected_ettr() -> None:
    save, restart = 5.0, 300.0
    best = daly_interval(save, MTTF)
    at_best = expected_ettr(best, save, restart, MTTF)
    for factor in (0.5, 0.8, 1.25, 2.0):
        assert expected_ettr(best * factor, save, restart, MTTF) < at_best
    grid = max(range(30, 2000, 5), key=lambda t: expected_ettr(t, save, restart, MTTF))
    assert grid == pytest.approx(best, rel=0.03)


def test_expected_ettr_falls_with_the_restart_time_and_the_failure_rate() -> None:
    assert expected_ettr(600, 5, 300, MTTF) < expected_ettr(600, 5, 60, MTTF)
    assert expected_ettr(600, 5, 300, MTTF / 2) < expected_ettr(600, 5, 300, MTTF)
    assert 0 < expected_ettr(600, 5, 300, MTTF) < 1


def test_advice_says_the_interval_and_what_it_and_the_current_one_give() -> None:
    advice = advise(save_s=5.0, restart_s=300.0, mttf_s=MTTF, current_interval_s=1800.0)
    assert advice.interval_s == pytest.approx(daly_interval(5.0, MTTF))
    assert advice.current_ettr is not None and advice.ettr > advice.current_ettr
    assert f"checkpoint every {advice.interval_s:.0f} s" in advice.reason()
    assert "every 1800 s gives" in advice.reason()
    assert advise(5.0, 300.0, MTTF).current_ettr is None


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_bad_inputs_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        young_interval(bad, MTTF)
    with pytest.raises(ValueError, match="positive"):
        daly_interval(5.0, bad)
    with pytest.raises(ValueError, match="positive"):
        expected_ettr(bad, 5.0, 300.0, MTTF)
    with pytest.raises(ValueError, match="negative"):
        expected_ettr(600.0, 5.0, -1.0, MTTF)


def test_the_advice_never_goes_below_one_checkpoints_background_write() -> None:
    # A 0.05 s copy to host memory makes Daly's optimum ~33 s; storage that needs 120 s to
    # drain one checkpoint sets the interval instead, and the reason says why.
    daly = daly_interval(0.05, MTTF)
    assert daly < 120.0
    advice = advise(save_s=0.05, restart_s=300.0, mttf_s=MTTF, write_s=120.0)
    assert advice.interval_s == 120.0 and advice.write_bound
    assert advice.ettr == pytest.approx(expected_ettr(120.0, 0.05, 300.0, MTTF))
    assert "background write of one checkpoint takes 120 s" in advice.reason()
    # A write shorter than Daly's interval changes nothing.
    quick = advise(save_s=0.05, restart_s=300.0, mttf_s=MTTF, write_s=3.0)
    assert quick.interval_s == pytest.approx(daly) and not quick.write_bound
    assert "Daly" in quick.reason()
    with pytest.raises(ValueError, match="positive"):
        advise(0.05, 300.0, MTTF, write_s=0.0)
