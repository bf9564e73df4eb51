"""Alerts as the pipeline sees them: label sets, matchers, fingerprints and the input model."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sentinel.inputs import NO_NUL

Labels = dict[str, str]
# Prometheus's label names; a value longer than this is not a label but a payload.
LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
LABEL_VALUE_MAX = 1024


# The same rules as a JSON schema, for the API's documentation.
LABELS_SCHEMA = {
    "type": "object",
    "propertyNames": {"pattern": f"^{LABEL_NAME.pattern}$"},
    "additionalProperties": {"type": "string", "maxLength": LABEL_VALUE_MAX, "pattern": NO_NUL},
}


def check_labels(labels: Labels) -> Labels:
    """Refuse a label set with a name Prometheus would not accept, an overlong value, or a
    value with a NUL character (which PostgreSQL cannot store)."""
    for name, value in labels.items():
        if not LABEL_NAME.fullmatch(name):
            raise ValueError(f"bad label name {name!r}: must match {LABEL_NAME.pattern}")
        if len(value) > LABEL_VALUE_MAX:
            raise ValueError(f"label {name!r} is longer than {LABEL_VALUE_MAX} characters")
        if "\x00" in value:
            raise ValueError(f"label {name!r} holds a NUL character")
    return labels


MatchOp = Literal["=", "!=", "=~", "!~"]

_MATCHER = re.compile(
    r"""^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>"(?:[^"\\]|\\.)*"|[^\s"]*)\s*$"""
)


@dataclass(frozen=True)
class Matcher:
    """One label condition, as in Alertmanager: ``name op value``; regexes are fully anchored."""

    name: str
    op: MatchOp
    value: str

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            # A pattern too deep or with a repetition too large fails outside re.error.
            except (re.error, OverflowError, RecursionError) as exc:
                raise ValueError(f"bad regular expression {self.value!r}: {exc}") from None

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``role="cause"``, ``host=~"node[0-9]+"``, ``severity!=info`` (quotes optional)."""
        m = _MATCHER.match(text)
        if m is None:
            raise ValueError(
                f'bad matcher {text!r}: expected name op "value" with op one of = != =~ !~'
            )
        value = m["value"]
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        return cls(m["name"], m["op"], value)  # type: ignore[arg-type]

    def matches(self, labels: Labels) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = _compiled(self.value).fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


_REGEX_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    compiled = _REGEX_CACHE.get(pattern)
    if compiled is None:
        compiled = _REGEX_CACHE[pattern] = re.compile(pattern)
    return compiled


def matcher_of(value: Any) -> Matcher:
    """A matcher from its string form or from ``{name, op, value}`` (op defaults to ``=``)."""
    if isinstance(value, Matcher):
        return value
    if isinstance(value, str):
        return Matcher.parse(value)
    if isinstance(value, dict):
        unknown = set(value) - {"name", "op", "value"}
        if unknown or "name" not in value or "value" not in value:
            raise ValueError("a matcher object needs 'name' and 'value' (and optionally 'op')")
        op = value.get("op", "=")
        if op not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"bad matcher op {op!r}: use one of = != =~ !~")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(value["name"])):
            raise ValueError(f"bad label name {value['name']!r}")
        return Matcher(str(value["name"]), op, str(value["value"]))
    raise ValueError(f"a matcher is a string like 'name=\"value\"' or an object, not {value!r}")


def matches_all(matchers: tuple[Matcher, ...] | list[Matcher], labels: Labels) -> bool:
    return all(m.matches(labels) for m in matchers)


def fingerprint(labels: Labels) -> str:
    """A stable 16-hex-digit identity of a label set (the alert's identity, as in Alertmanager)."""
    text = "\xff".join(f"{k}\xfe{labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class AlertIn(BaseModel):
    """An alert pushed into the pipeline: firing while ``ends_at`` is unset or in the future."""

    model_config = ConfigDict(extra="forbid")

    labels: Labels = Field(min_length=1)
    annotations: dict[str, Any] = Field(default_factory=dict)
    starts_at: datetime
    ends_at: datetime | None = None
    incident_id: uuid.UUID | None = None

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: Labels) -> Labels:
        return check_labels(value)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    def firing_at(self, now: datetime) -> bool:
        return self.ends_at is None or self.ends_at > now


DURATION_PART = r"(\d+(?:\.\d+)?)(ms|s|m|h|d)"
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> timedelta:
    """``30s``, ``5m``, ``4h``, ``1h30m``, ``2d`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        seconds = value
    elif isinstance(value, str):
        parts = re.findall(DURATION_PART, value.strip())
        if parts and "".join(n + u for n, u in parts) == value.strip():
            seconds = sum(float(n) * _SCALE[u] for n, u in parts)
    if seconds is None:
        raise ValueError(f"bad duration {value!r}: use e.g. 30s, 5m, 4h, 1h30m")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration {value!r} is too long") from None
