"""The routing configuration: route tree, receivers and inhibit rules, validated from YAML.

A bad file is refused at start-up with a message naming the line at fault: the YAML is
composed into nodes first, so every value keeps the line it came from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from yaml.constructor import SafeConstructor

from sentinel.alerting.model import Labels, Matcher, matcher_of, matches_all, parse_duration

DEFAULT_ROUTES = Path(__file__).with_name("default_routes.yaml")

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
MatcherField = Annotated[Matcher, BeforeValidator(matcher_of)]
GROUP_BY_ALL = "..."


class ConfigError(ValueError):
    """A routing file that cannot be used; the message names the file and line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RouteSpec(_Strict):
    """One node of the route tree; unset timing and grouping fields inherit from the parent."""

    receiver: str | None = None
    matchers: list[MatcherField] = Field(default_factory=list)
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    continue_: bool = Field(False, alias="continue")
    routes: list[RouteSpec] = Field(default_factory=list)


class ReceiverSpec(_Strict):
    """Where a group's notifications go. Secrets (webhook URLs, keys) come from settings."""

    name: str = Field(min_length=1, max_length=128)
    type: Literal["slack", "pagerduty", "webhook", "alertmanager", "log"]
    send_resolved: bool = True
    # Optional per-receiver override of the URL from settings (e.g. a second Slack channel).
    url: str | None = None


class InhibitRuleSpec(_Strict):
    """A firing source alert mutes target alerts that agree with it on every ``equal`` label."""

    name: str | None = None
    source_matchers: list[MatcherField] = Field(min_length=1)
    target_matchers: list[MatcherField] = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)


class RoutingSpec(_Strict):
    route: RouteSpec
    receivers: list[ReceiverSpec] = Field(min_length=1)
    inhibit_rules: list[InhibitRuleSpec] = Field(default_factory=list)


@dataclass(frozen=True)
class Route:
    """A resolved route: inherited values filled in, with a stable id for group keys."""

    id: str
    receiver: str
    matchers: tuple[Matcher, ...]
    group_by: tuple[str, ...]
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    continue_: bool
    routes: tuple[Route, ...] = field(default=())

    def match(self, labels: Labels) -> list[Route]:
        """The routes an alert goes to, depth first, as Alertmanager's ``Route.Match``."""
        if not matches_all(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            hits = child.match(labels)
            found.extend(hits)
            if hits and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Labels) -> Labels:
        if GROUP_BY_ALL in self.group_by:
            return dict(labels)
        return {k: labels[k] for k in self.group_by if k in labels}

    def group_key(self, labels: Labels) -> str:
        """Readable like Alertmanager's (``route:{labels}``), hashed when it would not fit."""
        shown = ",".join(f'{k}="{v}"' for k, v in sorted(self.group_labels(labels).items()))
        key = f"{self.id}:{{{shown}}}"
        if len(key) > 200:
            key = key[:180] + "~" + hashlib.sha256(key.encode()).hexdigest()[:16]
        return key

    def walk(self) -> list[Route]:
        return [self, *(r for child in self.routes for r in child.walk())]


@dataclass(frozen=True)
class InhibitRule:
    name: str
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]


@dataclass(frozen=True)
class RoutingConfig:
    root: Route
    receivers: dict[str, ReceiverSpec]
    inhibit_rules: tuple[InhibitRule, ...]
    source: str

    def routes_for(self, labels: Labels) -> list[Route]:
        return self.root.match(labels)

    def route(self, route_id: str) -> Route | None:
        return next((r for r in self.root.walk() if r.id == route_id), None)


# --- loading ---------------------------------------------------------------------------

Path_ = tuple[str | int, ...]


def _compose(text: str, source: str) -> tuple[Any, dict[Path_, int]]:
    """Parse YAML into plain data plus the 1-based line of every key and list item."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{line}: not valid YAML: {exc.problem}") from None
    if node is None:
        raise ConfigError(f"{source}:1: the file is empty")
    lines: dict[Path_, int] = {}

    def visit(n: yaml.Node, path: Path_) -> None:
        lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                name = str(key.value)
                visit(value, (*path, name))
                lines[(*path, name)] = key.start_mark.line + 1
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                visit(item, (*path, i))

    visit(node, ())
    try:
        data = SafeConstructor().construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ConfigError(f"{source}:{(mark.line + 1) if mark else '?'}: {exc.problem}") from None
    return data, lines


def _line_of(lines: dict[Path_, int], loc: Path_) -> int:
    path = tuple("continue" if p == "continue_" else p for p in loc)
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def _where(loc: Path_) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _resolve(spec: RouteSpec, parent: Route | None, route_id: str) -> Route:
    def pick(own: Any, inherited: Any) -> Any:
        return own if own is not None else inherited

    receiver = pick(spec.receiver, parent.receiver if parent else None)
    route = Route(
        id=route_id,
        receiver=receiver,
        matchers=tuple(spec.matchers),
        group_by=tuple(pick(spec.group_by, parent.group_by if parent else ())),
        group_wait=pick(spec.group_wait, parent.group_wait if parent else timedelta(seconds=30)),
        group_interval=pick(
            spec.group_interval, parent.group_interval if parent else timedelta(minutes=5)
        ),
        repeat_interval=pick(
            spec.repeat_interval, parent.repeat_interval if parent else timedelta(hours=4)
        ),
        continue_=spec.continue_,
    )
    children = tuple(_resolve(c, route, f"{route_id}/{i}") for i, c in enumerate(spec.routes))
    return Route(**{**route.__dict__, "routes": children})


def parse_routing(text: str, source: str = "<routes>") -> RoutingConfig:
    data, lines = _compose(text, source)
    try:
        spec = RoutingSpec.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{source}:{_line_of(lines, tuple(e['loc']))}: {_where(tuple(e['loc']))}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors(include_url=False)
        ]
        raise ConfigError("\n".join(problems)) from None

    def fail(path: Path_, message: str) -> ConfigError:
        return ConfigError(f"{source}:{_line_of(lines, path)}: {_where(path)}: {message}")

    names: dict[str, ReceiverSpec] = {}
    for i, receiver in enumerate(spec.receivers):
        if receiver.name in names:
            raise fail(("receivers", i, "name"), f"receiver {receiver.name!r} is defined twice")
        names[receiver.name] = receiver
    if spec.route.receiver is None:
        raise fail(("route",), "the root route needs a receiver")
    if spec.route.matchers:
        raise fail(("route", "matchers"), "the root route matches every alert: no matchers")

    def check(route: RouteSpec, path: Path_) -> None:
        if route.receiver is not None and route.receiver not in names:
            raise fail((*path, "receiver"), f"no receiver named {route.receiver!r}")
        for i, child in enumerate(route.routes):
            check(child, (*path, "routes", i))

    check(spec.route, ("route",))
    rules = tuple(
        InhibitRule(
            name=r.name or f"inhibit_rules[{i}]",
            source=tuple(r.source_matchers),
            target=tuple(r.target_matchers),
            equal=tuple(r.equal),
        )
        for i, r in enumerate(spec.inhibit_rules)
    )
    return RoutingConfig(_resolve(spec.route, None, "root"), names, rules, source)


def load_routing(path: Path | None = None) -> RoutingConfig:
    """Read and validate a routing file (the packaged default when ``path`` is None)."""
    target = path or DEFAULT_ROUTES
    try:
        text = target.read_text()
    except OSError as exc:
        raise ConfigError(f"{target}: cannot read the routing file: {exc}") from None
    return parse_routing(text, str(target))
