"""A seeded 54-day history of a 16,384-GPU job at Llama 3's failure rates, played under
watchdog + manual triage and under Sentinel with more and more of its mechanisms; the reactive
run is written to SQLite for `sentinel report`.

The fault schedule is drawn once (Table 5's 419 unexpected interruptions at uniformly random
times, plus 47 planned ones) and played once per variant over the same draws. Each unexpected
fault is drawn as one of its category's variants of real-format events (`draws`), weighed by
the real triage, and its verdict decided by the real `DEFAULT_POLICY`; a wrong verdict costs
what it would: a faulty host left in the job fails the restart again, a healthy host excluded
is lost to the job (and waits for a replacement without a spare), a fabric fault restarted at
once fails again. Mechanisms the service does not have yet (proactive swap, hot spares,
in-place restart: issue 17, items 1, 2, 4) are modelled here, each with its assumptions.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Final

from sqlalchemy import create_engine, insert

from sentinel.db import migrate
from sentinel.db.engine import sync_url
from sentinel.db.models import Decision, Host, Incident, Job, JobProgress, JobRank
from sentinel.remediation.policy import (
    DEFAULT_POLICY,
    HOST_HARDWARE,
    Action,
    PastDecision,
    Proposal,
    RemediationContext,
)
from sentinel.reports import draws
from sentinel.reports.cadence import advise
from sentinel.settings import RemediationSettings, TriageSettings
from sentinel.triage.taxonomy import (
    GPU_CATEGORIES,
    LLAMA3_PLANNED_INTERRUPTIONS,
    LLAMA3_TABLE5,
    Category,
)

START = datetime(2026, 1, 5, tzinfo=UTC)
JOB_ID = draws.JOB
host_name = draws.host_name
_RESTARTING = (Action.restart, Action.restart_in_place, Action.exclude_and_restart, Action.hold)

L3 = "Llama 3 paper (Dubey et al. 2024, sec. 3.3.4, Table 5)"
BR = "ByteRobust (Wan et al. 2025, arXiv:2509.16293)"
KK = 'Kokolis et al. 2025, "Revisiting reliability in large-scale ML research clusters"'
NV = "NVIDIA Resiliency Extension (NVRx) docs"
JUDGEMENT = "assumption (a judgement, no published figure)"

# Hardware faults that show a leading indicator before they interrupt the job, by category.
PRECURSOR_SHARES: Final[dict[Category, float]] = {
    Category.GPU_HBM_MEMORY: 0.4,  # rows pending remap, correctable ECC rising
    Category.GPU_THERMAL: 0.5,  # slowdowns that repeat
    Category.POWER_SUPPLY: 0.5,  # a PSU that lost redundancy
    Category.SERVER_CHASSIS: 0.5,  # a fan at 0 RPM
    Category.NIC: 0.3,  # symbol errors rising
    Category.FAULTY_GPU: 0.15,  # an XID asking for a reset at the next opportunity
}


@dataclass(frozen=True)
class Assumptions:
    """Every figure the simulation rests on; printed with its source."""

    days: float = 54.0
    hosts: int = 2048
    gpus_per_host: int = 8
    step_time_s: float = 6.0
    checkpoint_interval_s: float = 600.0
    checkpoint_save_s: float = 1.0
    requeue_s: float = 120.0
    init_s: float = 180.0
    node_wait_s: float = 600.0
    in_place_restart_s: float = 60.0
    watchdog_s: float = 600.0
    manual_triage_s: float = 1800.0
    baseline_crash_loops: int = 2
    event_detection_s: float = 2.0
    sdc_detection_s: float = 300.0
    execute_s: float = 1.0
    human_response_s: float = 1800.0
    software_fix_s: float = 3600.0
    crash_after_restart_s: float = 120.0
    deterministic_bug_share: float = 0.3
    repeat_share: float = 0.15
    repair_s: float = 2 * 86400.0
    precursor_scale: float = 1.0  # x PRECURSOR_SHARES (the sensitivity table varies it)
    remediation: RemediationSettings = field(default_factory=RemediationSettings)
    triage: TriageSettings = field(default_factory=TriageSettings)

    @property
    def restart_s(self) -> float:
        return self.requeue_s + self.init_s

    @property
    def hang_detection_s(self) -> float:
        # Stalled heartbeats are a hang after stall_intervals; a provisional verdict settles.
        t = self.triage
        return t.heartbeat_interval_s * (t.stall_intervals + 1) + self.remediation.settle_s

    def precursor_share(self, category: Category) -> float:
        return min(1.0, PRECURSOR_SHARES.get(category, 0.0) * self.precursor_scale)

    def lines(self) -> list[str]:
        """Each assumption with its value and its source (the same for every variant)."""
        s = {f.name: getattr(self, f.name) for f in fields(self)}
        mttf = self.days * 86400 / sum(n for n, _ in LLAMA3_TABLE5.values())
        shares = ", ".join(f"{c.value} {v:.0%}" for c, v in PRECURSOR_SHARES.items())
        rows = [
            ("job", f"{self.hosts} hosts x {self.gpus_per_host} GPUs, {self.days:g} days", L3),
            ("faults", f"Table 5's 419 unexpected ({mttf / 3600:.2f} h MTTF) + "
             f"{LLAMA3_PLANNED_INTERRUPTIONS} planned, at uniformly random times", L3),
            ("step time", f"{s['step_time_s']:g} s", JUDGEMENT + " (405B, 16M-token batches)"),
            ("checkpoint interval (as configured)", f"{s['checkpoint_interval_s']:g} s",
             JUDGEMENT + "; Llama 3 gives none"),
            ("checkpoint save, blocking part", f"{s['checkpoint_save_s']:g} s",
             f"{JUDGEMENT}: async checkpointing blocks only for the copy to host memory "
             "(405B params x 16 B of weights and Adam state / 16,384 GPUs = 0.4 GB a GPU, "
             f"~0.02 s at 25 GB/s; {NV}: async and local checkpointing; {BR}: near-zero "
             "checkpoint overhead)"),
            ("requeue (scheduler, same nodes)", f"{s['requeue_s']:g} s", JUDGEMENT),
            ("init (NCCL at 16k ranks + checkpoint load)", f"{s['init_s']:g} s", JUDGEMENT),
            ("wait for a replacement host without a spare", f"{s['node_wait_s']:g} s",
             JUDGEMENT + f"; {BR} keeps warm standbys to avoid it"),
            ("hot spares", "a pool of 8 validated hosts, refilled from repaired ones, never "
             "empty", f"{JUDGEMENT}; {BR}: warm standby; {NV}: hot spares"),
            ("in-place restart (processes kept, no requeue)", f"{s['in_place_restart_s']:g} s "
             "where the policy decides restart_in_place (a software error, a hang or an "
             "unknown failure with no host to blame, once per fault; the same software error "
             "again is escalated as a crash loop, another fault requeued); with hot spares too, "
             "an exclusion is an in-job restart onto the spare (init only)",
             f"{JUDGEMENT}; {NV}: in-process and in-job restart, warm spares"),
            ("baseline detection + triage", f"NCCL watchdog {s['watchdog_s']:g} s + manual "
             f"triage {s['manual_triage_s']:g} s; the human always finds the host",
             "PyTorch ProcessGroupNCCL default timeout (600 s); triage time " + JUDGEMENT),
            ("sentinel detection", f"{s['event_detection_s']:g} s from events, "
             f"{self.hang_detection_s:g} s for hangs, {s['sdc_detection_s']:g} s for SDC",
             "DESIGN.md targets, measured by benchmarks/detect_to_restart.py; SDC " + JUDGEMENT),
            ("escalation", f"waits {s['human_response_s']:g} s for a human", JUDGEMENT),
            ("software bugs", f"{s['deterministic_bug_share']:.0%} repeat after a restart "
             f"({s['crash_after_restart_s']:g} s in) until fixed ({s['software_fix_s']:g} s)",
             JUDGEMENT),
            ("a fault left in the job", f"fails the restart again {s['crash_after_restart_s']:g}"
             " s in (a faulty host kept, a fabric restarted before it is quiet)", JUDGEMENT),
            ("repeat offenders", f"{s['repeat_share']:.0%} of host faults on a host that "
             f"failed before; an excluded host is out {s['repair_s'] / 3600:g} h",
             f"{KK} (lemon nodes); share and repair time {JUDGEMENT}"),
            ("evidence", "host-hardware faults: 90% with their own evidence, 7% only the "
             "culprit's ranks stopping first, 3% nothing pointing at it", JUDGEMENT),
            ("precursors (proactive swap)", f"{shares} (x{self.precursor_scale:g}), seen "
             "before the next checkpoint", f"{KK} and {BR} report proactive health checks; "
             "the shares are an " + JUDGEMENT),
        ]  # fmt: skip
        return [f"{name}: {value}  [{source}]" for name, value, source in rows]


@dataclass(frozen=True)
class Mechanisms:
    """What a run has: Sentinel at all, and each of issue 17's mechanisms."""

    sentinel: bool = True
    proactive_swap: bool = False
    hot_spares: bool = False
    cadence: bool = False
    in_place: bool = False


VARIANTS: Final = (
    ("watchdog + manual triage", Mechanisms(sentinel=False)),
    ("Sentinel reactive (today)", Mechanisms()),
    ("+ proactive swap", Mechanisms(proactive_swap=True)),
    ("+ hot spares", Mechanisms(hot_spares=True)),
    ("+ checkpoint cadence advice", Mechanisms(cadence=True)),
    ("+ in-place restart", Mechanisms(in_place=True)),
    ("all together", Mechanisms(True, True, True, True, True)),
)


@dataclass(frozen=True, order=True)
class Fault:
    at_s: float
    seq: int
    category: Category = field(compare=False)
    host: int | None = field(compare=False, default=None)
    gpu: int | None = field(compare=False, default=None)
    signature: str | None = field(compare=False, default=None)
    deterministic: bool = field(compare=False, default=False)
    recurrence: bool = field(compare=False, default=False)
    loop: int = field(compare=False, default=0)  # how often it failed the job already
    draw: float = field(compare=False, default=0.0)  # picks its variant of evidence
    precursor: float = field(compare=False, default=1.0)  # < the share: it shows one


@dataclass(frozen=True)
class Interruption:
    fault: Fault
    fault_s: float
    detected_s: float
    issued_s: float  # the restart issued (decision carried out)
    resumed_s: float  # training again
    steps_lost: int
    checkpoint_step: int
    action: str
    status: str
    rule: str
    reason: str
    exclude_hosts: tuple[str, ...] = ()
    category: Category | None = None  # the verdict's (None: announced, not triaged)
    planned: bool = False  # a proactive swap or announced work: no lost work


@dataclass
class Run:
    interruptions: list[Interruption] = field(default_factory=list)
    prevented: list[Fault] = field(default_factory=list)
    excluded: set[str] = field(default_factory=set)
    quarantined: set[str] = field(default_factory=set)
    swaps: int = 0
    end_s: float = 0.0
    checkpoint_interval_s: float = 600.0
    checkpoint_save_s: float = 0.0

    def downtime_s(self, step_time_s: float) -> float:
        return sum(
            (i.resumed_s - i.fault_s) + i.steps_lost * step_time_s for i in self.interruptions
        )

    def losses(self, step_time_s: float) -> dict[str, float]:
        """Where the time went, as shares of the run: each interruption's phases and the saves."""
        out: dict[str, float] = dict.fromkeys(
            ("detection", "waiting (hold, human, fix)", "restart", "lost work"), 0.0
        )
        for i in self.interruptions:
            out["detection"] += i.detected_s - i.fault_s
            out["waiting (hold, human, fix)"] += i.issued_s - i.detected_s
            out["restart"] += i.resumed_s - i.issued_s
            out["lost work"] += i.steps_lost * step_time_s
        down = sum(i.resumed_s - i.fault_s for i in self.interruptions)
        saves = (self.end_s - down) / self.checkpoint_interval_s + self.swaps
        out["checkpoint saves"] = saves * self.checkpoint_save_s
        return {k: v / self.end_s for k, v in out.items()}

    def interruption_ettr(self, step_time_s: float) -> float:
        """ETTR counting the interruptions only (what `sentinel report` measures)."""
        return (self.end_s - self.downtime_s(step_time_s)) / self.end_s

    def ettr(self, step_time_s: float) -> float:
        down = sum(i.resumed_s - i.fault_s for i in self.interruptions)
        lost = sum(i.steps_lost for i in self.interruptions) * step_time_s
        # Each checkpoint blocks training for its save (a swap's forced one too).
        saves = (self.end_s - down) / self.checkpoint_interval_s + self.swaps
        return (self.end_s - down - lost - saves * self.checkpoint_save_s) / self.end_s


@dataclass
class Triaged:
    """How often each category's faults were drawn and what the real triage said of them."""

    draws: Counter[Category] = field(default_factory=Counter)
    precursors: Counter[Category] = field(default_factory=Counter)
    precursors_right: Counter[Category] = field(default_factory=Counter)


@dataclass
class Outcome:
    assumptions: Assumptions
    seed: int
    faults: list[Fault]
    runs: dict[str, Run]
    triaged: Triaged
    mechanisms: dict[str, Mechanisms] = field(default_factory=dict)

    @property
    def baseline(self) -> Run:
        return self.runs[VARIANTS[0][0]]

    @property
    def sentinel(self) -> Run:
        return self.runs[VARIANTS[1][0]]

    @property
    def together(self) -> Run:
        return self.runs[VARIANTS[-1][0]]


def schedule(a: Assumptions, seed: int) -> list[Fault]:
    """Table 5's interruptions and the planned ones at random times over the run."""
    rng = random.Random(seed)
    span = a.days * 86400.0
    categories = [c for c, (n, _) in LLAMA3_TABLE5.items() for _ in range(n)]
    rng.shuffle(categories)
    times = sorted(rng.uniform(0, span) for _ in categories)
    faults: list[Fault] = []
    failed_hosts: list[int] = []
    for seq, (at, category) in enumerate(zip(times, categories, strict=True)):
        host = gpu = None
        recurrence = False
        if category in HOST_HARDWARE:
            recurrence = bool(failed_hosts) and rng.random() < a.repeat_share
            host = rng.choice(failed_hosts) if recurrence else rng.randrange(a.hosts)
            failed_hosts.append(host)
            gpu = rng.randrange(a.gpus_per_host) if category in GPU_CATEGORIES else None
        deterministic = category == Category.SOFTWARE_BUG and rng.random() < (
            a.deterministic_bug_share
        )
        faults.append(
            Fault(
                at,
                seq,
                category,
                host=host,
                gpu=gpu,
                signature=f"software error #{seq}" if category == Category.SOFTWARE_BUG else None,
                deterministic=deterministic,
                recurrence=recurrence,
                draw=rng.random(),
                precursor=rng.random(),
            )
        )
    base = len(faults)
    for k in range(LLAMA3_PLANNED_INTERRUPTIONS):
        faults.append(Fault(rng.uniform(0, span), base + k, Category.PLANNED))
    return sorted(faults)


# ------------------------------------------------------------------ the real triage


_CULPRIT: Final = 1377  # where a cached draw puts its fault; verdicts are read relative to it


@cache
def _weigh(category: Category, variant: str, hosts: int) -> draws.Weighed:
    chosen = next(v for v in draws.VARIANTS[category] if v.name == variant)
    return draws.weigh(chosen, hosts, _CULPRIT % hosts, 3)


@cache
def _weigh_precursor(category: Category, hosts: int) -> draws.Weighed | None:
    return draws.weigh_precursor(category, hosts, _CULPRIT % hosts, 3)


def variant_of(fault: Fault) -> draws.Variant:
    """The fault's way of showing, by its draw against the variants' shares."""
    variants = draws.VARIANTS[fault.category]
    # A repeat of the same fault (a crash loop) draws afresh: the evidence may differ.
    x = (fault.draw + 0.618034 * fault.loop) % 1.0
    for v in variants:
        if x < v.share:
            return v
        x -= v.share
    return variants[-1]


@dataclass(frozen=True)
class Seen:
    """A verdict as the policy gets it, with hosts named."""

    category: Category
    culprit: str | None
    gpu: str | None
    confidence: float
    xids: tuple[int, ...]
    names_culprit: bool


def _seen(w: draws.Weighed, fault: Fault, hosts: int) -> Seen:
    true = fault.host if fault.host is not None else _CULPRIT % hosts
    other = (true + 1) % hosts
    culprit = {"culprit": host_name(true), "other": host_name(other), None: None}[w.culprit]
    return Seen(w.category, culprit, w.gpu, w.confidence, w.xids, w.names_culprit())


def triage_fault(a: Assumptions, fault: Fault, tally: Triaged | None) -> Seen:
    variant = variant_of(fault)
    w = _weigh(fault.category, variant.name, a.hosts)
    if tally is not None:
        tally.draws[fault.category] += 1
    return _seen(w, fault, a.hosts)


@dataclass(frozen=True)
class Accuracy:
    """The real triage over every variant of a category, weighted by the variants' shares."""

    variants: int
    category_right: float  # the verdict's category is the fault's
    host_right: float | None  # a host fault's verdict names its host (None: not a host fault)


def accuracy(a: Assumptions) -> dict[Category, Accuracy]:
    """Every variant of every category weighed by the real triage (each once)."""
    out = {}
    for category, variants in draws.VARIANTS.items():
        weighed = [(v, _weigh(category, v.name, a.hosts)) for v in variants]
        out[category] = Accuracy(
            len(variants),
            sum(v.share for v, w in weighed if w.category == category),
            sum(v.share for v, w in weighed if w.names_culprit())
            if category in HOST_HARDWARE
            else None,
        )
    return out


def triage_precursor(a: Assumptions, fault: Fault, tally: Triaged | None) -> Seen | None:
    """The precursor's verdict, if this fault shows one."""
    if fault.host is None or fault.loop or fault.precursor >= a.precursor_share(fault.category):
        return None
    w = _weigh_precursor(fault.category, a.hosts)
    if w is None:
        return None
    if tally is not None:
        tally.precursors[fault.category] += 1
        tally.precursors_right[fault.category] += w.names_culprit()
    return _seen(w, fault, a.hosts)


# ------------------------------------------------------------------ playing a variant


@dataclass
class _State:
    resumed_s: float = 0.0  # when the job last started training
    committed_steps: int = 0  # steps saved in checkpoints
    back_at: dict[str, float] = field(default_factory=dict)  # excluded host -> returns at
    culprit_counts: Counter[str] = field(default_factory=Counter)
    past: list[PastDecision] = field(default_factory=list)
    drains: list[float] = field(default_factory=list)


def _progress(
    a: Assumptions, interval: float, state: _State, at_s: float, planned: bool
) -> tuple[int, int]:
    """Checkpoint step and steps lost when training stops at ``at_s``."""
    trained = max(0.0, at_s - state.resumed_s)
    saved = trained if planned else trained // interval * interval
    steps_saved = int(saved // a.step_time_s)
    steps_lost = 0 if planned else int((trained - saved) // a.step_time_s)
    state.committed_steps += steps_saved
    return state.committed_steps, steps_lost


def checkpoint_interval(a: Assumptions, m: Mechanisms) -> float:
    """The configured interval, or Daly's from the job's measured MTTF (cadence advice)."""
    if not m.cadence:
        return a.checkpoint_interval_s
    mttf = a.days * 86400.0 / sum(n for n, _ in LLAMA3_TABLE5.values())
    return advise(a.checkpoint_save_s, a.restart_s, mttf).interval_s


def _restart_s(a: Assumptions, m: Mechanisms, action: str, excluded: int) -> float:
    if action == Action.restart_in_place:
        # The policy's decision (remediation.in_place on in this variant): the launcher
        # restarts the ranks on the allocation it holds.
        return a.in_place_restart_s
    if excluded and m.hot_spares and m.in_place:
        # In-job restart onto a spare held in the allocation: new ranks there, no requeue.
        return a.init_s
    wait = a.node_wait_s if excluded and not m.hot_spares else 0.0
    return wait + a.restart_s


def play(a: Assumptions, faults: list[Fault], m: Mechanisms, tally: Triaged | None = None) -> Run:
    interval = checkpoint_interval(a, m)
    run = Run(checkpoint_interval_s=interval, checkpoint_save_s=a.checkpoint_save_s)
    state = _State()
    queue = list(faults)
    heapq.heapify(queue)
    next_seq = len(faults)
    while queue:
        fault = heapq.heappop(queue)
        at = fault.at_s
        if at < state.resumed_s:
            # The job is down: the fault shows when it starts again (at NCCL init).
            at = state.resumed_s + a.event_detection_s
        host = host_name(fault.host) if fault.host is not None else None
        if m.sentinel and host is not None and state.back_at.get(host, -1.0) > at:
            run.prevented.append(fault)
            continue
        swap = triage_precursor(a, fault, None) if m.sentinel and m.proactive_swap else None
        if swap is not None and swap.names_culprit and swap.category in HOST_HARDWARE:
            step = _swap(a, m, fault, at, swap, state, interval)
            run.swaps += 1
        else:
            planned = fault.category == Category.PLANNED
            checkpoint_step, steps_lost = _progress(a, interval, state, at, planned)
            if m.sentinel:
                step = _sentinel_step(a, m, fault, at, state, checkpoint_step, steps_lost, tally)
            else:
                step = _baseline_step(a, fault, at, checkpoint_step, steps_lost)
        run.interruptions.append(step)
        state.resumed_s = step.resumed_s
        for excluded in step.exclude_hosts:
            state.culprit_counts[excluded] += 1
            run.excluded.add(excluded)
            if m.sentinel and state.culprit_counts[excluded] >= 2:
                state.back_at[excluded] = float("inf")
                run.quarantined.add(excluded)
            else:
                state.back_at[excluded] = step.issued_s + a.repair_s
        again = _fails_again(a, m, fault, step, host)
        if again:
            heapq.heappush(
                queue,
                replace(
                    fault,
                    at_s=step.resumed_s + a.crash_after_restart_s,
                    seq=next_seq,
                    loop=fault.loop + 1,
                ),
            )
            next_seq += 1
    run.end_s = max(a.days * 86400.0, state.resumed_s)
    return run


def _fails_again(
    a: Assumptions, m: Mechanisms, fault: Fault, step: Interruption, host: str | None
) -> bool:
    """What a restart that did not remove the cause leads to: the same failure again."""
    if step.planned:
        return False
    if fault.deterministic:
        return step.action in _RESTARTING if m.sentinel else fault.loop < a.baseline_crash_loops - 1
    if not m.sentinel or step.status == "escalated":
        return False  # a human fixed it
    if host is not None and fault.category in HOST_HARDWARE:
        return host not in step.exclude_hosts
    return fault.category == Category.NETWORK_SWITCH_CABLE and step.action != Action.hold


def _baseline_step(
    a: Assumptions, fault: Fault, at: float, checkpoint_step: int, steps_lost: int
) -> Interruption:
    if fault.category == Category.PLANNED:
        return Interruption(
            fault, at, at, at, at + a.restart_s, 0, checkpoint_step,
            "none", "noop", "announced", "planned maintenance", planned=True,
        )  # fmt: skip
    detected = at + a.watchdog_s
    fix = (
        a.software_fix_s if fault.deterministic and fault.loop >= a.baseline_crash_loops - 1 else 0
    )
    issued = detected + a.manual_triage_s + fix
    host = host_name(fault.host) if fault.host is not None else None
    excluded = (host,) if host and fault.category in HOST_HARDWARE else ()
    wait = a.node_wait_s if excluded else 0.0
    return Interruption(
        fault, at, detected, issued, issued + wait + a.restart_s, steps_lost, checkpoint_step,
        "manual", "done", "on-call", "NCCL watchdog, then manual triage", excluded,
        fault.category,
    )  # fmt: skip


def _detection_s(a: Assumptions, seen: Seen) -> float:
    if seen.category == Category.SILENT_DATA_CORRUPTION:
        return a.sdc_detection_s
    if seen.category in (Category.NCCL_WATCHDOG_TIMEOUT, Category.UNKNOWN):
        return a.hang_detection_s
    return a.event_detection_s


def _decide(
    a: Assumptions, m: Mechanisms, fault: Fault, seen: Seen, state: _State, now: datetime,
    checkpoint_step: int, steps_lost: int,
) -> Proposal:  # fmt: skip
    window = now - timedelta(seconds=a.remediation.restart_window_s)
    hour_ago = (now - START).total_seconds() - 3600
    return DEFAULT_POLICY.decide(
        RemediationContext(
            category=seen.category,
            culprit_host=seen.culprit,
            culprit_gpu=seen.gpu if seen.culprit else None,
            confidence=seen.confidence,
            xids=seen.xids,
            signature=fault.signature,
            job_id=JOB_ID,
            job_hosts=a.hosts,
            checkpoint_step=checkpoint_step,
            current_step=checkpoint_step + steps_lost,
            past=tuple(p for p in state.past if p.at >= window),
            drains_last_hour=sum(1 for d in state.drains if d >= hour_ago),
            # Hot spares: the pool says how many; else the scheduler does not say.
            spare_hosts=8 if m.hot_spares else None,
            # The in-place variants turn the policy's in-place restarts on; which faults get
            # one (and when a repeat is requeued instead) is the policy's to say.
            settings=a.remediation.model_copy(update={"in_place": m.in_place}),
        )
    )


def _sentinel_step(
    a: Assumptions,
    m: Mechanisms,
    fault: Fault,
    at: float,
    state: _State,
    checkpoint_step: int,
    steps_lost: int,
    tally: Triaged | None,
) -> Interruption:
    if fault.category == Category.PLANNED:
        # Announced: the maintenance signal says so; nothing to triage.
        seen = Seen(Category.PLANNED, None, None, 1.0, (), False)
        detected = at
    else:
        seen = triage_fault(a, fault, tally)
        detected = at + _detection_s(a, seen)
    now = START + timedelta(seconds=detected)
    proposal = _decide(a, m, fault, seen, state, now, checkpoint_step, steps_lost)
    excluded = proposal.exclude_hosts
    if proposal.action == Action.none:
        issued, status = detected, "noop"
    elif proposal.action == Action.escalate:
        fix = a.software_fix_s if fault.deterministic else 0.0
        issued, status = detected + a.human_response_s + fix, "escalated"
        # The human drains the host the verdict named, as the policy would have.
        excluded = (seen.culprit,) if seen.culprit and seen.category in HOST_HARDWARE else ()
    elif proposal.action == Action.hold:
        issued, status = detected + a.remediation.fabric_quiet_s + a.execute_s, "done"
    else:
        issued, status = detected + a.execute_s, "done"
    if excluded:
        state.drains.append(detected)
    state.past.append(
        PastDecision(seen.category.value, proposal.action.value, status, now, fault.signature)
    )
    planned = fault.category == Category.PLANNED
    resumed = issued + (
        a.restart_s if planned else _restart_s(a, m, proposal.action, len(excluded))
    )
    return Interruption(
        fault, at, detected, issued, resumed, steps_lost, checkpoint_step,
        proposal.action.value, status, proposal.rule, proposal.reason, tuple(excluded),
        seen.category, planned,
    )  # fmt: skip


def _swap(
    a: Assumptions, m: Mechanisms, fault: Fault, at: float, seen: Seen, state: _State,
    interval: float,
) -> Interruption:  # fmt: skip
    """The precursor's verdict, decided by the real policy, carried out as a planned swap: the
    job checkpoints now, the host is drained and the job restarts without it. (The swap rule
    itself is item 1's; until then the policy's exclusion stands for it.)"""
    # Seen before the failure: swapped at the checkpoint taken for it, ahead of the fault.
    swap_at = max(state.resumed_s, at - interval)
    checkpoint_step, _ = _progress(a, interval, state, swap_at, True)
    now = START + timedelta(seconds=swap_at)
    proposal = _decide(a, m, fault, seen, state, now, checkpoint_step, 0)
    excluded = proposal.exclude_hosts if proposal.action == Action.exclude_and_restart else ()
    if excluded:
        state.drains.append(swap_at)
    issued = swap_at + a.checkpoint_save_s + a.execute_s
    return Interruption(
        fault, swap_at, swap_at, issued, issued + _restart_s(a, m, "swap", len(excluded)), 0,
        checkpoint_step, "swap", "done", "proactive swap via " + proposal.rule,
        proposal.reason, tuple(excluded), seen.category, True,
    )  # fmt: skip


def run(a: Assumptions, seed: int) -> Outcome:
    faults = schedule(a, seed)
    tally = Triaged()
    for fault in faults:
        triage_precursor(a, fault, tally)
    # The reactive run triages every fault (and every repeat): its draws are the ones counted.
    runs = {label: play(a, faults, m, tally if label == VARIANTS[1][0] else None)
            for label, m in VARIANTS}  # fmt: skip
    return Outcome(a, seed, faults, runs, tally, dict(VARIANTS))


def _at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def _rows(outcome: Outcome) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for i in outcome.sentinel.interruptions:
        incident_id = uuid.UUID(int=random.Random(i.fault.seq).getrandbits(128), version=4)
        culprit = i.exclude_hosts[0] if i.exclude_hosts else None
        yield (
            {
                "id": incident_id,
                "job_id": JOB_ID,
                "cluster": "sim",
                "state": "resolved",
                "category": (i.category or i.fault.category).value,
                "confidence": 0.9,
                "culprit_host": culprit,
                "culprit_gpu": str(i.fault.gpu) if culprit and i.fault.gpu is not None else None,
                "culprit_rank": None,
                "rule": "simulated",
                "reason": f"simulated {i.fault.category.value}, drawn as real-format events"
                + (" (recurrence)" if i.fault.recurrence else "")
                + (f" (crash loop {i.fault.loop})" if i.fault.loop else ""),
                "verdict": {"simulated": True, "signature": i.fault.signature},
                "opened_at": _at(i.fault_s),
                "detected_at": _at(i.detected_s),
                "updated_at": _at(i.resumed_s),
                "resolved_at": _at(i.resumed_s),
            },
            {
                "id": uuid.UUID(int=random.Random(-i.fault.seq - 1).getrandbits(128), version=4),
                "incident_id": incident_id,
                "job_id": JOB_ID,
                "action": i.action,
                "status": i.status,
                "rule": i.rule,
                "reason": i.reason,
                "exclude_hosts": list(i.exclude_hosts),
                "checkpoint_step": i.checkpoint_step,
                "steps_lost": i.steps_lost,
                "outcome": {"simulated": True},
                "error": None,
                "created_at": _at(i.detected_s),
                "updated_at": _at(i.issued_s),
            },
        )


def _progress_rows(outcome: Outcome, final_step: int) -> list[dict[str, Any]]:
    """The job's progress samples as the watchdog would have written them: at the start, when
    each fault stopped it, when the restarted ranks came back (rolled back to the checkpoint,
    ``init_s`` before training again: NCCL init and the checkpoint load), and at the end."""
    a = outcome.assumptions
    samples: dict[datetime, int] = {START: 0}
    for i in outcome.sentinel.interruptions:
        samples.setdefault(_at(i.fault_s), i.checkpoint_step + i.steps_lost)
        back = max(i.issued_s, i.resumed_s - a.init_s)
        samples.setdefault(_at(back), i.checkpoint_step)
    samples.setdefault(_at(outcome.sentinel.end_s), final_step)
    ranks = a.hosts * a.gpus_per_host
    return [
        {"job_id": JOB_ID, "at": at, "step": step, "step_time_s": a.step_time_s, "ranks": ranks}
        for at, step in sorted(samples.items())
    ]


def write(outcome: Outcome, path: Path) -> str:
    """Write the Sentinel run into a fresh, migrated SQLite file; returns its URL."""
    a = outcome.assumptions
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    end = _at(outcome.sentinel.end_s)
    incidents, decisions = (
        zip(*_rows(outcome), strict=True) if outcome.sentinel.interruptions else ((), ())
    )
    last = outcome.sentinel.interruptions[-1] if outcome.sentinel.interruptions else None
    final_step = (last.checkpoint_step if last else 0) + int(
        (outcome.sentinel.end_s - (last.resumed_s if last else 0)) // a.step_time_s
    )
    drained = outcome.sentinel.excluded
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(Job),
                [{"id": JOB_ID, "first_seen": START, "last_seen": end, "world_size":
                  a.hosts * a.gpus_per_host, "scheduler": "slurm", "scheduler_job_id": "405",
                  "state": "running"}],
            )  # fmt: skip
            conn.execute(
                insert(Host),
                [
                    {
                        "id": host_name(h),
                        "agent_id": f"{host_name(h)}-agent",
                        "first_seen": START,
                        "last_seen": end,
                        "last_seq": 0,
                        "last_critical_at": None,
                        "last_critical": None,
                        "drain_state": "drained" if host_name(h) in drained else "none",
                        "drain_reason": "simulated" if host_name(h) in drained else None,
                    }
                    for h in range(a.hosts)
                ],
            )
            conn.execute(
                insert(JobRank),
                [
                    {
                        "job_id": JOB_ID,
                        "rank": r,
                        "host_id": host_name(r // a.gpus_per_host),
                        "local_rank": r % a.gpus_per_host,
                        "gpu_index": r % a.gpus_per_host,
                        "step": final_step,
                        "step_time_s": a.step_time_s,
                        "checkpoint_step": final_step
                        - final_step % int(a.checkpoint_interval_s // a.step_time_s),
                        "checkpoint_path": None,
                        "last_beat_at": end,
                        "step_changed_at": end,
                    }
                    for r in range(a.hosts * a.gpus_per_host)
                ],
            )
            if incidents:
                conn.execute(insert(Incident), list(incidents))
                conn.execute(insert(Decision), list(decisions))
            conn.execute(insert(JobProgress), _progress_rows(outcome, final_step))
    finally:
        engine.dispose()
    return url


# Each assumption "all together" rests on most, at its pessimistic end, then at its optimistic.
PESSIMISTIC: Final[tuple[tuple[str, dict[str, Any]], ...]] = (
    ("checkpoint save blocks 30 s (a synchronous save)", {"checkpoint_save_s": 30.0}),
    ("init 300 s (NCCL init + checkpoint load)", {"init_s": 300.0}),
    ("requeue 300 s", {"requeue_s": 300.0}),
    ("in-place restart 180 s", {"in_place_restart_s": 180.0}),
    ("no precursors (proactive swap finds nothing)", {"precursor_scale": 0.0}),
    (
        "50% of software bugs repeat; 2 h to fix",
        {"deterministic_bug_share": 0.5, "software_fix_s": 7200.0},
    ),
)
OPTIMISTIC: Final[tuple[tuple[str, dict[str, Any]], ...]] = (
    ("checkpoint save blocks 0.1 s", {"checkpoint_save_s": 0.1}),
    ("init 90 s", {"init_s": 90.0}),
    ("10% of software bugs repeat; 30 min to fix", {"deterministic_bug_share": 0.1,
                                                     "software_fix_s": 1800.0}),
)  # fmt: skip


@dataclass(frozen=True)
class Sensitivity:
    change: str
    ettr: float
    pessimistic: bool = True


def sensitivity(outcome: Outcome) -> list[Sensitivity]:
    """ "All together" again with each assumption at its pessimistic end (the same faults)."""
    a, together = outcome.assumptions, VARIANTS[-1][1]
    rows = []
    for end, table in ((True, PESSIMISTIC), (False, OPTIMISTIC)):
        for label, change in table:
            b = replace(a, **change)
            faults = schedule(b, outcome.seed)  # the same draws where the change allows
            rows.append(Sensitivity(label, play(b, faults, together).ettr(b.step_time_s), end))
    for end, table in ((True, PESSIMISTIC), (False, OPTIMISTIC)):
        b = replace(a, **{k: v for _, c in table for k, v in c.items()})
        rows.append(
            Sensitivity(
                f"every {'pessimistic' if end else 'optimistic'} end at once",
                play(b, schedule(b, outcome.seed), together).ettr(a.step_time_s),
                end,
            )
        )
    return rows


def _mechanisms(m: Mechanisms, a: Assumptions) -> str:
    if not m.sentinel:
        return "NCCL watchdog, on-call triage, requeue; replacement host waited for"
    parts = ["real triage + DEFAULT_POLICY"]
    if m.proactive_swap:
        parts.append("precursors swapped at a checkpoint")
    if m.hot_spares:
        parts.append("a validated spare at once")
    if m.cadence:
        mttf = a.days * 86400.0 / sum(n for n, _ in LLAMA3_TABLE5.values())
        advice = advise(a.checkpoint_save_s, a.restart_s, mttf, a.checkpoint_interval_s)
        parts.append(
            f"checkpoint every {advice.interval_s:.0f} s (Daly; expected ETTR from checkpoints "
            f"and restarts alone {advice.ettr:.2%}, vs {advice.current_ettr:.2%} at "
            f"{a.checkpoint_interval_s:g} s)"
        )
    if m.in_place:
        parts.append(f"restart in place ({a.in_place_restart_s:g} s)")
    return "; ".join(parts)


def describe(outcome: Outcome, sensitivity_rows: list[Sensitivity] | None = None) -> list[str]:
    a = outcome.assumptions
    lines = [f"seed {outcome.seed}; assumptions (the same for every variant):"]
    lines += [f"  - {line}" for line in a.lines()]
    lines += ["", f"{'variant':<30} {'interruptions':>13} {'swaps':>5} {'ETTR':>8}  mechanisms"]
    for label, run_ in outcome.runs.items():
        unexpected = sum(1 for i in run_.interruptions if not i.planned)
        lines.append(
            f"{label:<30} {unexpected:>13} {run_.swaps:>5} {run_.ettr(a.step_time_s):>8.2%}  "
            f"{_mechanisms(outcome.mechanisms[label], a)}"
        )
    lines.append(
        "(interruptions: unexpected, repeats included; swaps: planned, checkpointed first; "
        "ETTR also counts each checkpoint's blocking save)"
    )
    for label in (VARIANTS[1][0], VARIANTS[-1][0]):
        lost = outcome.runs[label].losses(a.step_time_s)
        lines.append(f"{label} loses: " + ", ".join(f"{k} {v:.2%}" for k, v in lost.items() if v))
    t = outcome.triaged
    right = accuracy(a)
    lines += [
        "",
        f"the real triage weighed {sum(t.draws.values())} faults drawn in the reactive run "
        f"and {sum(t.precursors.values())} precursors, as {_weigh.cache_info().currsize} "
        "distinct draws of real-format events (one per category and variant at this fleet "
        "size, each classified once and reused); measured accuracy, weighted by the "
        "variants' shares:",
        f"  {'category':<24} {'draws':>5} {'variants':>8} {'category right':>15} "
        f"{'host right':>11}",
    ]
    for category, acc in sorted(right.items(), key=lambda kv: -t.draws[kv[0]]):
        lines.append(
            f"  {category.value:<24} {t.draws[category]:>5} {acc.variants:>8} "
            f"{acc.category_right:>15.0%} "
            + (f"{acc.host_right:>11.0%}" if acc.host_right is not None else f"{'-':>11}")
        )
    if t.precursors:
        lines.append(
            "  precursors named the host: "
            + ", ".join(
                f"{c.value} {t.precursors_right[c]}/{k}" for c, k in sorted(t.precursors.items())
            )
        )
    sent = outcome.sentinel
    actions = Counter(i.action for i in sent.interruptions)
    lines += [
        "",
        f"Sentinel reactive: faults prevented (host already out) {len(sent.prevented)}; hosts "
        f"excluded {len(sent.excluded)}, kept out as repeat offenders {len(sent.quarantined)}",
        "  decisions: " + ", ".join(f"{k} {v}" for k, v in sorted(actions.items())),
    ]
    if sensitivity_rows:
        base = outcome.together.ettr(a.step_time_s)
        worst = min(
            (r for r in sensitivity_rows if r.pessimistic and "at once" not in r.change),
            key=lambda r: r.ettr,
        )
        lines += ["", f"sensitivity of 'all together' ({base:.2%}), one assumption at a time:"]
        lines += [f"  {'pessimistic' if r.pessimistic else 'optimistic':<12} {r.change:<50} "
                  f"{r.ettr:>7.2%}  ({(r.ettr - base) * 100:+.2f} pt)"
                  for r in sensitivity_rows]  # fmt: skip
        lines.append(f"  most sensitive to: {worst.change} ({worst.ettr:.2%})")
    return lines
