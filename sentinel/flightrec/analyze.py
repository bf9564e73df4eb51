"""Find where ranks disagree in flight-recorder dumps and resolve cascades to their origin."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import polars as pl

from sentinel.flightrec.grouping import collective_spread, merge_spreads, per_group_and_rank
from sentinel.flightrec.models import (
    STATE_NAMES,
    DumpSet,
    FrFinding,
    FrParseError,
    FrVerdict,
    ParsedDump,
    RankLocation,
    VerdictKind,
    no_cycle_collection,
)

RankMap = Mapping[int, tuple[str, int]]
# What the rules read of a collective's entries (`Context.rows`): only these columns are
# read back from the files the parsing workers wrote (each costs ~0.05 s at 16k ranks).
ROW_COLUMNS = ("pg", "seq", "rank", "op", "in_sig", "out_sig", "state", "t_created")


@dataclass
class Group:
    name: str
    desc: str
    members: tuple[int, ...]


@dataclass
class Context:
    """Everything the rules read, computed once from the dumps."""

    # The entries, read through `collectives`, `rows` and `p2p`: at 16k ranks most of
    # them are in files the parsing workers wrote (DumpSet.spilled).
    source: DumpSet
    groups: dict[str, Group]
    dumped: frozenset[int]
    # progress[group][rank] = highest collective seq the rank recorded in the group
    progress: dict[str, dict[int, int]]
    oldest_entry_ns: dict[int, int]
    frames: dict[int, dict[int, tuple[str, ...]]]
    # grouping.collective_spread of the collectives, by parts; None: computed when read
    spread: pl.DataFrame | None = field(default=None, repr=False)
    _per_collective: pl.DataFrame | None = field(default=None, repr=False)
    _rows: dict[tuple[str, int], list[dict[str, object]]] = field(default_factory=dict, repr=False)

    @property
    def collectives(self) -> pl.LazyFrame:
        """Non-p2p entries of every rank, with a rank column."""
        return self.source.scan("collectives")

    @property
    def p2p(self) -> pl.LazyFrame:
        """Send and receive entries of every rank, with a rank column."""
        return self.source.scan("p2p")

    def per_collective(self) -> pl.DataFrame:
        """One row per (group, seq): whether its ranks' calls differ, the range of states."""
        if self._per_collective is None:
            spread = self.spread
            if spread is None:
                spread = collective_spread(self.collectives.collect())
            self._per_collective = merge_spreads(spread)
        return self._per_collective

    def rows(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], list[dict[str, object]]]:
        """The entries of a few collectives, by (group, seq), with the ROW_COLUMNS the
        rules quote; each looked up once."""
        missing = [k for k in dict.fromkeys(keys) if k not in self._rows]
        if missing:
            # By number first (an integer filter over every row is cheap), then the group
            # among the few rows left.
            seqs = pl.Series([s for _, s in missing], dtype=pl.Int64).implode()
            found = (
                self.collectives.select(ROW_COLUMNS)
                .filter(pl.col("seq").is_in(seqs))
                .with_columns(pl.col(pl.Categorical).cast(pl.String))
                .collect()
            )
            for key in missing:
                self._rows[key] = []
            for row in found.iter_rows(named=True):
                key = (str(row["pg"]), int(row["seq"]))
                if key in self._rows:
                    self._rows[key].append(row)
        return {k: self._rows[k] for k in keys if self._rows.get(k)}

    def first_keys(self, condition: pl.Expr) -> list[tuple[str, int]]:
        """Each group's first collective whose spread meets `condition`, as (group, seq)."""
        first = self.per_collective().filter(condition).group_by("pg").agg(pl.col("seq").min())
        return [(str(g), int(s)) for g, s in first.iter_rows()]

    def first_per_group(self, condition: pl.Expr) -> dict[tuple[str, int], list[dict[str, object]]]:
        """The entries of each group's first collective whose spread meets `condition`."""
        return self.rows(self.first_keys(condition))

    def describe(self, group: str) -> str:
        desc = self.groups[group].desc if group in self.groups else ""
        return f"group {group} ({desc})" if desc else f"group {group}"


class Rule(Protocol):
    kind: ClassVar[VerdictKind]

    def find(self, ctx: Context) -> list[FrFinding]: ...


class DisagreementRule(Rule, Protocol):
    def wants(self, ctx: Context) -> list[tuple[str, int]]:
        """The collectives (group, seq) whose entries `find` will read: all the rules'
        are read together, in one pass over the spilled tables instead of one each."""
        ...


def _majority(values: dict[int, str]) -> tuple[str, list[int], bool]:
    """The most common value, the ranks that differ from it, and whether it was a tie."""
    counts = Counter(values.values()).most_common()
    expected = counts[0][0]
    tie = len(counts) > 1 and counts[1][1] == counts[0][1]
    if tie:
        return expected, sorted(values), True
    return expected, sorted(r for r, v in values.items() if v != expected), False


def _ranks_text(ranks: Iterable[int], limit: int = 16) -> str:
    ranks = sorted(ranks)
    text = ", ".join(map(str, ranks[:limit]))
    return text + (f" and {len(ranks) - limit} more" if len(ranks) > limit else "")


class CallDiffersFromMajority:
    """A rank called a different op, or other sizes/dtypes, than most of its group."""

    kind: ClassVar[VerdictKind] = VerdictKind.mismatch
    condition: ClassVar[pl.Expr] = pl.col("differs")

    def wants(self, ctx: Context) -> list[tuple[str, int]]:
        return ctx.first_keys(self.condition)

    def find(self, ctx: Context) -> list[FrFinding]:
        findings = []
        for (group, seq), rows in ctx.first_per_group(self.condition).items():
            call = {
                int(str(r["rank"])): f"{r['op']} in {r['in_sig']} out {r['out_sig']}" for r in rows
            }
            expected, culprits, tie = _majority(call)
            evidence = [
                f"{ctx.describe(group)} collective #{seq}: {len(call) - len(culprits)} of "
                f"{len(call)} ranks called {expected}" + (" (a tie: no majority)" if tie else "")
            ]
            by_call: dict[str, list[int]] = defaultdict(list)
            for rank in culprits:
                by_call[call[rank]].append(rank)
            evidence += [f"rank(s) {_ranks_text(r)} called {c}" for c, r in by_call.items()]
            findings.append(
                FrFinding(
                    kind=self.kind,
                    group=group,
                    group_desc=ctx.groups[group].desc,
                    seq=seq,
                    op=expected.split(" ", 1)[0],
                    culprit_ranks=culprits,
                    waiting_ranks=sorted(set(call) - set(culprits)),
                    evidence=evidence,
                )
            )
        return findings


class RankBehindPeersInState:
    """Every rank joined, but some never started (or finished) what most already had.

    Only backends that record states (NCCL) can show this; gloo's are all 'scheduled'.
    """

    kind: ClassVar[VerdictKind] = VerdictKind.stuck
    condition: ClassVar[pl.Expr] = pl.col("st_lo") != pl.col("st_hi")

    def wants(self, ctx: Context) -> list[tuple[str, int]]:
        return ctx.first_keys(self.condition)

    def find(self, ctx: Context) -> list[FrFinding]:
        findings = []
        for (group, seq), rows in ctx.first_per_group(self.condition).items():
            state = {int(str(r["rank"])): int(str(r["state"])) for r in rows}
            common = Counter(state.values()).most_common(1)[0][0]
            behind = sorted(r for r, s in state.items() if s < common)
            if not behind:
                continue  # a minority ahead is only async progress, not a hang
            op = str(rows[0]["op"])
            findings.append(
                FrFinding(
                    kind=self.kind,
                    group=group,
                    group_desc=ctx.groups[group].desc,
                    seq=seq,
                    op=op,
                    culprit_ranks=behind,
                    waiting_ranks=sorted(r for r, s in state.items() if s >= common),
                    evidence=[
                        f"{ctx.describe(group)} collective #{seq} {op}: most ranks are "
                        f"'{STATE_NAMES[common]}', rank(s) {_ranks_text(behind)} only "
                        f"'{STATE_NAMES[min(state[r] for r in behind)]}'"
                    ],
                )
            )
        return findings


class RankMissingFromCollective:
    """Most of a group entered a collective that some members never called."""

    kind: ClassVar[VerdictKind] = VerdictKind.missing

    def wants(self, ctx: Context) -> list[tuple[str, int]]:
        return [(group, seq) for group, _info, seq, *_ in self._missing(ctx)]

    def find(self, ctx: Context) -> list[FrFinding]:
        findings = []
        for group, info, seq, reached, present, absent in self._missing(ctx):
            rows = ctx.rows([(group, seq)]).get((group, seq), [])
            op = str(rows[0]["op"]) if rows else "?"
            evidence = [
                f"{ctx.describe(group)} collective #{seq} {op}: {len(present)} of "
                f"{len(reached)} ranks joined; rank(s) {_ranks_text(absent)} never did"
            ]
            for rank in absent[:8]:
                evidence.append(
                    f"rank {rank}: no dump file"
                    if rank not in ctx.dumped
                    else f"rank {rank}: last collective in this group is #{reached[rank]}"
                    if reached[rank]
                    else f"rank {rank}: no collective recorded in this group"
                )
            findings.append(
                FrFinding(
                    kind=self.kind,
                    group=group,
                    group_desc=info.desc,
                    seq=seq,
                    op=op,
                    culprit_ranks=absent,
                    waiting_ranks=present,
                    evidence=evidence,
                )
            )
        return findings

    def _missing(
        self, ctx: Context
    ) -> Iterator[tuple[str, Group, int, dict[int, int], list[int], list[int]]]:
        """Per group: the first collective some members never called while most did, as
        (group, its info, seq, how far each member got, who called it, who did not)."""
        for group, info in ctx.groups.items():
            progress = ctx.progress.get(group, {})
            reached = {r: progress.get(r, 0) for r in info.members}
            top = max(reached.values(), default=0)
            seq = min(reached.values(), default=0) + 1
            if seq > top:
                continue
            present = sorted(r for r, s in reached.items() if s >= seq)
            absent = sorted(
                r for r, s in reached.items() if s < seq and self._knowable(ctx, r, group, present)
            )
            # A minority that ran ahead is ordinary asynchrony; a majority waiting is not.
            if absent and len(present) >= len(absent):
                yield group, info, seq, reached, present, absent

    @staticmethod
    def _knowable(ctx: Context, rank: int, group: str, present: list[int]) -> bool:
        """Whether the rank's ring buffer reaches back far enough to tell.

        A rank with no entry in the group may have overwritten them all (2,000 entries
        is minutes of a busy job); then its absence proves nothing.
        """
        if rank not in ctx.dumped or ctx.progress.get(group, {}).get(rank):
            return True
        oldest = ctx.oldest_entry_ns.get(rank)
        if oldest is None:
            return True
        newest_peer = max((ctx.oldest_entry_ns.get(r, 0) for r in present), default=0)
        return oldest <= newest_peer or not present


class UnmatchedSendRecv:
    """A pending send without a pending receive (or the reverse) between two ranks.

    Only ops not yet completed count: a completed one was matched, and counting all of
    them would compare ring buffers that start at different points.
    """

    kind: ClassVar[VerdictKind] = VerdictKind.p2p

    def find(self, ctx: Context) -> list[FrFinding]:
        findings = []
        counts = (
            ctx.p2p.filter(pl.col("peer").is_not_null() & (pl.col("state") < 2))
            .with_columns(pl.col(pl.Categorical).cast(pl.String))
            .group_by("pg", "rank", "op", "peer")
            .agg(n=pl.len(), seq=pl.col("p2p_seq").max())
            .collect()
        )
        posted: dict[tuple[str, int, int, str], tuple[int, int]] = {}
        for group, rank, op, peer, n, seq in counts.iter_rows():
            members = ctx.groups[group].members if group in ctx.groups else ()
            if peer >= len(members):
                continue
            other = members[peer]
            src, dst = (rank, other) if op == "send" else (other, rank)
            posted[(group, src, dst, op)] = (n, seq)
        for (group, src, dst, op), (n, seq) in sorted(posted.items()):
            if op != "send":
                continue
            received = posted.get((group, src, dst, "recv"), (0, 0))[0]
            if n == received or {src, dst} - ctx.dumped:
                continue
            culprit, waiter, what = (dst, src, "receives") if n > received else (src, dst, "sends")
            findings.append(
                FrFinding(
                    kind=self.kind,
                    group=group,
                    group_desc=ctx.groups[group].desc,
                    seq=seq,
                    op="send/recv",
                    culprit_ranks=[culprit],
                    waiting_ranks=[waiter],
                    evidence=[
                        f"{ctx.describe(group)}: rank {src} has {n} pending send(s) to rank "
                        f"{dst}, which has {received} pending receive(s) from it: rank "
                        f"{culprit} is missing {what}"
                    ],
                )
            )
        return findings


class RankArrivesLateToCollectives:
    """With timings (NCCL), the rank whose peers keep waiting for it to join."""

    kind: ClassVar[VerdictKind] = VerdictKind.straggler
    min_wait_ms: ClassVar[float] = 50.0
    min_share: ClassVar[float] = 0.5
    min_collectives: ClassVar[int] = 5

    def find(self, ctx: Context) -> list[FrFinding]:
        timed = (
            ctx.collectives.filter((pl.col("state") == 2) & pl.col("wait").is_not_null())
            .select("pg", "seq", "rank", "wait")
            .collect()
        )
        if timed.is_empty():
            return []
        # The last rank to arrive spends the least time inside the collective; the
        # others' extra time is what it cost them. Durations need no clock sync.
        per = (
            timed.group_by("pg", "seq")
            .agg(
                late=pl.col("rank").sort_by("wait").first(),
                cost=pl.col("wait").median() - pl.col("wait").min(),
                n=pl.len(),
            )
            .filter(pl.col("n") > 1)
        )
        stats = per.group_by("late").agg(
            times=(pl.col("cost") > self.min_wait_ms).sum(), mean_cost=pl.col("cost").mean()
        )
        joined = timed.group_by("rank").agg(total=pl.col("seq").n_unique())
        stats = stats.join(joined, left_on="late", right_on="rank")
        slow = stats.filter(
            (pl.col("times") >= self.min_collectives)
            & (pl.col("times") >= self.min_share * pl.col("total"))
        )
        findings = []
        for rank, times, mean_cost, total in slow.select(
            "late", "times", "mean_cost", "total"
        ).iter_rows():
            findings.append(
                FrFinding(
                    kind=self.kind,
                    group="*",
                    seq=0,
                    op="*",
                    culprit_ranks=[int(rank)],
                    evidence=[
                        f"rank {rank} arrived last, keeping its peers waiting over "
                        f"{self.min_wait_ms:.0f} ms, in {times} of {total} completed "
                        f"collectives (on average {mean_cost:.0f} ms)"
                    ],
                )
            )
        return findings


# Disagreement rules in the order that breaks ties at the same collective: a wrong call
# explains a hang, a rank behind in state explains its peers' absence elsewhere.
DISAGREEMENT_RULES: tuple[DisagreementRule, ...] = (
    CallDiffersFromMajority(),
    RankBehindPeersInState(),
    RankMissingFromCollective(),
)
# Consulted only when no group disagrees.
HEALTH_RULES: tuple[Rule, ...] = (UnmatchedSendRecv(), RankArrivesLateToCollectives())


def warm_up() -> None:
    """The whole read and analysis once, on a tiny synthetic job: loads numba's kernels
    from its disk cache (or compiles them, on a cold cache) and starts polars' thread
    pools, before the real job needs them (and before a memory limit is set: under one,
    polars could not start its threads)."""
    from sentinel.flightrec import prescan
    from sentinel.flightrec.parse import DumpSetBuilder
    from sentinel.flightrec.synth import Layout, Plan, dump_bytes

    plan = Plan(Layout(world=8, tp=8, pp=1), entries=20)
    builder = DumpSetBuilder()
    data = b""
    for rank in range(plan.layout.world):
        data = dump_bytes(plan, rank)
        builder.add(data, f"warm-up-{rank}")
    prescan.check_sizes(data)  # the checked path's compiled bound check
    analyze_dumps(builder.build())


def analyze_dumps(
    dumps: Iterable[ParsedDump] | DumpSet, rank_map: RankMap | None = None
) -> FrVerdict:
    """Analyse one dump per rank to a verdict; the order of `dumps` never matters."""
    with no_cycle_collection():
        return _analyze(dumps, rank_map)


def _analyze(dumps: Iterable[ParsedDump] | DumpSet, rank_map: RankMap | None) -> FrVerdict:
    ctx = build_context(dumps)
    findings = _first_per_group(ctx)
    if not findings:
        findings = [f for rule in HEALTH_RULES for f in rule.find(ctx)]
    rows = ctx.source.count("collectives") + ctx.source.count("p2p")
    if not findings:
        return FrVerdict(
            kind=VerdictKind.healthy,
            ranks_analysed=len(ctx.dumped),
            entries_analysed=rows,
            evidence=[f"{len(ctx.groups)} groups agree on every collective"],
        )
    verdict = _resolve(ctx, findings)
    verdict.ranks_analysed = len(ctx.dumped)
    verdict.entries_analysed = rows
    if rank_map:
        verdict.culprit_locations = _locate(verdict.culprit_ranks, rank_map)
        verdict.victim_locations = _locate(verdict.victim_ranks, rank_map)
    return verdict


def build_context(dumps: Iterable[ParsedDump] | DumpSet) -> Context:
    dump_set = dumps if isinstance(dumps, DumpSet) else DumpSet.of(dumps)
    if not dump_set.dumps:
        raise FrParseError("no dumps to analyse")
    seen: dict[int, str] = {}
    for dump in dump_set.dumps:
        if dump.rank is None:
            raise FrParseError(f"{dump.name}: cannot tell the rank (the name must end in it)")
        if dump.rank in seen:
            raise FrParseError(f"{dump.name} and {seen[dump.rank]} are both rank {dump.rank}")
        seen[dump.rank] = dump.name
    per_rank = dump_set.members
    if per_rank is None:
        per_rank = per_group_and_rank(
            dump_set.scan("collectives").collect(), dump_set.scan("p2p").collect()
        )
    # Whole columns, not rows: at 16k ranks per_rank has ~65k rows.
    progress: dict[str, dict[int, int]] = defaultdict(dict)
    tops = per_rank.filter(pl.col("top").is_not_null())
    for group, rank, top in zip(
        tops["pg"].cast(pl.String).to_list(),
        tops["rank"].to_list(),
        tops["top"].to_list(),
        strict=True,
    ):
        progress[group][rank] = top
    firsts = (
        per_rank.filter(pl.col("oldest").is_not_null()).group_by("rank").agg(pl.col("oldest").min())
    )
    oldest = dict(zip(firsts["rank"].to_list(), firsts["oldest"].to_list(), strict=True))
    return Context(
        source=dump_set,
        groups=_groups(dump_set.dumps, per_rank),
        dumped=frozenset(seen),
        progress=dict(progress),
        oldest_entry_ns=oldest,
        frames={d.rank: d.frames for d in dump_set.dumps if d.rank is not None},
        spread=dump_set.spread,
    )


def _groups(dumps: list[ParsedDump], per_rank: pl.DataFrame) -> dict[str, Group]:
    """Group membership: pg_config where ranks agree on it, else who recorded entries.

    The majority of dumps decides the config, so one rank's broken pg_config (gloo's
    is always broken) cannot redefine a group.
    """
    # Counted by identity first: at 16k ranks every dump lists the default group's 16k
    # ranks, and the parser shares equal lists, so hashing each one would cost seconds.
    # (Counted by C loops: a Python loop over 16k ranks' groups took a quarter second.)
    configs = [cfg for dump in dumps for cfg in dump.pg_config.values()]
    # The first description seen per group (reversed: a dict keeps the last value written)
    descs = {cfg.name: cfg.desc for cfg in reversed(configs)}
    known = [(cfg.name, cfg.ranks) for cfg in configs if cfg.ranks is not None]
    lists = {id(ranks): ranks for _, ranks in known}
    votes: dict[str, Counter[tuple[int, ...]]] = defaultdict(Counter)
    for (name, ident), n in Counter((name, id(ranks)) for name, ranks in known).items():
        votes[name][lists[ident]] += n
    seen = per_rank.group_by("pg").agg(
        pl.col("rank").unique().sort(), pl.col("pg_desc").cast(pl.String).first()
    )
    groups = {}
    for name, ranks, desc in seen.iter_rows():
        name = str(name)
        members = votes[name].most_common(1)[0][0] if votes.get(name) else tuple(ranks)
        groups[name] = Group(name, str(desc or descs.get(name, "")), tuple(members))
    for name, counter in votes.items():
        if name not in groups:
            groups[name] = Group(name, descs.get(name, ""), counter.most_common(1)[0][0])
    return groups


def _first_per_group(ctx: Context) -> list[FrFinding]:
    """Each group's earliest disagreement; at the same collective, rule order wins."""
    ctx.rows([key for rule in DISAGREEMENT_RULES for key in rule.wants(ctx)])
    best: dict[str, tuple[int, int, FrFinding]] = {}
    for order, rule in enumerate(DISAGREEMENT_RULES):
        for finding in rule.find(ctx):
            key = (finding.seq, order)
            if finding.group not in best or key < best[finding.group][:2]:
                best[finding.group] = (*key, finding)
    return [best[g][2] for g in sorted(best, key=_group_sort_key)]


def _group_sort_key(name: str) -> tuple[int, str]:
    return (int(name), name) if name.isdigit() else (1 << 62, name)


def _waits_on(ctx: Context) -> dict[int, set[int]]:
    """rank -> the ranks it waits for: members absent from its latest collective there."""
    waits: dict[int, set[int]] = defaultdict(set)
    for group, info in ctx.groups.items():
        progress = ctx.progress.get(group, {})
        reached = sorted((progress.get(r, 0), r) for r in info.members)
        # Every rank waits on each member that stopped at a lower seq than itself.
        behind: list[int] = []
        prev = None
        pending: list[int] = []
        for seq, rank in reached:
            if seq != prev:
                behind.extend(pending)
                pending = []
                prev = seq
            if behind:
                waits[rank].update(behind)
            pending.append(rank)
    return waits


def _resolve(ctx: Context, findings: list[FrFinding]) -> FrVerdict:
    """Tell the origin of a cascade from the ranks that only waited on it."""
    waits = _waits_on(ctx)
    for finding in findings:
        if finding.kind is VerdictKind.stuck:
            for rank in finding.waiting_ranks:
                waits[rank].update(finding.culprit_ranks)
    blamed = {r for f in findings for r in f.culprit_ranks}

    def is_origin(rank: int, finding: FrFinding) -> bool:
        # A rank that called the wrong thing is at fault whatever else it waits for.
        return finding.kind is VerdictKind.mismatch or not (waits.get(rank, set()) - {rank})

    origins = {r for f in findings for r in f.culprit_ranks if is_origin(r, f)}
    circular = not origins
    if circular:  # everyone blamed waits on someone blamed: a deadlock cycle
        origins = blamed
    resolved = [
        f.model_copy(update={"role": "origin" if set(f.culprit_ranks) & origins else "cascade"})
        for f in findings
    ]
    kind_rank = {
        k: i
        for i, k in enumerate(
            (
                VerdictKind.mismatch,
                VerdictKind.stuck,
                VerdictKind.p2p,
                VerdictKind.missing,
                VerdictKind.straggler,
            )
        )
    }
    heads = [f for f in resolved if f.role == "origin"]
    head = min(
        heads,
        key=lambda f: (
            kind_rank[f.kind],
            -_blocked_behind(waits, set(f.culprit_ranks) & origins),
            _created(ctx, f),
            _group_sort_key(f.group),
            f.seq,
        ),
    )
    culprits = sorted(set(head.culprit_ranks) & origins)
    victims = sorted(blamed - origins)
    evidence = list(head.evidence)
    if circular:
        evidence.append("every blamed rank waits on another: a circular wait (deadlock)")
    evidence += _victim_evidence(ctx, resolved, victims, waits)
    evidence += _last_op_evidence(ctx, culprits)
    return FrVerdict(
        kind=head.kind,
        group=head.group,
        group_desc=head.group_desc,
        seq=head.seq,
        op=head.op,
        culprit_ranks=culprits,
        victim_ranks=victims,
        evidence=evidence,
        findings=resolved,
    )


def _blocked_behind(waits: dict[int, set[int]], culprits: set[int]) -> int:
    """How many ranks wait, directly or through others, on these culprits."""
    waited_by: dict[int, set[int]] = defaultdict(set)
    for rank, targets in waits.items():
        for target in targets:
            waited_by[target].add(rank)
    seen, stack = set(culprits), list(culprits)
    while stack:
        for waiter in waited_by.get(stack.pop(), ()):
            if waiter not in seen:
                seen.add(waiter)
                stack.append(waiter)
    return len(seen - culprits)


def _created(ctx: Context, finding: FrFinding) -> int:
    """When the collective was first entered: of two a rank skipped, the earlier is
    the one it stalled before."""
    if finding.group not in ctx.groups:
        return 0
    rows = ctx.rows([(finding.group, finding.seq)]).get((finding.group, finding.seq), [])
    return min((int(str(r["t_created"])) for r in rows), default=0)


def _victim_evidence(
    ctx: Context, findings: list[FrFinding], victims: list[int], waits: dict[int, set[int]]
) -> list[str]:
    lines = []
    for rank in victims[:8]:
        blamed_in = [
            f"{ctx.describe(f.group)} #{f.seq}" for f in findings if rank in f.culprit_ranks
        ]
        lines.append(
            f"rank {rank} is a victim: blamed in {', '.join(blamed_in)}, but it "
            f"was itself waiting on rank(s) {_ranks_text(waits.get(rank, set()))}"
        )
    if len(victims) > 8:
        lines.append(f"{len(victims) - 8} more victims")
    return lines


def _last_op_evidence(ctx: Context, culprits: list[int]) -> list[str]:
    lines = []
    for rank in culprits[:4]:
        last = (
            ctx.source.scan("collectives", [rank])
            .filter(pl.col("rank") == rank)
            .sort("record_id")
            .tail(1)
            .with_columns(pl.col(pl.Categorical).cast(pl.String))
            .collect()
        )
        if last.is_empty():
            continue
        row = last.row(0, named=True)
        lines.append(
            f"rank {rank}'s last collective: {row['op']} #{row['seq']} in "
            f"{ctx.describe(str(row['pg']))}, state "
            f"'{STATE_NAMES.get(int(row['state']), '?')}'"
        )
        stack = ctx.frames.get(rank, {}).get(int(row["record_id"]))
        if stack:
            lines.append("  called from: " + " <- ".join(stack[:6]))
    return lines


def _locate(ranks: list[int], rank_map: RankMap) -> list[RankLocation]:
    return [
        RankLocation(rank=r, host=rank_map[r][0], gpu=rank_map[r][1])
        for r in ranks
        if r in rank_map
    ]
