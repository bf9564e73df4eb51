"""The fault schedule: Table 5's interruptions and the planned ones at random times, drawn once
and played by every variant."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from sentinel.reports.simulation.assumptions import Assumptions
from sentinel.triage.taxonomy import (
    CATEGORIES,
    LLAMA3_PLANNED_INTERRUPTIONS,
    LLAMA3_TABLE5,
    Category,
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
    # A repeating software bug that came with the code version deployed at the job's last
    # restart, before any checkpoint on it: the version that last trained is without it.
    new_version: bool = field(compare=False, default=False)
    # A repeating software bug tied to the data at one step (a bad batch, a loss spike to NaN):
    # it fails the job at that step again after each restart from a checkpoint before it.
    data_position: bool = field(compare=False, default=False)
    step: int | None = field(compare=False, default=None)  # such a bug's step, once it failed
    loop: int = field(compare=False, default=0)  # how often it failed the job already
    # Planned work on the job (a configuration or dataset update), not on its hosts (firmware):
    # the operator restarts the ranks in place where the launcher does in-place restarts.
    job_level: bool = field(compare=False, default=False)
    draw: float = field(compare=False, default=0.0)  # picks its variant of evidence
    precursor: float = field(compare=False, default=1.0)  # < the share: it shows one


def schedule(a: Assumptions, seed: int) -> list[Fault]:
    """Table 5's interruptions and the planned ones at random times over the run."""
    rng = random.Random(seed)
    # Its own stream, so that the shares it draws for leave every other draw as it was.
    versions = random.Random(f"{seed}:code versions")
    positions = random.Random(f"{seed}:data positions")
    planned_kinds = random.Random(f"{seed}:planned kinds")
    span = a.days * 86400.0
    categories = [c for c, (n, _) in LLAMA3_TABLE5.items() for _ in range(n)]
    rng.shuffle(categories)
    times = sorted(rng.uniform(0, span) for _ in categories)
    faults: list[Fault] = []
    failed_hosts: list[int] = []
    for seq, (at, category) in enumerate(zip(times, categories, strict=True)):
        host = gpu = None
        recurrence = False
        if CATEGORIES[category].host_must_leave:
            recurrence = bool(failed_hosts) and rng.random() < a.repeat_share
            host = rng.choice(failed_hosts) if recurrence else rng.randrange(a.hosts)
            failed_hosts.append(host)
            gpu = rng.randrange(a.gpus_per_host) if CATEGORIES[category].in_one_gpu else None
        deterministic = category == Category.SOFTWARE_BUG and rng.random() < (
            a.deterministic_bug_share
        )
        if category == Category.SOFTWARE_BUG:
            new_version = versions.random() < a.new_version_bug_share and deterministic
            data_position = positions.random() < a.data_position_bug_share and (
                deterministic and not new_version
            )
        else:
            new_version = data_position = False
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
                new_version=new_version,
                data_position=data_position,
                draw=rng.random(),
                precursor=rng.random(),
            )
        )
    base = len(faults)
    for k in range(LLAMA3_PLANNED_INTERRUPTIONS):
        job_level = planned_kinds.random() < a.planned_job_level_share
        faults.append(Fault(rng.uniform(0, span), base + k, Category.PLANNED, job_level=job_level))
    return sorted(faults)
