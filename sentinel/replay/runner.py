"""Run one recording through the real app (ASGI, in process) on a virtual clock.

Between recorded lines the clock moves in small ticks, and at each tick the leader's loops run
as they would in production (the triage worker every tick, the watchdog every quarter of a
heartbeat interval), so a replay exercises the same code paths as a live service. Log lines
the recording has as the hosts printed them reach the service through the agent's own
collectors (`sentinel.replay.agent`); the nodes' states it has as Slurm prints them reach it
through the leader's scheduler view (`RecordedNodes`), polled as often as in production.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from sentinel.auth import TokenSpec, new_token
from sentinel.clock import VirtualClock
from sentinel.db import migrate
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Decision, Gpu, Incident
from sentinel.incidents.scheduler_view import SchedulerView
from sentinel.replay.agent import through_the_agents
from sentinel.replay.recording import (
    Expectation,
    ExpectedIncident,
    Line,
    load_expectation,
    load_lines,
    recording_path,
)
from sentinel.runtime.app import create_app
from sentinel.schedulers.base import NodesResult
from sentinel.schedulers.slurm import parse_sinfo
from sentinel.settings import Settings

TICK_S = 1.0


@dataclass
class Observed:
    category: str
    culprit_host: str | None
    culprit_gpu: str | None
    job_id: str | None
    detected_s: float
    rule: str
    reason: str


@dataclass
class ObservedDecision:
    action: str
    exclude_hosts: list[str]
    decided_s: float
    rule: str
    status: str


@dataclass
class Outcome:
    name: str
    path: Path
    expected: list[ExpectedIncident]
    observed: list[Observed]
    decisions: list[ObservedDecision] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _gpu_matches(want: str | None, got: str | None) -> bool:
    if want is None:
        return True
    from sentinel.wire.identity import normalize_pci

    return got is not None and normalize_pci(want) == normalize_pci(got)


def compare(exp: Expectation, observed: list[Observed]) -> list[str]:
    problems: list[str] = []
    left = list(observed)
    for want in exp.incidents:
        match = next(
            (
                o
                for o in left
                if o.category == want.category
                and (want.culprit_host is None or o.culprit_host == want.culprit_host)
                and _gpu_matches(want.culprit_gpu, o.culprit_gpu)
                and (want.job_id is None or o.job_id == want.job_id)
                and all(words in o.reason for words in want.reason_has)
            ),
            None,
        )
        if match is None:
            problems.append(
                f"missing: {want.category} on {want.culprit_host or 'any host'}"
                f"{' GPU ' + want.culprit_gpu if want.culprit_gpu else ''}"
                f"{' naming ' + ', '.join(want.reason_has) if want.reason_has else ''}"
            )
            continue
        left.remove(match)
        if not want.after_s <= match.detected_s <= want.by_s:
            problems.append(
                f"{want.category} on {want.culprit_host}: detected at "
                f"{match.detected_s:.1f} s, wanted between {want.after_s:g} and "
                f"{want.by_s:g} s"
            )
    if exp.exact:
        problems += [f"unexpected: {o.category} on {o.culprit_host} ({o.rule})" for o in left]
    return problems


def compare_decisions(exp: Expectation, observed: list[ObservedDecision]) -> list[str]:
    if exp.decisions is None:
        return []
    want = [(d.action, sorted(d.exclude_hosts)) for d in exp.decisions]
    got = [(d.action, sorted(d.exclude_hosts)) for d in observed]
    if want != got:
        return [
            f"decisions: wanted {want}, got {got} ({', '.join(d.rule for d in observed) or 'none'})"
        ]
    return [
        f"decision {d.action} at {o.decided_s:.1f} s, wanted by {d.by_s:g} s"
        for d, o in zip(exp.decisions, observed, strict=True)
        if o.decided_s > d.by_s
    ]


async def replay(case_dir: Path) -> Outcome:
    exp = load_expectation(case_dir / "expect.yaml")
    recorded = load_lines(recording_path(case_dir))
    start = recorded[0].at
    lines = through_the_agents(recorded)
    clock = VirtualClock(start)
    tokens = {r: new_token() for r in ("agent", "operator", "viewer")}
    with tempfile.TemporaryDirectory(prefix="sentinel-replay-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'replay.db'}"
        migrate.upgrade(url)
        settings = Settings(
            data_dir=Path(tmp),
            database={"url": url},
            run_loops=False,
            auth={"tokens": [TokenSpec(name=r, role=r, token=t) for r, t in tokens.items()]},
            triage={"heartbeat_interval_s": exp.heartbeat_interval_s},
            # A replay measures triage, not admission: a tick's batches are all admitted (the
            # in-process commits are slow in real time and would shrink an adaptive budget).
            ingest={
                "linger_ms": 0,
                "max_inflight_requests": 100_000,
                "start_inflight_requests": 100_000,
                "target_latency_s": 3600,
            },
        )
        app = create_app(settings, clock)
        ctx = app.state.ctx
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://replay") as client:
                nodes = RecordedNodes() if any(x.nodes is not None for x in lines) else None
                loops = _Loops(ctx, clock, exp.heartbeat_interval_s, nodes)
                # Lines within one tick arrive together, as concurrent agents' posts do; the
                # ingest writer then commits them as one group.
                for tick in _by_tick(lines, start):
                    await loops.tick_until(tick[0].at)
                    clock.set(max(clock.now(), tick[-1].at))
                    await asyncio.gather(*(_play(client, tokens, line) for line in tick))
                    if nodes is not None:
                        nodes.read(tick)
                # Past the last line the agents have gone quiet because the recording ended, not
                # because the job hung: triage keeps running, the watchdogs do not.
                await loops.tick_until(
                    clock.now() + timedelta(seconds=exp.run_for_s), watchdog=False
                )
            async with unit_of_work(ctx.sessions) as session:
                rows = (
                    await session.scalars(select(Incident).order_by(Incident.detected_at))
                ).all()
                decided = (
                    await session.scalars(select(Decision).order_by(Decision.created_at))
                ).all()
                # A GPU an incident names by its index (DCGM's name for it) is the one NVML
                # reported at that index: compared by its PCI address, like every other.
                pci_of = {
                    (g.host_id, str(g.gpu_index)): g.pci_bus_id
                    for g in (await session.scalars(select(Gpu))).all()
                    if g.pci_bus_id
                }
                decisions = [
                    ObservedDecision(
                        d.action,
                        list(d.exclude_hosts),
                        (d.created_at - start).total_seconds(),
                        d.rule,
                        d.status,
                    )
                    for d in decided
                ]
                observed = [
                    Observed(
                        i.category,
                        i.culprit_host,
                        pci_of.get((i.culprit_host or "", i.culprit_gpu or ""), i.culprit_gpu),
                        i.job_id,
                        (i.detected_at - start).total_seconds(),
                        i.rule,
                        i.reason,
                    )
                    for i in rows
                ]
    return Outcome(
        exp.name,
        case_dir,
        exp.incidents,
        observed,
        decisions,
        compare(exp, observed) + compare_decisions(exp, decisions),
    )


class RecordedNodes:
    """The scheduler as the leader's scheduler view reads it: the nodes the recording's
    latest `nodes` line lists, parsed as the Slurm adapter parses `sinfo`'s JSON."""

    name = "recorded"

    def __init__(self) -> None:
        self._text: str | None = None

    def read(self, lines: list[Line]) -> None:
        for line in lines:
            if line.nodes is not None:
                self._text = line.nodes

    async def nodes(self) -> NodesResult:
        if self._text is None:
            return NodesResult(adapter=self.name, op="nodes", ok=False, error="nothing yet")
        return NodesResult(
            adapter=self.name, op="nodes", ok=True, nodes=tuple(parse_sinfo(self._text))
        )


class _Loops:
    """The leader's loops on the virtual clock: triage every tick, the watchdog 4x/interval,
    the scheduler view (where the recording has the nodes' states) as its setting says."""

    def __init__(
        self,
        ctx: Any,
        clock: VirtualClock,
        heartbeat_interval_s: float,
        nodes: RecordedNodes | None = None,
    ) -> None:
        self._ctx = ctx
        self._clock = clock
        self._watchdog_every = timedelta(seconds=heartbeat_interval_s / 4)
        self._next_tick = clock.now()
        self._next_watchdog = clock.now()
        self._nodes = nodes
        self._view = SchedulerView(clock)
        self._view_every = timedelta(seconds=ctx.settings.scheduler.poll_nodes_s)
        self._next_view = clock.now()

    async def tick_until(self, when: datetime, *, watchdog: bool = True) -> None:
        while self._next_tick <= when:
            self._clock.set(max(self._clock.now(), self._next_tick))
            if watchdog and self._clock.now() >= self._next_watchdog:
                async with unit_of_work(self._ctx.sessions) as session:
                    resolved = await self._ctx.watchdog.run_once(session)
                await self._ctx.stages.run(resolved)
                self._next_watchdog = self._clock.now() + self._watchdog_every
            if self._nodes is not None and self._clock.now() >= self._next_view:
                await self._view.run_once(self._ctx.sessions, self._nodes)
                self._next_view = self._clock.now() + self._view_every
            await self._ctx.stages.run(await self._ctx.triage_worker.run_once())
            await self._ctx.stages.run(await self._ctx.remediation.run_due(self._ctx.sessions))
            self._next_tick += timedelta(seconds=TICK_S)


async def _play(client: httpx.AsyncClient, tokens: dict[str, str], line: Line) -> None:
    if line.batch is not None:
        r = await _post_as_an_agent(client, line.batch_json, tokens["agent"])
        if r.status_code != 202:
            raise RuntimeError(f"batch at {line.at} refused: {r.status_code} {r.text}")
    if line.api is not None:
        r = await client.request(
            line.api.method,
            line.api.path,
            json=line.api.body,
            headers={"Authorization": f"Bearer {tokens[line.api.role]}"},
        )
        if r.status_code >= 400:
            raise RuntimeError(f"API call at {line.at} failed: {r.status_code} {r.text}")


# Hosts post a tick's batches at once; ingest admits only so many at a time and asks the rest
# to come back (429/503 with Retry-After), as an agent would: retry after a short real pause.
_SHED = frozenset({429, 503})
_MAX_RETRIES = 2000
_RETRY_PAUSE_S = 0.01


async def _post_as_an_agent(client: httpx.AsyncClient, body: str, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for _ in range(_MAX_RETRIES):
        r = await client.post("/api/v1/reports", content=body, headers=headers)
        if r.status_code not in _SHED:
            return r
        await asyncio.sleep(_RETRY_PAUSE_S)
    return r


def _by_tick(lines: list[Line], start: datetime) -> list[list[Line]]:
    groups: dict[int, list[Line]] = {}
    for line in lines:
        groups.setdefault(int((line.at - start).total_seconds() // TICK_S), []).append(line)
    return [groups[k] for k in sorted(groups)]


def case_dirs(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if (p / "expect.yaml").exists():
            out.append(p)
        else:
            out.extend(sorted(d.parent for d in p.rglob("expect.yaml")))
    return out
