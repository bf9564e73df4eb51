"""The classifier's entry points: text or signals in, verdict(s) out."""

from __future__ import annotations

from collections.abc import Iterable

from sentinel.knowledge import Knowledge, default_knowledge
from sentinel.triage.context import TriageContext
from sentinel.triage.policy import DEFAULT_POLICY, Policy
from sentinel.triage.signals import Signal, extract_signals
from sentinel.triage.verdict import Verdict


def classify_signals(
    signals: Iterable[Signal],
    *,
    job_hosts: int | None = None,
    job_ranks: int | None = None,
    hosts_seen: Iterable[str] = (),
    policy: Policy = DEFAULT_POLICY,
) -> Verdict:
    """The primary verdict for one incident window's signals (live events or parsed text)."""
    ctx = TriageContext.of(signals, job_hosts=job_hosts, job_ranks=job_ranks, hosts_seen=hosts_seen)
    return policy.decide(ctx)


def classify_signals_all(
    signals: Iterable[Signal],
    *,
    job_hosts: int | None = None,
    job_ranks: int | None = None,
    hosts_seen: Iterable[str] = (),
    policy: Policy = DEFAULT_POLICY,
    limit: int = 4,
) -> list[Verdict]:
    """The primary verdict, then one per unrelated cause in the same window."""
    ctx = TriageContext.of(signals, job_hosts=job_hosts, job_ranks=job_ranks, hosts_seen=hosts_seen)
    return policy.decide_all(ctx, limit=limit)


def classify_text(text: str, *, knowledge: Knowledge | None = None) -> Verdict:
    """Classify a pasted log excerpt (dmesg, NCCL, PyTorch, syslog... mixed is fine)."""
    return classify_signals(extract_signals(text, knowledge=knowledge or default_knowledge()))


def classify_all(text: str, *, knowledge: Knowledge | None = None, limit: int = 4) -> list[Verdict]:
    """Classify a pasted excerpt into the primary verdict and any secondary ones."""
    signals = extract_signals(text, knowledge=knowledge or default_knowledge())
    return classify_signals_all(signals, limit=limit)
