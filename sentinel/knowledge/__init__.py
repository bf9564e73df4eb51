"""What a log line means, as data: the XID catalog and the log patterns, loaded and validated.

One knowledge base for both sides: the agent ships every line a pattern matches, and triage
reads the same patterns into signals. Only pydantic, PyYAML, the standard library and the wire
contract are imported here, so a GPU host loads it without the service's dependencies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sentinel.knowledge.keywords import Keywords, required_keywords
from sentinel.knowledge.matcher import Matcher
from sentinel.knowledge.taxonomy import Category
from sentinel.wire.severity import Severity

Role = Literal["cause", "symptom", "context"]
XidCause = Literal["application", "hardware", "driver", "either"]
# NVIDIA's names for the immediate action, as its Xid catalog spells them.
XidAction = Literal[
    "RESTART_APP",
    "RESET_GPU",
    "RESTART_BM",
    "RESTART_VM",
    "WORKFLOW_XID_45",
    "WORKFLOW_XID_48",
    "WORKFLOW_NVLINK_ERR",
    "WORKFLOW_NVLINK5_ERR",
    "CONTACT_SUPPORT",
    "CHECK_MECHANICALS",
    "CHECK_UVM",
    "UPDATE_SWFW",
    "XID_154_EVAL",
    "IGNORE",
]

FAMILIES: Final[frozenset[str]] = frozenset(
    {
        "kernel_xid", "gsp", "nvidia_smi", "nvswitch", "dcgm", "cuda", "nccl", "pytorch",
        "launcher", "python_traceback", "python", "oom", "mlx5", "ib", "nic", "edac", "mce", "nvme",
        "block_io", "filesystem", "storage", "dependency", "thermal", "power", "chassis",
        "pcie", "host", "slurm", "nhc", "sdc", "maintenance",
    }
)  # fmt: skip

# Named groups a pattern may capture; signals and rules read exactly these.
GROUPS: Final[frozenset[str]] = frozenset(
    {
        "pci", "gpu", "rank", "xid", "seqnum", "optype", "peer", "host", "dev", "status",
        "timeout_ms", "elapsed_ms", "exitcode", "iface", "port", "driver", "server", "event",
        "dimm", "cpu", "bank",
    }
)  # fmt: skip

KNOWLEDGE_DIR: Final = Path(__file__).parent

_Catalog = TypeVar("_Catalog", bound=BaseModel)


class KnowledgeError(ValueError):
    """A knowledge file is missing, malformed, or has an invalid entry (named in the message)."""


def require_unique(what: str, values: Sequence[int | str]) -> None:
    """Refuse a table whose keys repeat (a validator's ValueError, naming them)."""
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"duplicate {what}: {duplicates}")


class XidEntry(BaseModel):
    """One XID: what NVIDIA says it is and does, and what triage concludes from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: int = Field(ge=1, le=999)
    mnemonic: str = Field(min_length=1)
    meaning: str = Field(min_length=1)
    action: XidAction
    cause: XidCause
    category: Category
    severity: Severity
    memory: Literal["hbm", "sram", "none"] = "none"
    secondary: bool = False


class XidCatalog(BaseModel):
    """All known XIDs, looked up by code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    xids: tuple[XidEntry, ...]

    @model_validator(mode="after")
    def _codes_are_unique(self) -> XidCatalog:
        require_unique("XID codes", [x.code for x in self.xids])
        return self

    @cached_property
    def by_code(self) -> Mapping[int, XidEntry]:
        return {x.code: x for x in self.xids}

    def get(self, code: int) -> XidEntry | None:
        return self.by_code.get(code)


class Refinement(BaseModel):
    """Pick a more precise category from a captured group (e.g. which driver saw a PCIe error)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: str
    categories: dict[str, Category]

    def category_for(self, value: str) -> Category | None:
        lowered = value.lower()
        for prefix, category in self.categories.items():
            if lowered.startswith(prefix.lower()):
                return category
        return None


class PatternSpec(BaseModel):
    """One log pattern: the regex and what a match means for triage."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    family: str
    regex: str
    role: Role
    category: Category | None = None
    severity: Severity
    kind: Literal["log", "xid"] = "log"
    ignore_case: bool = False
    description: str = ""
    refine: Refinement | None = None
    # Real lines that must match: checked at load, so a bad edit fails loudly.
    examples: tuple[str, ...] = ()
    # Lines that must not match (near misses that would cause false alarms).
    counter_examples: tuple[str, ...] = ()

    @field_validator("family")
    @classmethod
    def _family_is_known(cls, value: str) -> str:
        if value not in FAMILIES:
            raise ValueError(f"unknown family {value!r}; known: {sorted(FAMILIES)}")
        return value

    @model_validator(mode="after")
    def _regex_is_usable(self) -> PatternSpec:
        try:
            compiled = re.compile(self.regex, re.IGNORECASE if self.ignore_case else 0)
        except re.error as exc:
            raise ValueError(f"regex does not compile: {exc}") from exc
        unknown = set(compiled.groupindex) - GROUPS
        if unknown:
            raise ValueError(f"unknown named groups {sorted(unknown)}; allowed: {sorted(GROUPS)}")
        if self.refine and self.refine.group not in compiled.groupindex:
            raise ValueError(f"refine group {self.refine.group!r} is not captured by the regex")
        if self.kind == "xid" and "xid" not in compiled.groupindex:
            raise ValueError("an xid pattern must capture the 'xid' group")
        keywords = required_keywords(self.regex)
        if keywords is None:
            # Such a pattern would be tried on every line every agent reads.
            raise ValueError(
                "the regex has no literal word (of 3 characters or more) that every match "
                "contains; the keyword prefilter needs one"
            )
        for example in self.examples:
            if not compiled.search(example):
                raise ValueError(f"example does not match: {example!r}")
            if not any(word in example.lower() for word in keywords):
                raise ValueError(f"keyword prefilter {sorted(keywords)} would skip {example!r}")
        for example in self.counter_examples:
            if compiled.search(example):
                raise ValueError(f"counter-example matches: {example!r}")
        return self

    @cached_property
    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.regex, re.IGNORECASE if self.ignore_case else 0)

    @cached_property
    def keywords(self) -> Keywords:
        """Words one of which every matching line contains (lower case)."""
        keywords = required_keywords(self.regex)
        assert keywords is not None  # checked when the pattern was loaded
        return keywords


class PatternCatalog(BaseModel):
    """All log patterns, in priority order (within a family the first match wins)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    patterns: tuple[PatternSpec, ...]

    @model_validator(mode="after")
    def _names_are_unique(self) -> PatternCatalog:
        require_unique("pattern names", [p.name for p in self.patterns])
        return self

    @cached_property
    def by_name(self) -> Mapping[str, PatternSpec]:
        return {p.name: p for p in self.patterns}

    @cached_property
    def matcher(self) -> Matcher:
        return Matcher(self.patterns)


@dataclass(frozen=True)
class Knowledge:
    """Everything the classifier knows, loaded once and shared."""

    xids: XidCatalog
    patterns: PatternCatalog


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KnowledgeError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise KnowledgeError(f"{path}: not valid YAML: {exc}") from exc


def _entries(path: Path, key: str) -> Sequence[Any]:
    document = _read_yaml(path)
    if not isinstance(document, dict) or not isinstance(document.get(key), list):
        raise KnowledgeError(f"{path}: expected a mapping with a list under {key!r}")
    entries: Sequence[Any] = document[key]
    return entries


def _entry_label(entry: Any, index: int, name_key: str) -> str:
    name = entry.get(name_key) if isinstance(entry, dict) else None
    return f"entry #{index} ({name_key}={name!r})"


def _load_catalog(
    path: Path, catalog: type[_Catalog], key: str, entry: type[BaseModel], noun: str, name_key: str
) -> _Catalog:
    """A catalog of the entries listed under `key`; a bad entry raises KnowledgeError naming it."""
    entries = []
    for index, raw in enumerate(_entries(path, key)):
        try:
            entries.append(entry.model_validate(raw))
        except ValidationError as exc:
            label = _entry_label(raw, index, name_key)
            raise KnowledgeError(f"{path}: {noun} {label} is invalid: {exc}") from exc
    try:
        return catalog.model_validate({key: tuple(entries)})
    except ValidationError as exc:
        raise KnowledgeError(f"{path}: {exc}") from exc


def load_xid_catalog(path: Path | str = KNOWLEDGE_DIR / "xid.yaml") -> XidCatalog:
    """Load and validate an XID catalog; a bad entry raises KnowledgeError naming it."""
    return _load_catalog(Path(path), XidCatalog, "xids", XidEntry, "XID", "code")


def load_pattern_catalog(path: Path | str = KNOWLEDGE_DIR / "patterns.yaml") -> PatternCatalog:
    """Load and validate log patterns; a bad entry raises KnowledgeError naming it."""
    return _load_catalog(Path(path), PatternCatalog, "patterns", PatternSpec, "pattern", "name")


def load_knowledge(
    xid_path: Path | str | None = None, patterns_path: Path | str | None = None
) -> Knowledge:
    """Load both knowledge files (the packaged ones unless paths are given)."""
    return Knowledge(
        xids=load_xid_catalog(xid_path or KNOWLEDGE_DIR / "xid.yaml"),
        patterns=load_pattern_catalog(patterns_path or KNOWLEDGE_DIR / "patterns.yaml"),
    )


@lru_cache(maxsize=1)
def default_knowledge() -> Knowledge:
    """The packaged knowledge, loaded on first use and cached for the process."""
    return load_knowledge()
