"""The leader's loops: each at a fixed interval (``every``), and triage back to back.

Plain asyncio loops, not a scheduler library: every loop here runs at a fixed interval (no
cron-like schedule), one run at a time, and stops when the leader's stop event is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sentinel.alerting.wiring import flush_step
from sentinel.clock import Clock
from sentinel.db.engine import unit_of_work
from sentinel.incidents.scheduler_view import SchedulerView
from sentinel.incidents.service import IncidentChange
from sentinel.metrics import ServiceMetrics
from sentinel.runtime.context import AppContext
from sentinel.runtime.leader import Loop
from sentinel.runtime.retention import prune

log = logging.getLogger(__name__)

Step = Callable[[], Awaitable[object]]


def every(name: str, interval_s: float, step: Step, clock: Clock, metrics: ServiceMetrics) -> Loop:
    """A loop that runs ``step`` every ``interval_s`` seconds, never two runs at once.

    The first run comes one interval after the start; then each run starts an interval after
    the last one started. A run that takes longer is an overrun: counted in
    ``sentinel_loop_overruns_total{loop=name}``, and the next run starts at once. A warning
    says when the loop falls behind and a line when it keeps time again, not one per run. A run
    that raises is logged; the loop goes on. Once ``stop`` is set, a run in progress is
    cancelled (its unit of work rolls back): the leader's successor runs it again.
    """

    async def loop(stop: asyncio.Event) -> None:
        behind = False
        wait = interval_s
        while not await _stopped_within(stop, wait):
            started = clock.monotonic()
            if not await _run_unless_stopped(name, step, stop):
                return
            took = clock.monotonic() - started
            if took > interval_s:
                metrics.loop_overruns.labels(name).inc()
            if (took > interval_s) != behind:
                behind = not behind
                if behind:
                    log.warning(
                        "loop %s took %.1f s, longer than its interval of %g s: running it "
                        "back to back until it keeps time again",
                        name,
                        took,
                        interval_s,
                    )
                else:
                    log.info("loop %s keeps its interval of %g s again", name, interval_s)
            wait = interval_s - took

    loop.__name__ = name
    return loop


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    if seconds > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def _run_unless_stopped(name: str, step: Step, stop: asyncio.Event) -> bool:
    """Run ``step`` once; False when ``stop`` was set first (the run is cancelled)."""
    run = asyncio.ensure_future(step())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((run, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not run.done():
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
    if run.cancelled():
        return False
    if (error := run.exception()) is not None:
        log.error("loop %s failed", name, exc_info=error)
    return True


def leader_loops(ctx: AppContext) -> list[Loop]:
    """What the leader runs: the interval loops, and triage back to back."""
    settings = ctx.settings
    view = SchedulerView(ctx.clock)

    async def alert_flush() -> None:
        await flush_step(ctx.dispatcher, ctx.clock)

    async def retention() -> None:
        async with unit_of_work(ctx.sessions) as session:
            removed = await prune(session, ctx.clock, settings.retention, ctx.metrics)
        if any(removed.values()):
            log.info("retention removed %s", removed)

    async def watchdog() -> None:
        async with unit_of_work(ctx.sessions) as session:
            resolved = await ctx.watchdog.run_once(session)
        await ctx.stages.run(resolved)

    async def flight_recorder() -> None:
        async with unit_of_work(ctx.sessions) as session:
            await ctx.flight_recorder.run_once(session)

    async def remediation() -> None:
        await ctx.stages.run(await ctx.remediation.run_due(ctx.sessions))

    async def scheduler_view() -> None:
        await view.run_once(ctx.sessions, ctx.remediation.scheduler)

    async def triage(stop: asyncio.Event) -> None:
        # Back to back, not at an interval: a long pass never makes the next be skipped.
        await ctx.triage_worker.run_forever(stop, after_triage)

    async def after_triage(changes: list[IncidentChange]) -> None:
        await ctx.stages.run(changes)
        # A decision on an incident opened in this pass is carried out at once: detection to
        # restart is not one remediation interval longer than it needs to be.
        if changes:
            await ctx.stages.run(await ctx.remediation.run_due(ctx.sessions))

    def at(name: str, interval_s: float, step: Step) -> Loop:
        return every(name, interval_s, step, ctx.clock, ctx.metrics)

    return [
        at("alert-flush", settings.alerting.flush_interval_s, alert_flush),
        at("retention", settings.retention.interval_s, retention),
        at("remediation", 1.0, remediation),
        at("flight_recorder", 5.0, flight_recorder),
        at("watchdog", settings.triage.heartbeat_interval_s / 4, watchdog),
        at("scheduler_view", settings.scheduler.poll_nodes_s, scheduler_view),
        triage,
    ]
