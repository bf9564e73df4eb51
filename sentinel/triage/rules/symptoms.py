"""Triage rules over symptoms only: hangs, stragglers, hinted causes, collective errors, a
crashed worker, and the rule that always answers (unknown)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sentinel.knowledge.taxonomy import Category
from sentinel.triage.context import TriageContext
from sentinel.triage.rules.base import (
    COLLECTIVE_FAMILIES,
    Rule,
    _hosts,
    _what,
)
from sentinel.triage.signals import Signal, describe
from sentinel.triage.verdict import Verdict


@dataclass(frozen=True)
class _Laggard:
    """Where a hang began, by what evidence (none found: no host, no note)."""

    host: str | None = None
    rank: int | None = None
    note: str = ""
    evidence: tuple[Signal, ...] = ()
    gpu: str | None = None  # the named rank's, where its evidence carries one


def _stragglers(ctx: TriageContext) -> list[Signal]:
    return [s for s in ctx.symptoms if s.kind == "straggler"]


def _one_host(signals: Sequence[Signal]) -> str | None:
    hosts = {s.host for s in signals}
    return next(iter(hosts)) if len(hosts) == 1 else None


def _laggard(ctx: TriageContext, timeouts: Sequence[Signal]) -> _Laggard:
    """The rank the others waited for: the flight recorder's, else the odd sequence number out,
    else the one host whose ranks stopped well before the rest (heartbeats), else the one host
    that straggled. Several hosts stopping first, or straggling, name none."""
    stuck = [s for s in ctx.signals if s.kind == "fr_verdict" and s.rank is not None]
    if stuck:
        head = stuck[0]
        return _Laggard(
            head.host,
            head.rank,
            f"; the flight recorder names rank {head.rank}",
            (head,),
            gpu=head.gpu,
        )
    by_seq: dict[str, list[Signal]] = defaultdict(list)
    for s in timeouts:
        if s.attrs.get("seqnum") and s.rank is not None:
            by_seq[s.attrs["seqnum"]].append(s)
    if len(by_seq) >= 2:
        streams = {seq: {(s.host, s.rank) for s in g} for seq, g in by_seq.items()}
        seq = min(streams, key=lambda k: len(streams[k]))
        odd = by_seq[seq]
        if len(streams[seq]) == 1 and sum(map(len, streams.values())) >= 3:
            rank = odd[0].rank
            return _Laggard(
                odd[0].host,
                rank,
                f"; rank {rank} timed out on a different collective than the rest",
                tuple(odd),
                # One rank's lines: a GPU any of them names is that rank's (the event's).
                gpu=next((s.gpu for s in odd if s.gpu), None),
            )
    first = [s for s in ctx.symptoms if s.attrs.get("stopped_first")]
    if first:
        host = _one_host(first)
        if host is None:
            named = {s.host for s in first if s.host}
            return _Laggard(
                note=f"; ranks on {_hosts(named)} stopped before the rest, none clearly first"
            )
        # The latest report compares it with where the rest of the job stopped in the end.
        latest = first[-1]
        return _Laggard(
            host,
            latest.rank,
            f"; the heartbeats show {latest.text}",
            tuple(first),
            gpu=latest.gpu,
        )
    slow = _stragglers(ctx)
    host = _one_host(slow)
    if host is not None:
        return _Laggard(
            host, slow[0].rank, f"; {slow[0].text} before the hang", tuple(slow), gpu=slow[0].gpu
        )
    return _Laggard()


def _hang(timeouts: Sequence[Signal]) -> str:
    """What a hang looked like: the NCCL watchdog's timeouts, heartbeats that stopped, or both."""
    nccl = [s for s in timeouts if s.family != "heartbeat"]
    seen = []
    if nccl:
        ranks = {s.rank for s in nccl if s.rank is not None}
        seen.append(f"NCCL watchdog timeouts on {len(ranks) or len(nccl)} rank(s)")
    if len(nccl) < len(timeouts):
        seen.append("ranks stopped making progress (heartbeats)")
    return " and ".join(seen)


class WatchdogTimeoutWithNothingDeeper(Rule):
    """NCCL watchdog timeouts (or stalled heartbeats) and no deeper cause anywhere: a collective
    hang, named as such, on the rank or host where it began when the evidence shows it."""

    @staticmethod
    def timeouts(ctx: TriageContext) -> list[Signal]:
        return [
            s
            for s in ctx.symptoms
            if s.category_hint == Category.NCCL_WATCHDOG_TIMEOUT and s.kind != "straggler"
        ]

    def applies(self, ctx: TriageContext) -> bool:
        return bool(self.timeouts(ctx))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        timeouts = self.timeouts(ctx)
        laggard = _laggard(ctx, timeouts)
        evidence = list({id(s): s for s in [*laggard.evidence, *timeouts]}.values())
        # Nothing known explains the hang: what the hosts printed that no pattern knows is
        # the lead a human follows next.
        seen = ctx.unrecognized()
        unknown = f"; {len(seen)} error line(s) no pattern knows are attached" if seen else ""
        return Verdict.build(
            category=Category.NCCL_WATCHDOG_TIMEOUT,
            confidence=0.65 if laggard.host else 0.6,
            reason=f"The job hung: {_hang(timeouts)}, and no hardware, network or application "
            f"fault was found beneath it{laggard.note}{unknown}.",
            rule=self.name,
            evidence=evidence,
            symptoms=[*ctx.others(evidence), *seen],
            culprit_host=laggard.host,
            culprit_gpu=laggard.gpu,
            culprit_rank=laggard.rank,
        )


class StragglersSlowEveryCollective(Rule):
    """Ranks far slower than the rest, no error anywhere and the job still running: every
    collective waits on them. Named like a hang (nccl_watchdog_timeout), on their host when
    they are one host's, whose exclusion at the next restart is the remedy; a thermal, power or
    link sign on that host names the part instead (the rules above)."""

    def applies(self, ctx: TriageContext) -> bool:
        return bool(_stragglers(ctx)) and not WatchdogTimeoutWithNothingDeeper.timeouts(ctx)

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        slow = _stragglers(ctx)
        host = _one_host(slow)
        worst = max(slow, key=lambda s: float(s.attrs.get("step_time_s", 0)))
        ranks = {s.rank for s in slow if s.rank is not None}
        where = host or _hosts({s.host for s in slow if s.host})
        return Verdict.build(
            category=Category.NCCL_WATCHDOG_TIMEOUT,
            confidence=0.55 if host else 0.45,
            reason=f"{len(ranks) or len(slow)} rank(s) on {where} straggle ({worst.text}) and "
            "no hardware, network or application fault explains it: every collective waits "
            "on them.",
            rule=self.name,
            evidence=slow,
            symptoms=ctx.others(slow),
            culprit_host=host,
            culprit_gpu=worst.gpu if host and len(ranks) == 1 else None,
            culprit_rank=worst.rank if host and len(ranks) == 1 else None,
        )


class SymptomPointsToACause(Rule):
    """Only symptoms, but some hint at a cause (NCCL 'unhandled cuda error' suggests the GPU)."""

    @staticmethod
    def hinted(ctx: TriageContext) -> list[Signal]:
        return [s for s in ctx.symptoms if s.category_hint and s.family != "launcher"]

    def applies(self, ctx: TriageContext) -> bool:
        return bool(self.hinted(ctx))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        hinted = self.hinted(ctx)
        votes = Counter(s.category_hint for s in hinted)
        category = votes.most_common(1)[0][0]
        evidence = [s for s in hinted if s.category_hint == category]
        return Verdict.build(
            category=category or Category.UNKNOWN,
            confidence=0.35,
            reason=f"No direct cause; {len(evidence)} symptom(s) such as {_what(evidence[0])} "
            f"usually come from this.",
            rule=self.name,
            evidence=evidence,
            symptoms=ctx.others(evidence),
            culprit_host=evidence[0].host,
        )


class CollectiveErrorWithNothingDeeper(Rule):
    """NCCL/ProcessGroup errors with nothing under them: the collective layer failed."""

    @staticmethod
    def errors(ctx: TriageContext) -> list[Signal]:
        return [s for s in ctx.symptoms if s.family in COLLECTIVE_FAMILIES]

    def applies(self, ctx: TriageContext) -> bool:
        return bool(self.errors(ctx))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        errors = self.errors(ctx)
        return Verdict.build(
            category=Category.NCCL_WATCHDOG_TIMEOUT,
            confidence=0.35,
            reason=f"{len(errors)} NCCL/ProcessGroup error(s) such as {_what(errors[0])}, "
            "with no deeper cause in the excerpt (a peer may have died silently).",
            rule=self.name,
            evidence=errors,
            symptoms=ctx.others(errors),
        )


# Exits by which the program stopped itself (abort, crash): its own fault. Exit code 1 or a
# SIGKILL/SIGTERM from outside says nothing about why.
_SELF_INFLICTED: Final = frozenset(
    {"SIGABRT", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "-6", "-11", "-7", "-8", "-4", "6", "11"}
)


class CrashedWorkerBeforeAnyTimeout(Rule):
    """A worker died before any collective timed out, and nothing says why: the stalls and
    timeouts that followed are its shadow. An abort or crash of its own is the program's
    fault; a bare non-zero exit is not enough to name a cause (unknown, on that host)."""

    @staticmethod
    def crashes(ctx: TriageContext) -> list[Signal]:
        return [s for s in ctx.symptoms if s.family == "launcher" and s.category_hint]

    @staticmethod
    def first(ctx: TriageContext, crashes: Sequence[Signal]) -> bool:
        """No timeout is known to precede the first crash (a watchdog timeout kills its rank
        with SIGABRT: that crash follows the hang and explains nothing)."""
        timeouts = [
            s
            for s in ctx.symptoms
            if s.category_hint == Category.NCCL_WATCHDOG_TIMEOUT and s.family != "heartbeat"
        ]
        if not timeouts:
            return True
        times = [s.time for s in crashes if s.time]
        return bool(times) and all(t.time is not None and t.time > min(times) for t in timeouts)

    def applies(self, ctx: TriageContext) -> bool:
        crashes = self.crashes(ctx)
        # A symptom that hints at a cause (NCCL's "unhandled cuda error") says more.
        hinted = [
            s
            for s in SymptomPointsToACause.hinted(ctx)
            if s.category_hint != Category.NCCL_WATCHDOG_TIMEOUT
        ]
        return bool(crashes) and not hinted and self.first(ctx, crashes)

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        crashes = self.crashes(ctx)
        roots = [s for s in ctx.signals if s.pattern == "elastic_root_cause"]
        root = roots[0] if roots else None
        exits = [
            s for s in ctx.signals if s.family == "launcher" or s.pattern == "elastic_root_cause"
        ]
        codes = {v for s in exits for k in ("exitcode", "status", "event") if (v := s.attrs.get(k))}
        evidence = [*crashes, *roots]
        where = root or crashes[0]
        shown = f" ({root.text[:160]})" if root else f" ({crashes[0].text.strip()[:160]})"
        if codes & _SELF_INFLICTED:
            return Verdict.build(
                category=Category.SOFTWARE_BUG,
                confidence=0.3,
                reason="A worker process aborted or crashed by itself and nothing shows a cause "
                f"beneath it{shown}; look for the first rank's traceback.",
                rule=self.name,
                evidence=evidence,
                symptoms=ctx.others(crashes),
                culprit_host=where.host,
                culprit_rank=where.rank,
            )
        return Verdict.build(
            category=Category.UNKNOWN,
            confidence=0.15,
            reason="A worker process exited"
            + (f" with code {', '.join(sorted(codes))}" if codes else "")
            + f" before anything timed out, and nothing says why{shown}: not enough evidence "
            "to name a cause. Its host's logs around the exit are the next place to look.",
            rule=self.name,
            evidence=evidence,
            symptoms=ctx.others(crashes),
            culprit_host=where.host,
            culprit_rank=where.rank,
        )


class ThinEvidenceIsUnknown(Rule):
    """Nothing that names a cause: say so, with what was seen."""

    def applies(self, ctx: TriageContext) -> bool:
        return True

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        seen = describe(ctx.signals)
        return Verdict.build(
            category=Category.UNKNOWN,
            confidence=0.0 if not ctx.signals else 0.1,
            reason=f"Not enough evidence to name a cause; seen: {seen}."
            if seen
            else "Not enough evidence to name a cause; no known failure pattern was found.",
            rule=self.name,
            evidence=list(ctx.signals),
        )
