"""Triage rules for lost hosts and links: a silent host, a peer that many blame, link errors
on many hosts (the fabric), on one (its NIC) or on none named."""

from __future__ import annotations

from collections import Counter

from sentinel.knowledge.taxonomy import Category
from sentinel.triage.context import TriageContext
from sentinel.triage.rules.base import (
    CRITICAL,
    ERROR,
    LINK_CATEGORIES,
    PEER_REPORTS,
    RANK_STOPPERS,
    WARNING,
    Rule,
    _by_host,
    _hosts,
    _on,
    _part,
    _same_host,
    _shadows,
    _strongest,
    _symptom_note,
    _what,
    _where,
    _worst_group,
)
from sentinel.triage.signals import Signal
from sentinel.triage.verdict import Verdict


class SilentHostIsHostLoss(Rule):
    """A host that went silent, panicked, rebooted or was lost by the scheduler: host loss."""

    def applies(self, ctx: TriageContext) -> bool:
        return bool(ctx.causes_in([Category.HOST_MAINTENANCE]))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        lost = ctx.causes_in([Category.HOST_MAINTENANCE])
        host, group, head = _worst_group(_by_host(lost), ctx)
        # Peers' link errors toward a vanished host are its shadow, not a fabric fault.
        shadows = [s for s in ctx.causes_in(LINK_CATEGORIES) if s.host != host]
        evidence = [head, *(s for s in group if s is not head)]
        symptoms = [*_same_host(ctx, host, evidence), *ctx.others(evidence), *shadows]
        symptoms = list({id(s): s for s in symptoms}.values())
        return Verdict.build(
            category=Category.HOST_MAINTENANCE,
            confidence={CRITICAL: 0.85, ERROR: 0.75, WARNING: 0.5}.get(head.severity_rank, 0.4),
            reason=f"Host loss: {_what(head)} on {_where(head)}{_symptom_note(symptoms, host)}.",
            rule=self.name,
            evidence=evidence,
            symptoms=symptoms,
            culprit_host=host,
        )


def _link_faults(ctx: TriageContext) -> list[Signal]:
    """Link errors that may be a link's fault: not a lesser sign far from the trouble, nor the
    peers' failed completions toward the one host whose ranks a fault of its own took down."""
    dead_ends = {id(s) for s in _dead_host_shadows(ctx)}
    return [
        s
        for s in ctx.causes_in(LINK_CATEGORIES, WARNING)
        if ctx.explains_effects(s) and id(s) not in dead_ends
    ]


def _dead_host_shadows(ctx: TriageContext) -> list[Signal]:
    faults = ctx.causes_in(RANK_STOPPERS, ERROR)
    hosts = {s.host for s in faults}
    if len(hosts) != 1 or None in hosts:
        return []
    host = faults[0].host
    assert host is not None
    return _shadows(ctx, host, faults)


def _port_shadow(ctx: TriageContext) -> tuple[str | None, list[Signal]]:
    """One host's own port failing (link down, a module event) and, after it, its peers'
    failed completions: those are the port's shadow, not link errors of theirs."""
    own = [
        s
        for s in _link_faults(ctx)
        if s.host and s.pattern not in PEER_REPORTS and s.severity_rank >= ERROR
    ]
    hosts = {s.host for s in own}
    if len(hosts) != 1:
        return None, []
    host = own[0].host
    assert host is not None
    return host, _shadows(ctx, host, own)


def _link_hosts(ctx: TriageContext) -> set[str]:
    """Hosts whose links failed, less peers that only report one failed host's port."""
    shadows = {id(s) for s in _port_shadow(ctx)[1]}
    return {s.host for s in _link_faults(ctx) if s.host and id(s) not in shadows}


class PeersBlamingOneHostIsItsNic(Rule):
    """Several hosts' completion errors all name the same peer: that peer's NIC (or link)."""

    @staticmethod
    def blamed(ctx: TriageContext) -> tuple[str | None, list[Signal]]:
        reports = [s for s in _link_faults(ctx) if s.attrs.get("peer")]
        peers = Counter(s.attrs["peer"] for s in reports)
        reporters = {s.host for s in reports if s.host}
        if len(peers) == 1 and len(reporters) >= 2:
            peer = next(iter(peers))
            return peer, reports
        return None, []

    @staticmethod
    def own_port_faults(ctx: TriageContext, peer: str) -> list[Signal]:
        """NCCL names a peer by its address; a host the job knows by name whose own port
        failed (link down, module event) while it was blamed is that address."""
        if peer in ctx.hosts or peer in ctx.hosts_seen:
            return []
        own = [s for s in _link_faults(ctx) if s.host and not s.attrs.get("peer")]
        return own if len({s.host for s in own}) == 1 else []

    def applies(self, ctx: TriageContext) -> bool:
        return self.blamed(ctx)[0] is not None

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        peer, reports = self.blamed(ctx)
        assert peer is not None
        reporters = {s.host for s in reports if s.host}
        own = self.own_port_faults(ctx, peer)
        culprit = own[0].host if own else peer
        return Verdict.build(
            category=Category.NIC,
            confidence=0.8 if own else 0.65,
            reason=f"{len(reporters)} hosts report failed completions, all from peer {peer}: "
            "its NIC or link is the common factor"
            + (f"; {culprit} reports its own port failing ({_what(own[0])})." if own else "."),
            rule=self.name,
            evidence=[*own, *reports],
            symptoms=ctx.others(reports),
            culprit_host=culprit,
        )


class LinkErrorsOnManyHostsAreTheFabric(Rule):
    """Link errors on several hosts at once point at the switches and cables between them."""

    def applies(self, ctx: TriageContext) -> bool:
        return len(_link_hosts(ctx)) >= 2

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        faults = _link_faults(ctx)
        hosts = _link_hosts(ctx)
        return Verdict.build(
            category=Category.NETWORK_SWITCH_CABLE,
            confidence=min(0.9, 0.6 + 0.05 * len(hosts)),
            reason=f"Link errors on {_hosts(hosts)}: the fabric, not one NIC.",
            rule=self.name,
            evidence=faults,
            symptoms=ctx.others(faults),
        )


class LinkErrorsOnOneHostAreItsNic(Rule):
    """Link errors from one host only: its NIC, transceiver or port."""

    def applies(self, ctx: TriageContext) -> bool:
        return len(_link_hosts(ctx)) == 1

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        _, shadows = _port_shadow(ctx)
        ids = {id(s) for s in shadows}
        faults = [s for s in _link_faults(ctx) if id(s) not in ids]
        head = _strongest([s for s in faults if s.host], ctx)
        evidence = [head, *(s for s in faults if s is not head)]
        return Verdict.build(
            category=Category.NIC,
            confidence=0.75 if head.severity_rank >= ERROR else 0.55,
            reason=f"{_what(head)}: link errors on {_where(head)} only, so its NIC or port"
            + (f"; {len(shadows)} peer report(s) after it are its shadow." if shadows else "."),
            rule=self.name,
            evidence=evidence,
            symptoms=[*shadows, *ctx.others(evidence)],
            culprit_host=head.host,
            culprit_gpu=None,
        )


class LinkErrorsWithoutHostsFollowTheirPattern(Rule):
    """Link errors with no host named: trust what each pattern says (fabric vs. NIC)."""

    def applies(self, ctx: TriageContext) -> bool:
        return bool(_link_faults(ctx)) and not _link_hosts(ctx)

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        faults = _link_faults(ctx)
        votes = Counter(s.category_hint for s in faults if s.severity_rank >= ERROR) or Counter(
            s.category_hint for s in faults
        )
        category = max(votes, key=lambda c: (votes[c], c == Category.NETWORK_SWITCH_CABLE))
        head = _strongest([s for s in faults if s.category_hint == category], ctx)
        return Verdict.build(
            category=category or Category.UNKNOWN,
            confidence=0.6 if head.severity_rank >= ERROR else 0.45,
            reason=f"{_what(head)}{_on(_part(head))}; no host names in the excerpt, so its "
            "pattern decides.",
            rule=self.name,
            evidence=[head, *(s for s in faults if s is not head)],
            symptoms=ctx.others(faults),
        )
