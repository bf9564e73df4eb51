"""The leader's loops: at their interval, one run at a time, overruns counted and told once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx
import pytest
from builders import T0

from sentinel.clock import VirtualClock
from sentinel.metrics import ServiceMetrics
from sentinel.runtime.loops import Step, every, leader_loops

INTERVAL = 0.02


async def _until(done: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not done():
            await asyncio.sleep(INTERVAL / 4)


def _overruns(metrics: ServiceMetrics, loop: str) -> float | None:
    return metrics.registry.get_sample_value("sentinel_loop_overruns_total", {"loop": loop})


async def _run(step: Step, until: Callable[[], bool], clock: VirtualClock) -> ServiceMetrics:
    metrics = ServiceMetrics()
    stop = asyncio.Event()
    task = asyncio.create_task(every("job", INTERVAL, step, clock, metrics)(stop))
    await _until(until)
    stop.set()
    await asyncio.wait_for(task, 1)
    return metrics


async def test_runs_at_its_interval_never_two_at_once() -> None:
    clock = VirtualClock(T0)
    running, most, runs = 0, 0, 0

    async def step() -> None:
        nonlocal running, most, runs
        running += 1
        most = max(most, running)
        await asyncio.sleep(INTERVAL * 1.5)  # longer than the interval, in real time
        running -= 1
        runs += 1

    await _run(step, lambda: runs >= 3, clock)
    assert most == 1


async def test_the_first_run_comes_one_interval_after_the_start() -> None:
    runs: list[float] = []
    metrics, stop = ServiceMetrics(), asyncio.Event()

    async def step() -> None:
        runs.append(asyncio.get_running_loop().time())

    started = asyncio.get_running_loop().time()
    task = asyncio.create_task(every("job", 0.2, step, VirtualClock(T0), metrics)(stop))
    await asyncio.sleep(0.1)
    assert runs == []
    await _until(lambda: len(runs) == 1)
    stop.set()
    await task
    assert runs[0] - started >= 0.2


async def test_an_overrun_is_counted_and_told_once_per_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sentinel.runtime.loops")
    clock = VirtualClock(T0)
    runs = 0

    async def step() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            clock.advance(INTERVAL * 3)  # three runs too long, then on time

    metrics = await _run(step, lambda: runs >= 6, clock)
    assert _overruns(metrics, "job") == 3
    told = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in told] == ["WARNING", "INFO"]
    assert "loop job took 0.1 s, longer than its interval of 0.02 s" in told[0][1]
    assert told[1][1] == "loop job keeps its interval of 0.02 s again"


async def test_a_failing_run_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0

    async def step() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("database gone")

    await _run(step, lambda: runs >= 2, VirtualClock(T0))
    (failure,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failure.getMessage() == "loop job failed"
    assert failure.exc_info is not None and "database gone" in str(failure.exc_info[1])


async def test_stop_cancels_a_run_in_progress() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def step() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    stop = asyncio.Event()
    task = asyncio.create_task(
        every("job", INTERVAL, step, VirtualClock(T0), ServiceMetrics())(stop)
    )
    await asyncio.wait_for(started.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 1)
    assert cancelled.is_set()


async def test_the_leader_runs_each_loop_of_the_service(app_client: httpx.AsyncClient) -> None:
    ctx = app_client.app.state.ctx  # type: ignore[attr-defined]
    names = [loop.__name__ for loop in leader_loops(ctx)]
    assert names == [
        "alert-flush",
        "retention",
        "remediation",
        "flight_recorder",
        "watchdog",
        "scheduler_view",
        "triage",
    ]
