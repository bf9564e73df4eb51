"""Soak: live correctness under a sustained stream of failures (DESIGN.md, "Live correctness").

The demo fleet for real (`sentinel.demo.run.Demo`): the service as a subprocess (`sentinel
serve`, SQLite, dry-run scheduler), real agents in this process (scripted NVML) tailing real
kernel and training log files, --jobs simulated training jobs on disjoint hosts (8: 32 hosts
each, 4 racks of 8; each job's ranks beat through its hosts' agents, stall at a fault and come
back from the job's checkpoint a few seconds after a decision on that job), and a fault drawn
from Llama 3's root-cause mix written into the logs of one job's hosts every 15 s for --minutes.

Llama 3's mix is per interruption of a *running* job: a job that is down cannot be interrupted
again. So each fault goes to a job picked uniformly among those that train (not stalled, not
waiting for a restart, back for a while since their last one) and whose last fault is at least
--min-job-gap old (default 4 beats: its previous incident decided, the job restarted, and the
incident resolved as training resumed). A beat that finds no such job waits for one: it is
counted as late. A fault's spread is within its job: its culprit, the culprit's rack, or every
host of the job.

The fleet then runs --settle seconds more with no faults, and every incident the service
recorded is matched against the faults injected, job by job (an incident can only match a
fault of its own job_id):

- each fault expects its template's category, and its host as the culprit when it is a
  single-host fault (rack-wide and job-wide faults expect no particular host: any culprit,
  or none, is accepted);
- an incident can match a fault if it was detected (detected_at) after the injection and its
  evidence starts (opened_at) before the next fault in that job that could explain it; faults
  are taken in injection order and each takes the earliest-detected incident left (greedy, one
  to one): first with the right category and culprit ("matched"), then, for the faults left,
  the right category but another culprit ("wrong culprit"), then an incident on one of the
  fault's hosts (or naming none) with another category, before the job's next fault of any
  kind ("wrong category");
- a fault with none of these is "missed"; an incident no fault took is "extra".

While it runs, GET /metrics is scraped every second (sentinel_triage_lag_seconds and
sentinel_triage_backlog_events) and the service's CPU time and RSS are read from /proc.
Detection latency: the incident's detected_at minus the fault's injection (wall clock, same
machine), over the matched faults; and to its final verdict (its last reclassification, if any:
a provisional verdict, e.g. a hang, refined once the cause arrived). An incident detected before
a fault and later reclassified into that fault's verdict does not match it (it was opened for
something else, and decided on that): it is extra, the fault missed, and its transitions are
printed.

    python benchmarks/soak.py --minutes 20 [--hosts 256] [--jobs 8] [--strict]

--strict: exit 1 if any fault is missed, matched with a wrong culprit or category, or any
incident is extra. Progress (each fault, each decision) goes to stderr; the report to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from sentinel.demo.faults import Injection
from sentinel.demo.run import BY_HAND_AFTER_S, Demo
from sentinel.demo.service import free_port

# The test harnesses (tests/harness) are not installed: import them from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sentinel.triage.taxonomy import Category
from tests.harness.service import LiveService

LAG = "sentinel_triage_lag_seconds"
BACKLOG = "sentinel_triage_backlog_events"
PAGE = 5000  # the API's largest page (GET /api/v1/incidents?limit=)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------- the service process


def _tree(pid: int) -> list[int]:
    """The process and its descendants (a service with --workers N forks them)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    text = Path(f"/proc/{p}/task/{task}/children").read_text()
                    todo += [int(c) for c in text.split()]
    return out


def _proc_cpu_rss(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and resident bytes of one process; (0, 0) once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0, 0
    fields = stat[stat.rindex(")") + 2 :].split()
    # After the command: state is field 3; utime 14, stime 15, rss 24 (1-based, man 5 proc).
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return cpu, int(fields[21]) * PAGE_SIZE


@dataclass
class ProcStats:
    pid: int
    cpu0: float = 0.0
    t0: float = 0.0
    cpu: float = 0.0  # seconds since start()
    wall: float = 0.0
    rss_peak: int = 0
    rss_last: int = 0
    # CPU already spent by processes of the tree that have exited (a restarted worker).
    _last_by_pid: dict[int, float] = field(default_factory=dict)

    def _total(self) -> tuple[float, int]:
        cpu, rss = 0.0, 0
        for p in _tree(self.pid):
            c, r = _proc_cpu_rss(p)
            self._last_by_pid[p] = max(c, self._last_by_pid.get(p, 0.0))
            rss += r
        cpu = sum(self._last_by_pid.values())
        return cpu, rss

    def start(self) -> None:
        self.cpu0, rss = self._total()
        self.t0 = time.monotonic()
        self.rss_peak = self.rss_last = rss

    def sample(self) -> None:
        cpu, rss = self._total()
        self.cpu = cpu - self.cpu0
        self.wall = time.monotonic() - self.t0
        self.rss_last = rss
        self.rss_peak = max(self.rss_peak, rss)

    def hwm(self) -> int:
        """The kernel's own peak RSS (VmHWM) of the main process, in bytes; 0 if unknown."""
        with contextlib.suppress(OSError, ValueError, StopIteration):
            status = Path(f"/proc/{self.pid}/status").read_text().splitlines()
            line = next(x for x in status if x.startswith("VmHWM:"))
            return int(line.split()[1]) * 1024
        return 0


def gauge(text: str, name: str) -> float | None:
    """The value of an unlabelled gauge in Prometheus text format; None when absent."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            with contextlib.suppress(ValueError, IndexError):
                return float(line.rsplit(" ", 1)[1])
    return None


# ---------------------------------------------------------------- what the service recorded


@dataclass(frozen=True)
class Incident:
    id: str
    job_id: str | None
    category: str
    culprit: str | None
    rule: str
    reason: str
    state: str
    opened: float  # epoch seconds
    detected: float
    # When it took its present category and culprit: detected, or its last reclassification.
    named: float = 0.0
    history: tuple[tuple[float, str, str], ...] = ()  # (at, to_state, reason) per transition

    @property
    def reclassified(self) -> bool:
        return self.named != self.detected

    @classmethod
    def parse(cls, d: dict[str, Any], transitions: Sequence[dict[str, Any]] = ()) -> Incident:
        detected = datetime.fromisoformat(d.get("detected_at") or d["opened_at"]).timestamp()
        history = tuple(
            (datetime.fromisoformat(t["at"]).timestamp(), str(t["to_state"]), str(t["reason"]))
            for t in transitions
        )
        named = max(
            (at for at, _, reason in history if reason.startswith("reclassified")),
            default=detected,
        )
        return cls(
            id=str(d["id"]),
            job_id=d.get("job_id"),
            category=d["category"],
            culprit=d.get("culprit_host"),
            rule=d.get("rule", ""),
            reason=d.get("reason", ""),
            state=d.get("state", ""),
            opened=datetime.fromisoformat(d["opened_at"]).timestamp(),
            detected=detected,
            named=max(named, detected),
            history=history,
        )


async def fetch_all(
    client: httpx.AsyncClient, path: str, splits: dict[str, Sequence[str]]
) -> tuple[list[dict[str, Any]], bool]:
    """Every row of a list endpoint that has no offset: one page of PAGE, and if that is full,
    one query per combination of the filters in `splits`. Returns (rows, complete)."""
    rows = (await client.get(path, params={"limit": PAGE})).raise_for_status().json()
    if len(rows) < PAGE:
        return rows, True
    out: dict[str, dict[str, Any]] = {}
    complete = True
    combos: list[dict[str, str]] = [{}]
    for key, values in splits.items():
        combos = [c | {key: v} for c in combos for v in values]
    for params in combos:
        part = (await client.get(path, params=params | {"limit": PAGE})).raise_for_status().json()
        complete &= len(part) < PAGE
        out.update({str(r["id"]): r for r in part})
    return list(out.values()), complete


# ---------------------------------------------------------------- matching


@dataclass
class Pair:
    fault: Injection
    incident: Incident
    how: str  # "matched", "wrong culprit", "wrong category"


@dataclass
class Matching:
    pairs: list[Pair]
    missed: list[Injection]
    extra: list[Incident]

    def by(self, how: str) -> list[Pair]:
        return [p for p in self.pairs if p.how == how]


Same = Callable[[Injection, Injection], bool]  # could fault g explain what fault f did?
Fits = Callable[[Injection, Incident], bool]  # is the incident what fault f should give?


def _same_scope(f: Injection, g: Injection) -> bool:
    return (g.category, g.culprit) == (f.category, f.culprit)


def _same_category(f: Injection, g: Injection) -> bool:
    return g.category == f.category


def _any_fault(f: Injection, g: Injection) -> bool:
    return True


def _right(f: Injection, x: Incident) -> bool:
    return x.category == f.category.value and (f.culprit is None or x.culprit == f.culprit)


def _right_category(f: Injection, x: Incident) -> bool:
    return f.culprit is not None and x.category == f.category.value


def _on_its_hosts(f: Injection, x: Incident) -> bool:
    return x.category != f.category.value and (x.culprit is None or x.culprit in f.hosts)


# In this order: each pass only sees the faults and incidents the earlier ones left.
PASSES: tuple[tuple[str, Fits, Same], ...] = (
    # Right category and culprit; the window ends at the next fault that could explain it.
    ("matched", _right, _same_scope),
    # Right category, another culprit (or none), before the next fault of that category.
    ("wrong culprit", _right_category, _same_category),
    # Another category, on one of the fault's hosts (or naming none), before the next fault.
    ("wrong category", _on_its_hosts, _any_fault),
)


def match(faults: Sequence[Injection], incidents: Sequence[Incident]) -> Matching:
    """Greedy, one to one, faults in injection order: each takes the earliest-detected incident
    of its job left that fits it, detected after the injection, with evidence from before the
    job's next fault that could explain it."""
    faults = sorted(faults, key=lambda f: f.at)
    left = sorted(incidents, key=lambda i: (i.detected, i.opened))
    taken: set[str] = set()
    pairs: dict[int, Pair] = {}
    for how, fits, same in PASSES:
        for i, f in enumerate(faults):
            if i in pairs:
                continue
            until = next(
                (g.at for g in faults[i + 1 :] if g.job_id == f.job_id and same(f, g)), math.inf
            )
            for inc in left:
                if inc.id in taken or inc.job_id != f.job_id:
                    continue
                if inc.detected < f.at or inc.opened >= until:
                    continue
                if fits(f, inc):
                    taken.add(inc.id)
                    pairs[i] = Pair(f, inc, how)
                    break
    return Matching(
        pairs=[pairs[i] for i in sorted(pairs)],
        missed=[f for i, f in enumerate(faults) if i not in pairs],
        extra=[inc for inc in left if inc.id not in taken],
    )


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: p99 of fewer than 100 values is their largest."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# ---------------------------------------------------------------- the run


@dataclass
class Measured:
    started: float = 0.0  # wall clock when the fleet started
    load: list[float] = field(default_factory=list)  # 1-min load average, sampled
    faults: list[Injection] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    incidents_complete: bool = True
    decisions: Counter[str] = field(default_factory=Counter)
    lag: list[float] = field(default_factory=list)
    backlog: list[float] = field(default_factory=list)
    scrapes: int = 0
    scrape_errors: int = 0
    stats: ProcStats | None = None
    rss_hwm: int = 0


async def measure(
    demo: Demo, service: LiveService, stop: asyncio.Event, out: Measured, args: argparse.Namespace
) -> None:
    """Runs beside the demo: sample the service until the faults are done and the fleet has
    settled, then read back every incident (while the service is still up)."""
    assert service.proc is not None
    stats = out.stats = ProcStats(service.proc.pid)
    stats.start()
    out.started = time.time()
    done = asyncio.Event()

    async with httpx.AsyncClient(
        base_url=service.url, headers=service.headers(), timeout=10
    ) as client:

        async def scrape() -> None:
            while not done.is_set():
                tick = time.monotonic()
                stats.sample()
                out.load.append(os.getloadavg()[0])
                try:
                    text = (await client.get("/metrics")).raise_for_status().text
                except httpx.HTTPError:
                    out.scrape_errors += 1
                else:
                    out.scrapes += 1
                    for name, series in ((LAG, out.lag), (BACKLOG, out.backlog)):
                        value = gauge(text, name)
                        if value is not None:
                            series.append(value)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        done.wait(), max(0.0, args.scrape_every - (time.monotonic() - tick))
                    )

        sampler = asyncio.create_task(scrape())
        try:
            waiting = asyncio.create_task(demo.injecting_done.wait())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            stopping.cancel()
            if not stop.is_set():
                print(f"faults done; settling {args.settle:g} s", file=sys.stderr)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=args.settle)
        finally:
            done.set()
            await sampler
        stats.sample()
        out.rss_hwm = stats.hwm()
        states = ("open", "mitigating", "resolved")
        categories = sorted(c.value for c in Category)
        rows, out.incidents_complete = await fetch_all(
            client, "/api/v1/incidents", {"state": states, "category": categories}
        )
        # Each one's transitions: when it took its present verdict (reclassifications).
        details: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                one = (await client.get(f"/api/v1/incidents/{r['id']}")).raise_for_status()
                details[str(r["id"])] = list(one.json().get("transitions", []))
        out.incidents = [Incident.parse(r, details.get(str(r["id"]), [])) for r in rows]
        decisions, _ = await fetch_all(client, "/api/v1/decisions", {})
        out.decisions = Counter(f"{d['action']}" for d in decisions)


# ---------------------------------------------------------------- the report


def report(args: argparse.Namespace, demo: Demo, m: Measured) -> int:
    faults = sorted(m.faults, key=lambda f: f.at)
    t0 = faults[0].at if faults else m.started
    matching = match(faults, m.incidents)
    matched, wrong_culprit = matching.by("matched"), matching.by("wrong culprit")
    wrong_category = matching.by("wrong category")

    def rel(t: float) -> str:
        return f"{t - t0:+8.1f} s"

    def secs(values: Sequence[float]) -> str:
        if not values:
            return "n/a (no samples)"
        return (
            f"p50 {pct(values, 50):.2f} s   p99 {pct(values, 99):.2f} s   max {max(values):.2f} s"
        )

    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"machine: {os.cpu_count()} CPUs; service: sentinel serve (SQLite, 1 worker, dry-run "
        f"scheduler); fleet: {demo.hosts} hosts, {demo.agents} real agents in this process"
    )
    sizes = sorted({len(j.hosts) for j in demo.sims})
    print(
        f"jobs: {len(demo.sims)} on disjoint hosts ({demo.sims[0].name}"
        + (f" .. {demo.sims[-1].name}" if len(demo.sims) > 1 else "")
        + f"), {'/'.join(map(str, sizes))} hosts each; a fault goes to a job that is training, "
        f"back {demo.resumed_s:g} s since a restart and not hit in the last {demo.gap_s:g} s"
    )
    if m.load:
        print(
            f"load average (1 min) during the run: median {pct(m.load, 50):.1f}, "
            f"max {max(m.load):.1f} (the machine is shared: other processes count too)"
        )
    span = (faults[-1].at - t0) if faults else 0.0
    print(
        f"\n== soak: a fault every {args.fault_every:g} s for {args.minutes:g} min "
        f"({len(faults)} faults over {span:.0f} s), then {args.settle:g} s settle; "
        f"seed {args.seed} =="
    )
    ranks = demo.ranks_at_first_fault
    if faults:
        print(
            f"  first fault                  {faults[0].at - m.started:.0f} s after the fleet "
            f"started; the service knew {ranks if ranks is not None else '?'} of "
            f"{demo.hosts * 8} ranks then"
        )
    print(f"  faults injected              {len(faults)}")
    beats = len(faults) + demo.skipped_beats
    late = demo.late_beats
    print(
        f"  late beats (no job to hit)   {len(late)} of {beats}"
        + (f", waited p50 {pct(late, 50):.1f} s, max {max(late):.1f} s for a job" if late else "")
        + (f"; {demo.skipped_beats} found none before the end" if demo.skipped_beats else "")
    )
    relabelled = [p for p in matched if p.incident.reclassified]
    print(
        f"  matched (category, culprit)  {len(matched)}"
        + (f"  ({len(relabelled)} of them reclassified after being opened)" if relabelled else "")
    )
    print(f"  wrong culprit                {len(wrong_culprit)}")
    print(f"  wrong category               {len(wrong_category)}")
    print(f"  faults missed                {len(matching.missed)}")
    print(f"  extra incidents              {len(matching.extra)}")
    decisions = ", ".join(f"{k} {v}" for k, v in m.decisions.most_common()) or "none"
    print(
        f"  incidents in all             {len(m.incidents)}"
        + ("" if m.incidents_complete else "  (WARNING: more than the API returns; incomplete)")
        + f"; decisions {sum(m.decisions.values())} ({decisions})"
    )
    lag = secs(m.lag) if m.lag else "n/a (metric missing)"
    print(f"  triage lag                   {lag}   ({len(m.lag)} scrapes)")
    if m.backlog:
        print(
            f"  triage backlog               p50 {pct(m.backlog, 50):.0f}   "
            f"p99 {pct(m.backlog, 99):.0f}   max {max(m.backlog):.0f} events"
        )
    else:
        print("  triage backlog               n/a (metric missing)")
    if m.scrape_errors:
        print(f"  /metrics scrapes failed      {m.scrape_errors} of {m.scrapes + m.scrape_errors}")
    latency = [p.incident.detected - p.fault.at for p in matched]
    to_verdict = [p.incident.named - p.fault.at for p in matched]
    print(
        f"  detection latency            {secs(latency)}   "
        f"(injection → detected_at, {len(latency)} matched)"
    )
    if relabelled:
        print(
            f"  ... to the final verdict     {secs(to_verdict)}   "
            f"(injection → last reclassification, else detected_at)"
        )
    s = m.stats
    if s is not None:
        print(
            f"  service CPU                  {s.cpu:.1f} s over {s.wall:.0f} s = "
            f"{s.cpu / max(s.wall, 1e-9) * 100:.0f}% of one core"
        )
        peak = max(s.rss_peak, m.rss_hwm)
        print(
            f"  service RSS                  peak {peak / 2**20:.0f} MiB "
            f"(sampled {s.rss_peak / 2**20:.0f}, VmHWM {m.rss_hwm / 2**20:.0f}); "
            f"at the end {s.rss_last / 2**20:.0f} MiB"
        )
    by_hand = sum(j.restarts_by_hand for j in demo.sims)
    print(
        f"  job restarts                 {sum(j.restarts for j in demo.sims)} ({by_hand} by hand: "
        f"no decision on the job {BY_HAND_AFTER_S:g} s after its fault)"
    )
    me = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"  this process (agents, job)   {me.ru_utime + me.ru_stime:.1f} s CPU, "
        f"peak RSS {me.ru_maxrss / 1024:.0f} MiB"
    )

    print("\n  by category                  injected matched  wrong-culprit wrong-category missed")
    for cat in sorted(
        {f.category.value for f in faults},
        key=lambda c: -sum(f.category.value == c for f in faults),
    ):

        def n(rows: Sequence[Pair], cat: str = cat) -> int:
            return sum(p.fault.category.value == cat for p in rows)

        print(
            f"    {cat:<26} {sum(f.category.value == cat for f in faults):>8} {n(matched):>7}"
            f" {n(wrong_culprit):>14} {n(wrong_category):>14}"
            f" {sum(f.category.value == cat for f in matching.missed):>6}"
        )
    print(
        "\n  by job                       injected matched  wrong-culprit wrong-category missed"
        "  extra incidents restarts"
    )
    for job in demo.sims:

        def k(rows: Sequence[Pair], name: str = job.name) -> int:
            return sum(p.fault.job_id == name for p in rows)

        print(
            f"    {job.name:<26} {sum(f.job_id == job.name for f in faults):>8} {k(matched):>7}"
            f" {k(wrong_culprit):>14} {k(wrong_category):>14}"
            f" {sum(f.job_id == job.name for f in matching.missed):>6}"
            f" {sum(i.job_id == job.name for i in matching.extra):>6}"
            f" {sum(i.job_id == job.name for i in m.incidents):>9}"
            f" {job.restarts:>8}"
        )
    ours = {j.name for j in demo.sims}
    other = [i for i in m.incidents if i.job_id not in ours]
    if other:
        print(
            f"    {'(no job / another job)':<26} {'':>8} {'':>7} {'':>14} {'':>14} {'':>6}"
            f" {sum(i in other for i in matching.extra):>6} {len(other):>9}"
        )
    if m.incidents:
        print(
            "  incidents by category: "
            + ", ".join(
                f"{k} {v}" for k, v in Counter(i.category for i in m.incidents).most_common()
            )
        )

    def fault_text(f: Injection) -> str:
        n = faults.index(f) + 1
        culprit = f.culprit or "any host"
        return (
            f"fault #{n} at {rel(f.at)}: {f.category.value} on {f.where} of {f.job_id} "
            f"(expect culprit {culprit})"
        )

    def cut(text: str, n: int = 160) -> str:
        return text if len(text) <= n else text[: n - 3] + "..."

    def inc_text(i: Incident) -> str:
        named = f" named {rel(i.named)}" if i.reclassified else ""
        return (
            f"incident {i.id[:8]} {i.job_id or '(no job)'} {i.category} culprit "
            f"{i.culprit or '-'} [{i.state}] "
            f"opened {rel(i.opened)} detected {rel(i.detected)}{named} rule {i.rule}: "
            f"{cut(i.reason)}"
        )

    def history(i: Incident) -> None:
        if not i.reclassified:
            return
        for at, state, reason in i.history:
            print(f"          {rel(at)} -> {state}: {cut(reason, 140)}")

    problems = len(wrong_culprit) + len(wrong_category) + len(matching.missed) + len(matching.extra)
    if problems:
        print("\n  mismatches (times from the first fault):")
    for p in [*wrong_culprit, *wrong_category]:
        print(f"    {p.how.upper()}: {fault_text(p.fault)}")
        print(f"        got {inc_text(p.incident)}")
        history(p.incident)
    for f in matching.missed:
        print(f"    MISSED: {fault_text(f)}")
    for i in matching.extra:
        before = [f for f in faults if f.at <= i.detected and f.job_id == i.job_id]
        after = (
            f"; the job's last fault before it: #{faults.index(before[-1]) + 1} "
            f"{before[-1].describe()} at {rel(before[-1].at)}"
            if before
            else ""
        )
        print(f"    EXTRA: {inc_text(i)}{after}")
        history(i)
    if relabelled:
        # Right in the end, after a first verdict (decisions may have been taken on that one).
        print("\n  matched after a reclassification (the incident's history):")
        for p in relabelled:
            print(f"    {fault_text(p.fault)}\n        {inc_text(p.incident)}")
            history(p.incident)
    if args.verbose:
        print("\n  matched:")
        for p in matched:
            print(f"    {fault_text(p.fault)}\n        {inc_text(p.incident)}")
    bad = problems > 0
    return 1 if args.strict and bad else 0


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=20.0, help="how long faults are injected")
    p.add_argument("--fault-every", type=float, default=15.0, help="seconds between faults")
    p.add_argument("--hosts", type=int, default=256, help="demo fleet size (real agents: <=256)")
    p.add_argument("--jobs", type=int, default=8, help="training jobs on disjoint hosts")
    p.add_argument(
        "--min-job-gap",
        type=float,
        help="seconds before a job can be hit again (default: 4 x --fault-every)",
    )
    p.add_argument("--settle", type=float, default=60.0, help="seconds after the last fault")
    p.add_argument("--seed", type=int, default=405, help="seed of the fault draw")
    p.add_argument(
        "--ranks-wait",
        type=float,
        default=120.0,
        help="the first fault waits (up to this long) until the service knows every rank",
    )
    p.add_argument("--scrape-every", type=float, default=1.0, help="seconds between /metrics")
    p.add_argument("--data-dir", type=Path, help="keep the run's files here (default: a temp dir)")
    p.add_argument("--strict", action="store_true", help="exit 1 on any mismatch")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--verbose", action="store_true", help="also list the matched pairs")
    args = p.parse_args()
    # The agents' own warnings (a refused send, a retry) are progress too: stderr.
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING)

    tmp = None if args.data_dir else tempfile.mkdtemp(prefix="sentinel-soak-")
    data_dir = args.data_dir or Path(tmp or ".") / "demo"
    measured = Measured()
    demo = Demo(
        hosts=args.hosts,
        port=free_port(),
        data_dir=data_dir,
        duration_s=None,
        fault_every_s=args.fault_every,
        seed=args.seed,
        console=Console(stderr=True, quiet=args.quiet, emoji=False),
        jobs=args.jobs,
        min_job_gap_s=args.min_job_gap,
        on_inject=measured.faults.append,
        inject_for_s=args.minutes * 60,
        ranks_wait_s=args.ranks_wait,
        banner=False,
    )

    async def driver(service: LiveService, stop: asyncio.Event) -> None:
        await measure(demo, service, stop, measured, args)

    try:
        asyncio.run(demo.run(driver))
        if tmp is None:  # kept: what was injected and what the service recorded, to dig into
            (data_dir / "soak.json").write_text(
                json.dumps(
                    {
                        "faults": [
                            {
                                "at": f.at,
                                "job_id": f.job_id,
                                "category": f.category.value,
                                "culprit": f.culprit,
                                "where": f.where,
                                "hosts": list(f.hosts),
                            }
                            for f in measured.faults
                        ],
                        "incidents": [dataclasses.asdict(i) for i in measured.incidents],
                        "jobs": [
                            {
                                "name": j.name,
                                "hosts": [demo.host(h) for h in j.hosts],
                                "faults": j.faults,
                                "restarts": j.restarts,
                                "restarts_by_hand": j.restarts_by_hand,
                            }
                            for j in demo.sims
                        ],
                        "late_beats": demo.late_beats,
                    },
                    indent=1,
                )
            )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(report(args, demo, measured))


if __name__ == "__main__":
    main()
