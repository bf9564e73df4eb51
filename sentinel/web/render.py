"""The dashboard's Jinja environment: autoescaped templates and the filters they share."""

from __future__ import annotations

from datetime import datetime
from functools import cache, lru_cache
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader
from markupsafe import Markup

from sentinel.triage.taxonomy import CATEGORIES, Category


def ago(when: datetime | None, now: datetime) -> str:
    """'42 s ago', '3 min ago', '5 h ago', '2 d ago': what someone paged at 3 a.m. reads."""
    if when is None:
        return "never"
    seconds = (now - when).total_seconds()
    suffix = "ago" if seconds >= 0 else "from now"
    seconds = abs(seconds)
    if seconds < 90:
        text = f"{seconds:.0f} s"
    elif seconds < 90 * 60:
        text = f"{seconds / 60:.0f} min"
    elif seconds < 48 * 3600:
        text = f"{seconds / 3600:.1f} h"
    else:
        text = f"{seconds / 86400:.1f} d"
    return f"{text} {suffix}"


def utc(when: datetime | None) -> str:
    return "—" if when is None else when.strftime("%Y-%m-%d %H:%M:%S UTC")


def segment(value: Any) -> str:
    # Host ids and job ids become one path segment each, whatever they contain.
    return quote(str(value), safe="")


def category_kind(category: str) -> str:
    """The colour family of a category badge: hardware, software, planned or unknown."""
    if category in ("planned", "unknown"):
        return category
    try:
        return "hardware" if CATEGORIES[Category(category)].hardware else "software"
    except ValueError:
        return "unknown"


@lru_cache(maxsize=4096)
def gpu_cells(cells: str) -> Markup:
    """One host's GPU squares; most hosts share a handful of patterns, so this is a lookup."""
    return Markup("").join(Markup('<i class="{}"></i>').format(c) for c in cells)


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("sentinel.web", "templates"),
        # Everything shown can come from a log line or an agent: escape all of it.
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        ago=ago, utc=utc, segment=segment, category_kind=category_kind, gpu_cells=gpu_cells
    )
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
