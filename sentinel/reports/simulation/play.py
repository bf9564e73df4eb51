"""Playing a variant over the fault schedule: each fault detected, triaged, decided by the real
policy and carried out, and what a decision that did not remove the cause costs."""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sentinel.remediation.planned import OPERATOR_RESTART_RULE, operator_reason
from sentinel.remediation.policy import (
    DEFAULT_POLICY,
    Action,
    PastDecision,
    Proposal,
    RemediationContext,
)
from sentinel.remediation.swap import (
    DEFAULT_SWAP_POLICY,
    NeverMoreThanThePoolHolds,
    SwapAction,
    SwapContext,
    SwapProposal,
)
from sentinel.reports.cadence import advise
from sentinel.reports.simulation.assumptions import (
    JOB_ID,
    START,
    VARIANTS,
    Assumptions,
    Mechanisms,
)
from sentinel.reports.simulation.faults import Fault, schedule
from sentinel.reports.simulation.triage import (
    Seen,
    Triaged,
    host_name,
    triage_fault,
    triage_precursor,
)
from sentinel.triage.taxonomy import CATEGORIES, LLAMA3_TABLE5, Category

_RESTARTING = (Action.restart, Action.restart_in_place, Action.exclude_and_restart, Action.hold)


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


# ------------------------------------------------------------------ playing a variant


@dataclass
class _State:
    resumed_s: float = 0.0  # when the job last started training
    committed_steps: int = 0  # steps saved in checkpoints
    back_at: dict[str, float] = field(default_factory=dict)  # excluded host -> returns at
    spares_back: list[float] = field(default_factory=list)  # each spare taken: back in the pool at
    culprit_counts: Counter[str] = field(default_factory=Counter)
    past: list[PastDecision] = field(default_factory=list)
    drains: list[float] = field(default_factory=list)
    swaps: list[float] = field(default_factory=list)  # when each swap was decided
    # The hosts excluded onto the allocation's standbys since the job was last requeued: each
    # is a standby again once repaired (still allocated to the job, no rank on it).
    standbys_out: list[str] = field(default_factory=list)


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
    return advise(a.checkpoint_save_s, a.restart_s, mttf, write_s=a.checkpoint_write_s).interval_s


def _spares_free(a: Assumptions, state: _State, at: float) -> int:
    return a.pool_size - sum(1 for back in state.spares_back if back > at)


def _take_spares(a: Assumptions, m: Mechanisms, state: _State, at: float, hosts: int) -> bool:
    """With hot spares, a spare from the pool takes the place of each host that leaves, and is
    back in the pool once that host is repaired (a repaired host refills it); False when the
    pool has too few: the job then waits for nodes from the queue."""
    if not m.hot_spares or not hosts or _spares_free(a, state, at) < hosts:
        return False
    state.spares_back.extend([at + a.repair_s] * hosts)
    return True


def _in_place(m: Mechanisms, action: str) -> bool:
    """The launcher restarts the ranks on the hosts the job holds: no requeue."""
    in_place = m.in_place and action in (Action.hold, Action.roll_back, Action.skip_data)
    return action == Action.restart_in_place or in_place


def _standbys_free(a: Assumptions, state: _State, at: float) -> int:
    """The allocation's standby hosts free at ``at``: each one taken is back when the host it
    replaced is repaired (excluded hosts' returns, state.back_at; a repeat offender never)."""
    out = sum(1 for host in state.standbys_out if state.back_at.get(host, math.inf) > at)
    return a.standby_hosts - out


def _in_the_job(
    a: Assumptions, m: Mechanisms, state: _State, action: str, hosts: tuple[str, ...], at: float
) -> bool:
    """An exclusion carried out in the job (remediation.in_place on): a standby host of the
    allocation takes each excluded host's place, while the allocation has enough free. The
    excluded host stays in the allocation, drained; once repaired (and resumed) it has no rank
    and is healthy: the product's standby test (remediation/standby.py) counts it a standby
    again. A requeue gives the job a full allocation (_requeue_hosts)."""
    if not (m.in_place and action == Action.exclude_and_restart and hosts):
        return False
    if _standbys_free(a, state, at) < len(hosts):
        return False
    state.standbys_out.extend(hosts)
    return True


def _requeue_hosts(m: Mechanisms, state: _State, action: str, excluded: int, at: float) -> int:
    """Hosts a requeue must find (from the spare pool, else the queue): the excluded ones and
    the standbys still out (the new allocation has its full size again)."""
    if _in_place(m, action):
        return excluded
    out = sum(1 for host in state.standbys_out if state.back_at.get(host, math.inf) > at)
    state.standbys_out = []
    return excluded + out


def _restart_s(
    a: Assumptions, m: Mechanisms, action: str, excluded: int, spare: bool, in_job: bool = False
) -> float:
    if _in_place(m, action):
        # The policy's decision (remediation.in_place on in this variant): the launcher
        # restarts the ranks on the allocation it holds (a rollback: on the version that
        # trained; a data skip: skipping the batches it names; a requeue without in-place
        # restarts); a held restart is released in place
        # once the fabric is quiet (no host to change).
        return a.in_place_restart_s
    if in_job:
        # Onto a standby host of the allocation (the product's exclusion with in-place
        # restarts on): no requeue, but every host's launcher restarts its command and the
        # standby's loads the checkpoint: init. A spare from the pool is a requeue.
        return a.init_s
    wait = a.node_wait_s if excluded and not spare else 0.0
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
        step = None
        if swap is not None and swap.names_culprit and CATEGORIES[swap.category].host_must_leave:
            step = _swap(a, m, fault, at, swap, state, interval)
            run.swaps += step is not None
        if step is None:
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
            at_s = step.resumed_s + a.crash_after_restart_s
            failing = fault.step
            if fault.data_position:
                # Tied to the data at one step: it fails when the job reaches that step again.
                failing = step.checkpoint_step + step.steps_lost if failing is None else failing
                at_s = step.resumed_s + max(failing - state.committed_steps, 1) * a.step_time_s
            heapq.heappush(
                queue,
                replace(fault, at_s=at_s, seq=next_seq, loop=fault.loop + 1, step=failing),
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
        if step.action == Action.roll_back:
            return not fault.new_version  # the version that trained is without the bug
        if step.action == Action.skip_data:
            return not fault.data_position  # the batches it failed on are skipped
        return step.action in _RESTARTING if m.sentinel else fault.loop < a.baseline_crash_loops - 1
    if not m.sentinel or step.status == "escalated":
        return False  # a human fixed it
    if step.action == Action.restart_in_place and CATEGORIES[fault.category].host_must_leave:
        return False  # a link that flapped and came back up: transient, the restart clears it
    if host is not None and CATEGORIES[fault.category].host_must_leave:
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
    excluded = (host,) if host and CATEGORIES[fault.category].host_must_leave else ()
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
            link_flapped=seen.link_flapped,
            # The job's heartbeats say its version: a bug that came with the one deployed at
            # the last restart runs on a version other than the one that wrote the checkpoint.
            code_version="new" if fault.new_version else "trained",
            trained_version="trained",
            job_id=JOB_ID,
            job_hosts=a.hosts,
            checkpoint_step=checkpoint_step,
            current_step=_failing_step(fault, checkpoint_step, steps_lost),
            past=tuple(p for p in state.past if p.at >= window),
            drains_last_hour=sum(1 for d in state.drains if d >= hour_ago),
            # Hot spares: the pool's free spares now; else the scheduler does not say.
            # The product counts the allocation's free standby hosts with them.
            spare_hosts=_spares_free(a, state, (now - START).total_seconds())
            + (_standbys_free(a, state, (now - START).total_seconds()) if m.in_place else 0)
            if m.hot_spares
            else None,
            # The in-place variants turn the policy's in-place restarts on; which faults get
            # one (and when a repeat is requeued instead) is the policy's to say.
            settings=a.remediation.model_copy(update={"in_place": m.in_place}),
        )
    )


def _failing_step(fault: Fault, checkpoint_step: int, steps_lost: int) -> int:
    """The step the ranks last reported: where training stopped, or the step a bug tied to
    the data fails at again."""
    return fault.step if fault.step is not None else checkpoint_step + steps_lost


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
    if fault.job_level and m.in_place:
        # A configuration or dataset update: the operator's restart in place, not the
        # policy's (sentinel.remediation.planned), carried out by the launcher.
        proposal = Proposal(
            Action.restart_in_place,
            OPERATOR_RESTART_RULE,
            operator_reason("operator", "configuration or dataset update"),
        )
    excluded = proposal.exclude_hosts
    if proposal.action == Action.none:
        issued, status = detected, "noop"
    elif proposal.action == Action.escalate:
        fix = a.software_fix_s if fault.deterministic else 0.0
        issued, status = detected + a.human_response_s + fix, "escalated"
        # The human drains the host the verdict named, as the policy would have.
        excluded = (
            (seen.culprit,) if seen.culprit and CATEGORIES[seen.category].host_must_leave else ()
        )
    elif proposal.action == Action.hold:
        issued, status = detected + a.remediation.fabric_quiet_s + a.execute_s, "done"
    else:
        issued, status = detected + a.execute_s, "done"
    if excluded:
        state.drains.append(detected)
    state.past.append(
        PastDecision(
            seen.category.value,
            proposal.action.value,
            status,
            now,
            fault.signature,
            _failing_step(fault, checkpoint_step, steps_lost),
        )
    )
    planned = fault.category == Category.PLANNED
    action = proposal.action
    in_job = not planned and _in_the_job(a, m, state, action, tuple(excluded), issued)
    hosts = 0 if in_job or planned else _requeue_hosts(m, state, action, len(excluded), issued)
    spare = _take_spares(a, m, state, issued, hosts)
    # Planned work is a requeue unless the operator restarted it in place.
    planned_s = a.in_place_restart_s if action == Action.restart_in_place else a.restart_s
    resumed = issued + (planned_s if planned else _restart_s(a, m, action, hosts, spare, in_job))
    return Interruption(
        fault, at, detected, issued, resumed, steps_lost, checkpoint_step,
        proposal.action.value, status, proposal.rule, proposal.reason, tuple(excluded),
        seen.category, planned,
    )  # fmt: skip


def _swap(
    a: Assumptions, m: Mechanisms, fault: Fault, at: float, seen: Seen, state: _State,
    interval: float,
) -> Interruption | None:  # fmt: skip
    """The precursor's verdict, decided by the real policy, carried out as a planned swap: the
    job checkpoints now, the host is drained and the job restarts without it (the policy's
    exclusion names the host). With hot spares the real swap policy decides it first: refused
    while the pool is empty (NeverMoreThanThePoolHolds), it is decided again at the job's first
    checkpoint after a spare is back; a cap's refusal stands. None when no swap is made before
    the fault (the host then fails the job)."""
    # Seen before the failure: swapped at the checkpoint taken for it, ahead of the fault.
    swap_at = max(state.resumed_s, at - interval)
    if m.hot_spares:
        decision = _swap_decision(a, m, state, seen, swap_at)
        if decision.rule == NeverMoreThanThePoolHolds.__name__:
            back = min(t for t in state.spares_back if t > swap_at)
            swap_at = state.resumed_s + math.ceil((back - state.resumed_s) / interval) * interval
            if swap_at >= at:
                return None
            decision = _swap_decision(a, m, state, seen, swap_at)
        if decision.action != SwapAction.swap:
            return None
    state.swaps.append(swap_at)
    checkpoint_step, _ = _progress(a, interval, state, swap_at, True)
    now = START + timedelta(seconds=swap_at)
    proposal = _decide(a, m, fault, seen, state, now, checkpoint_step, 0)
    excluded = proposal.exclude_hosts if proposal.action == Action.exclude_and_restart else ()
    if excluded:
        state.drains.append(swap_at)
    issued = swap_at + a.checkpoint_save_s + a.execute_s
    # With in-place restarts on, the product carries a swap out in the job onto a free standby
    # host of the allocation as it does an exclusion (remediation/swap.py): init, no requeue,
    # the pool's spare kept; otherwise a requeue, onto a spare of the pool where one is free.
    in_job = _in_the_job(a, m, state, proposal.action, tuple(excluded), swap_at)
    hosts = 0 if in_job else _requeue_hosts(m, state, "swap", len(excluded), swap_at)
    spare = _take_spares(a, m, state, swap_at, hosts)
    resumed = issued + _restart_s(a, m, "swap", hosts, spare, in_job)
    return Interruption(
        fault, swap_at, swap_at, issued, resumed, 0,
        checkpoint_step, "swap", "done", "proactive swap via " + proposal.rule,
        proposal.reason, tuple(excluded), seen.category, True,
    )  # fmt: skip


def _swap_decision(
    a: Assumptions, m: Mechanisms, state: _State, seen: Seen, at: float
) -> SwapProposal:
    """DEFAULT_SWAP_POLICY on what the run knows at ``at``: its caps, the pool, and (in the
    in-place variants, as the product counts them) the allocation's free standby hosts."""
    settings = a.remediation.swap
    return DEFAULT_SWAP_POLICY.decide(
        SwapContext(
            host=seen.culprit or "",
            gpu=seen.gpu,
            finding=f"{seen.category.value}: a leading indicator",
            job_id=JOB_ID,
            job_hosts=a.hosts,
            current_step=None,
            durable_step=None,
            swaps_last_hour=sum(1 for t in state.swaps if t > at - 3600),
            swaps_for_job=sum(1 for t in state.swaps if t > at - settings.job_window_s),
            spares_ready=_spares_free(a, state, at),
            swaps_in_flight=0,
            settings=settings,
            standbys=_standbys_free(a, state, at) if m.in_place else 0,
        )
    )


def run(a: Assumptions, seed: int) -> Outcome:
    faults = schedule(a, seed)
    tally = Triaged()
    for fault in faults:
        triage_precursor(a, fault, tally)
    # The reactive run triages every fault (and every repeat): its draws are the ones counted.
    runs = {label: play(a, faults, m, tally if label == VARIANTS[1][0] else None)
            for label, m in VARIANTS}  # fmt: skip
    return Outcome(a, seed, faults, runs, tally, dict(VARIANTS))
