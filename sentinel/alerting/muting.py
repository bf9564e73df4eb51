"""Muters: inhibition and silences behind one interface, each naming why it muted an alert."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sentinel.alerting.config import InhibitRule
from sentinel.alerting.model import Labels, Matcher, matcher_of, matches_all
from sentinel.db.models import Silence


@dataclass(frozen=True)
class Candidate:
    fingerprint: str
    labels: Labels
    firing: bool


class Muter(Protocol):
    def mutes(self, alert: Candidate) -> str | None:
        """The reason (``silence:<id>``, ``inhibited_by:<fingerprint>``) or None."""
        ...


class Inhibitor:
    """Alertmanager's inhibition: a firing source mutes targets equal on the ``equal`` labels.

    An alert that matches both sides of a rule never mutes itself.
    """

    def __init__(self, rules: Sequence[InhibitRule], alerts: Iterable[Candidate]) -> None:
        self._rules = rules
        self._sources: list[dict[tuple[str, ...], list[str]]] = []
        firing = [a for a in alerts if a.firing]
        for rule in rules:
            index: dict[tuple[str, ...], list[str]] = defaultdict(list)
            for a in firing:
                if matches_all(rule.source, a.labels):
                    index[tuple(a.labels.get(k, "") for k in rule.equal)].append(a.fingerprint)
            for fps in index.values():
                fps.sort()
            self._sources.append(index)

    def mutes(self, alert: Candidate) -> str | None:
        for rule, index in zip(self._rules, self._sources, strict=True):
            if not matches_all(rule.target, alert.labels):
                continue
            sources = index.get(tuple(alert.labels.get(k, "") for k in rule.equal), [])
            source = next((fp for fp in sources if fp != alert.fingerprint), None)
            if source is not None:
                return f"inhibited_by:{source}"
        return None


def silence_matchers(silence: Silence) -> tuple[Matcher, ...]:
    return tuple(matcher_of(m) for m in silence.matchers)


def silence_active(silence: Silence, now: datetime) -> bool:
    return silence.starts_at <= now < silence.ends_at


class Silencer:
    """Active silences (started, not yet ended); an expired one mutes nothing."""

    def __init__(self, silences: Sequence[Silence], now: datetime) -> None:
        self._active = [
            (str(s.id), silence_matchers(s)) for s in silences if silence_active(s, now)
        ]

    def mutes(self, alert: Candidate) -> str | None:
        for silence_id, matchers in self._active:
            if matches_all(matchers, alert.labels):
                return f"silence:{silence_id}"
        return None


def mute_reason(muters: Sequence[Muter], alert: Candidate) -> str | None:
    for muter in muters:
        reason = muter.mutes(alert)
        if reason is not None:
            return reason
    return None
