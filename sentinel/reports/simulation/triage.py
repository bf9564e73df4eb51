"""The real triage on each simulated fault: its drawn real-format events weighed once per
category and variant, and the verdict read relative to the fault's true host."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from typing import Final

from sentinel.reports import draws
from sentinel.reports.simulation.assumptions import Assumptions
from sentinel.reports.simulation.faults import Fault
from sentinel.triage.taxonomy import CATEGORIES, Category

host_name = draws.host_name


@dataclass
class Triaged:
    """How often each category's faults were drawn and what the real triage said of them."""

    draws: Counter[Category] = field(default_factory=Counter)
    precursors: Counter[Category] = field(default_factory=Counter)
    precursors_right: Counter[Category] = field(default_factory=Counter)


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
    link_flapped: bool = False


def _seen(w: draws.Weighed, fault: Fault, hosts: int) -> Seen:
    true = fault.host if fault.host is not None else _CULPRIT % hosts
    other = (true + 1) % hosts
    culprit = {"culprit": host_name(true), "other": host_name(other), None: None}[w.culprit]
    return Seen(w.category, culprit, w.gpu, w.confidence, w.xids, w.names_culprit(), w.link_flapped)


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
            if CATEGORIES[category].host_must_leave
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


def distinct_draws() -> int:
    """How many distinct draws the real triage weighed (each classified once, then reused)."""
    return _weigh.cache_info().currsize
