"""Log patterns as data: YAML files loaded into validated pydantic models.

Each pattern names literal ``keywords`` (one must appear in the line) and a ``regex``. The
keywords are joined into one prefilter so that the common case, a line that matches
nothing, costs one regex search instead of one per pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

HERE = Path(__file__).parent
KERNEL_PATTERNS = HERE / "kernel.yaml"
TRAINING_PATTERNS = HERE / "training.yaml"

Severity = Literal["critical", "error", "warning", "info"]


class Pattern(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    family: str = Field(pattern=r"^[a-z0-9_]+$")
    severity: Severity
    keywords: list[str] = Field(min_length=1)
    regex: str
    emit: Literal["log", "xid"] = "log"
    source: Literal["kernel", "nccl", "application"] = "kernel"
    examples: list[str] = Field(default_factory=list, description="Lines that must match.")
    counter_examples: list[str] = Field(
        default_factory=list, description="Lines that must not match."
    )

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"bad regex: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _xid_groups(self) -> Pattern:
        if self.emit == "xid" and "xid" not in re.compile(self.regex).groupindex:
            raise ValueError(f"{self.name}: an xid pattern needs a (?P<xid>...) group")
        return self

    @property
    def compiled(self) -> re.Pattern[str]:
        return _compile(self.regex)


_cache: dict[str, re.Pattern[str]] = {}


def _compile(regex: str) -> re.Pattern[str]:
    if regex not in _cache:
        _cache[regex] = re.compile(regex)
    return _cache[regex]


class PatternFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patterns: list[Pattern] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> PatternFile:
        names = [p.name for p in self.patterns]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"duplicate pattern names: {sorted(duplicates)}")
        return self


@dataclass(frozen=True)
class Match:
    pattern: Pattern
    groups: dict[str, str]


class Matcher:
    """First matching pattern wins, in file order: put the specific before the general."""

    def __init__(self, patterns: list[Pattern]) -> None:
        self.patterns = patterns
        self.keywords = sorted({k for p in patterns for k in p.keywords})
        self._prefilter = re.compile("|".join(re.escape(k) for k in self.keywords))
        self._compiled = [(p, p.compiled, tuple(p.keywords)) for p in patterns]

    def match(self, line: str) -> Match | None:
        if self._prefilter.search(line) is None:
            return None
        for pattern, regex, keywords in self._compiled:
            if not any(k in line for k in keywords):
                continue
            found = regex.search(line)
            if found is not None:
                groups = {k: v for k, v in found.groupdict().items() if v is not None}
                return Match(pattern, groups)
        return None


def load_patterns(path: Path) -> PatternFile:
    return PatternFile.model_validate(yaml.safe_load(path.read_text()))


def normalize_pci(raw: str) -> str:
    """``PCI:0000:3b:00`` or ``0000:3b:00.0`` -> NVML's ``00000000:3B:00.0``."""
    text = raw.removeprefix("PCI:").strip()
    parts = text.split(":")
    if len(parts) == 2:
        parts.insert(0, "0")
    domain, bus, rest = parts[0], parts[1], parts[2]
    device, _, function = rest.partition(".")
    return f"{int(domain, 16):08X}:{int(bus, 16):02X}:{int(device, 16):02X}.{function or '0'}"
