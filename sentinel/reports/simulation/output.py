"""The simulation's output: the reactive run written to SQLite for `sentinel report`, the
printed table of variants with their assumptions, and the sensitivity of "all together"."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import create_engine, insert

from sentinel.db import migrate
from sentinel.db.engine import sync_url
from sentinel.db.models import Decision, Host, Incident, Job, JobProgress, JobRank
from sentinel.reports.cadence import advise
from sentinel.reports.simulation.assumptions import (
    JOB_ID,
    START,
    VARIANTS,
    Assumptions,
    Mechanisms,
)
from sentinel.reports.simulation.faults import schedule
from sentinel.reports.simulation.play import Outcome, play
from sentinel.reports.simulation.triage import accuracy, distinct_draws, host_name
from sentinel.triage.taxonomy import LLAMA3_TABLE5


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
    ("checkpoint save blocks 1 s (planning, staging)", {"checkpoint_save_s": 1.0}),
    ("init 300 s (NCCL init + checkpoint load)", {"init_s": 300.0}),
    ("requeue 300 s", {"requeue_s": 300.0}),
    ("in-place restart 180 s", {"in_place_restart_s": 180.0}),
    ("no standby host in the job's allocation", {"standby_hosts": 0}),
    ("no precursors (proactive swap finds nothing)", {"precursor_scale": 0.0}),
    (
        "50% of software bugs repeat; 2 h to fix",
        {"deterministic_bug_share": 0.5, "software_fix_s": 7200.0},
    ),
    ("an escalation waits 1 h for a human", {"human_response_s": 3600.0}),
    ("half the recommended spare pool", {"spare_pool_scale": 0.5}),
    ("20% of repeating bugs came with a new version", {"new_version_bug_share": 0.2}),
    ("20% of the other repeating bugs tied to the data", {"data_position_bug_share": 0.2}),
    ("no planned work job-level (all requeued)", {"planned_job_level_share": 0.0}),
)
OPTIMISTIC: Final[tuple[tuple[str, dict[str, Any]], ...]] = (
    ("checkpoint save blocks 0.02 s (0.4 GB a GPU)", {"checkpoint_save_s": 0.02}),
    ("init 90 s", {"init_s": 90.0}),
    ("8 standby hosts in the job's allocation", {"standby_hosts": 8}),
    ("10% of software bugs repeat; 30 min to fix", {"deterministic_bug_share": 0.1,
                                                     "software_fix_s": 1800.0}),
    ("an escalation waits 10 min for a human", {"human_response_s": 600.0}),
    ("double the recommended spare pool", {"spare_pool_scale": 2.0}),
    ("80% of repeating bugs came with a new version", {"new_version_bug_share": 0.8}),
    ("80% of the other repeating bugs tied to the data", {"data_position_bug_share": 0.8}),
    ("80% of planned work job-level (restarted in place)", {"planned_job_level_share": 0.8}),
)  # fmt: skip
# The spare pool sized by the same rule at another quantile: a choice, neither end.
POOL_SIZING: Final[tuple[tuple[str, dict[str, Any]], ...]] = (
    ("the spare pool sized at p90", {"spare_quantile": 0.9}),
    ("the spare pool sized at p99.9", {"spare_quantile": 0.999}),
)


@dataclass(frozen=True)
class Sensitivity:
    change: str
    ettr: float
    pessimistic: bool | None = True  # None: a sizing choice (POOL_SIZING), neither end


def sensitivity(outcome: Outcome) -> list[Sensitivity]:
    """ "All together" again with each assumption at its pessimistic end (the same faults)."""
    a, together = outcome.assumptions, VARIANTS[-1][1]
    rows = []
    tables: tuple[tuple[bool | None, tuple[tuple[str, dict[str, Any]], ...]], ...] = (
        (True, PESSIMISTIC),
        (False, OPTIMISTIC),
        (None, POOL_SIZING),
    )
    for end, table in tables:
        for label, change in table:
            b = replace(a, **change)
            faults = schedule(b, outcome.seed)  # the same draws where the change allows
            if any(k.startswith("spare_") for k in change):
                label = f"{label} ({b.pool_size} spares)"
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
        parts.append(f"a validated spare at once (a pool of {a.pool_size})")
    if m.cadence:
        mttf = a.days * 86400.0 / sum(n for n, _ in LLAMA3_TABLE5.values())
        advice = advise(
            a.checkpoint_save_s, a.restart_s, mttf, a.checkpoint_interval_s, a.checkpoint_write_s
        )
        parts.append(
            f"checkpoint every {advice.interval_s:.0f} s (Daly; expected ETTR from checkpoints "
            f"and restarts alone {advice.ettr:.2%}, vs {advice.current_ettr:.2%} at "
            f"{a.checkpoint_interval_s:g} s)"
        )
    if m.in_place:
        parts.append(
            f"restart in place ({a.in_place_restart_s:g} s; job-level planned work by the "
            f"operator), an exclusion onto a standby of the allocation ({a.standby_hosts})"
        )
    return "; ".join(parts)


_END: Final = {True: "pessimistic", False: "optimistic", None: "pool sizing"}


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
        f"and {sum(t.precursors.values())} precursors, as {distinct_draws()} "
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
        lines += [f"  {_END[r.pessimistic]:<12} {r.change:<50} "
                  f"{r.ettr:>7.2%}  ({(r.ettr - base) * 100:+.2f} pt)"
                  for r in sensitivity_rows]  # fmt: skip
        lines.append(f"  most sensitive to: {worst.change} ({worst.ettr:.2%})")
    return lines
