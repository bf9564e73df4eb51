"""DCGM's failure reasons and dcgmi's reports, read as triage reads a log line.

`dcgm.yaml` says what each DCGM_FR code and each health system means (category, part,
severity, NVIDIA's action). `readable` turns what `dcgmi health -c` and `dcgmi diag` print
(their tables, or their `-j` JSON) into one line per incident, e.g.

    dcgmi health: GPU 0: PCIe system: Warning: Detected more than 8 PCIe replays per minute ...
    dcgmi diag: memory: GPU 3: Fail: DCGM_FR_ROW_REMAP_FAILURE: GPU 3 had uncorrectable ...

which is the form the agent's DCGM collector ships and the `dcgm_*` patterns read, so a pasted
report and a live record are classified alike. Shared by the agent and triage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sentinel.knowledge import KNOWLEDGE_DIR, KnowledgeError, require_unique
from sentinel.knowledge.taxonomy import Category
from sentinel.wire.severity import Severity

NvidiaSeverity = Literal["MONITOR", "ISOLATE", "TRIAGE", "CONFIG", "RESET", "UNKNOWN"]

# A printf conversion in a DCGM message format, and what it may stand for.
_CONVERSION: Final = re.compile(r"%[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|z)?([diuxXeEfgsc%])")
_NUMBER: Final = r"[-+]?(?:0x[0-9a-fA-F]+|[\d.]+(?:e[-+]?\d+)?)"
# A message format must say this much besides its numbers to be recognised by it alone.
_MIN_LITERAL: Final = 16
_CODE_NAME: Final = re.compile(r"\bDCGM_FR_[A-Z0-9_]+\b")
_ERROR_ID: Final = re.compile(r"\berror_id (\d+)\b")
_STATUS: Final[Mapping[str, Severity]] = {
    "Failure": Severity.ERROR,
    "Fail": Severity.ERROR,
    "Warning": Severity.WARNING,
    "Warn": Severity.WARNING,
}


class DcgmCode(BaseModel):
    """One DCGM_FR code: NVIDIA's words for it, and what triage concludes from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: int = Field(ge=0)
    name: str = Field(pattern=r"^DCGM_FR_[A-Z0-9_]+$")
    nvidia_severity: NvidiaSeverity
    nvidia_category: str
    category: Category | None
    part: str | None
    severity: Severity
    summary: str
    message: str = ""
    action: str = ""

    @cached_property
    def message_regex(self) -> re.Pattern[str] | None:
        """The message format as a regex, when it says enough to be recognised by."""
        literal = _CONVERSION.sub("", self.message).strip(" .")
        if len(literal) < _MIN_LITERAL or "%s" in self.message[:2]:
            return None
        parts: list[str] = []
        end = 0
        for match in _CONVERSION.finditer(self.message):
            parts.append(_spaced(self.message[end : match.start()]))
            kind = match.group(1)
            parts.append("%" if kind == "%" else ".+?" if kind in "sc" else _NUMBER)
            end = match.end()
        parts.append(_spaced(self.message[end:].rstrip(" .")))
        return re.compile("".join(parts))


def _spaced(text: str) -> str:
    # dcgmi wraps long messages over table rows: a space may be lost or doubled.
    return r"\s*".join(re.escape(word) for word in text.split(" "))


class DcgmSystem(BaseModel):
    """A health-watch system as dcgmi names it ("PCIe system", "NVLINK system"...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    category: Category | None
    part: str | None


class DcgmReading(BaseModel):
    """What one dcgmi line means: the category (None: not a fault), part, severity, code."""

    model_config = ConfigDict(frozen=True)

    category: Category | None
    part: str | None
    severity: Severity
    code: DcgmCode | None = None


class DcgmCatalog(BaseModel):
    """The DCGM_FR codes and health systems, looked up by name, number or message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    systems: tuple[DcgmSystem, ...]
    codes: tuple[DcgmCode, ...]

    @model_validator(mode="after")
    def _unique(self) -> DcgmCatalog:
        require_unique("codes", [str(c.code) for c in self.codes])
        require_unique("names", [c.name for c in self.codes])
        require_unique("systems", [s.name for s in self.systems])
        return self

    @cached_property
    def by_name(self) -> Mapping[str, DcgmCode]:
        return {c.name: c for c in self.codes}

    @cached_property
    def by_code(self) -> Mapping[int, DcgmCode]:
        return {c.code: c for c in self.codes}

    @cached_property
    def by_system(self) -> Mapping[str, DcgmSystem]:
        return {s.name: s for s in self.systems}

    @cached_property
    def _formats(self) -> tuple[tuple[re.Pattern[str], DcgmCode], ...]:
        # Several codes share a format ("Detected %ld %s for GPU %u"): such a message names
        # none of them.
        counts: dict[str, int] = {}
        for code in self.codes:
            counts[code.message] = counts.get(code.message, 0) + 1
        return tuple(
            (regex, code)
            for code in self.codes
            if counts[code.message] == 1 and (regex := code.message_regex) is not None
        )

    def find(self, text: str) -> DcgmCode | None:
        """The code a line names: by its name, its `error_id`, else by its message."""
        named = _CODE_NAME.search(text)
        if named and named.group(0) in self.by_name:
            return self.by_name[named.group(0)]
        number = _ERROR_ID.search(text)
        if number and int(number.group(1)) in self.by_code:
            return self.by_code[int(number.group(1))]
        return next((code for regex, code in self._formats if regex.search(text)), None)

    def read(
        self, text: str, *, system: str | None, entity: str | None, status: str | None
    ) -> DcgmReading:
        """What a dcgmi line means. The code decides; else the health system (an NVSwitch's
        incidents, which dcgmi calls "Internal error", by their entity). The tool's own
        verdict (Failure, Warning) sets the least severity of a fault."""
        code = self.find(text)
        least = _STATUS.get(status or "", Severity.INFO)
        if code is not None:
            category, part, severity = code.category, code.part, code.severity
        else:
            known = self.by_system.get(system or "")
            category, part = (known.category, known.part) if known else (None, None)
            if (entity or "").startswith("Switch"):
                category, part = Category.IO_EXPANSION_BOARD, "nvswitch"
            severity = least if category else Severity.INFO
        if category is not None and least.rank > severity.rank:
            severity = least
        return DcgmReading(category=category, part=part, severity=severity, code=code)


_HEALTH_LINE: Final = re.compile(
    r"^dcgmi health: (?P<entity>[A-Za-z_]+ \d+): (?P<system>[\w ]+?): (?P<status>Warning|Failure):"
)
_DIAG_LINE: Final = re.compile(
    r"^dcgmi diag: [\w .-]+?:(?: (?P<entity>[A-Za-z_]+ \d+):)? (?P<status>Fail|Warn):"
    r"(?: (?P<code>DCGM_FR_\w+|error_id \d+):)?"
)


def incident(line: str) -> tuple[str, Mapping[str, str | None]] | None:
    """A dcgmi line's identity across reports (what fails where, not the counts in its
    message) and its fields (entity, system, status), or None for another line."""
    match = _HEALTH_LINE.match(line) or _DIAG_LINE.match(line)
    return (match.group(0), match.groupdict()) if match else None


def load_dcgm_catalog(path: Path | str = KNOWLEDGE_DIR / "dcgm.yaml") -> DcgmCatalog:
    """Load and validate the DCGM table; a bad entry raises KnowledgeError naming it."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise KnowledgeError(f"{path}: cannot read: {exc}") from exc
    try:
        return DcgmCatalog.model_validate(document)
    except ValidationError as exc:
        raise KnowledgeError(f"{path}: {exc}") from exc


@lru_cache(maxsize=1)
def default_dcgm_catalog() -> DcgmCatalog:
    return load_dcgm_catalog()


# ---------------------------------------------------------------- dcgmi's reports as lines

_MARKERS: Final = ("Health Monitor Report", "DCGM Diagnostic", "| Diagnostic ")
_DIAG_RESULTS: Final = ("Pass", "Fail", "Warn", "Skip", "Not Run")
_ROW: Final = re.compile(r"^\|\s(?P<left>.*?)\s\|\s(?P<right>.*?)\s*\|\s*$")
_ENTITY_RESULT: Final = re.compile(r"^(?P<group>[A-Za-z_]+)(?P<id>\d+): (?P<result>[A-Za-z ]+)$")
_WARNING_LABEL: Final = re.compile(r"^Warning(?:: (?P<group>[A-Za-z_]+)(?P<id>\d+))?$")


def health_line(entity: str, system: str, health: str, message: str) -> str:
    return f"dcgmi health: {entity}: {system}: {health}: {message.strip()}"


def diag_line(test: str, entity: str | None, status: str, message: str, code: str | None) -> str:
    where = f" {entity}:" if entity else ""
    named = f" {code}:" if code else ""
    return f"dcgmi diag: {test}:{where} {status}:{named} {message.strip()}"


def health_lines(document: Mapping[str, Any]) -> list[str]:
    """One line per system with incidents, from `dcgmi health -c -j`."""
    lines = []
    for group, section in _children(document.get("body")).items():
        for entity, node in _children(section).items():
            errors = _children(_children(node).get("Errors"))
            for system, incident in errors.items():
                message = " ".join(str(part) for part in incident.get("overflow") or [])
                health = str(incident.get("value", ""))
                lines.append(health_line(f"{group} {entity}", system, health, message))
    return lines


def diag_lines(document: Mapping[str, Any], catalog: DcgmCatalog | None = None) -> list[str]:
    """One line per error of a failed or warned test, from `dcgmi diag -j`."""
    catalog = catalog or default_dcgm_catalog()
    lines = []
    for category in document.get("DCGM Diagnostic", {}).get("test_categories") or []:
        for test in category.get("tests") or []:
            name = str(test.get("name", "?"))
            results = test.get("results") or []
            if not results and test.get("test_summary"):
                results = [test["test_summary"]]
            for result in results:
                status = str(result.get("status", ""))
                group, number = result.get("entity_group"), result.get("entity_id")
                entity = f"{group} {number}" if group is not None else None
                for warning in result.get("warnings") or []:
                    known = catalog.by_code.get(warning.get("error_id", -1))
                    code = known.name if known else f"error_id {warning.get('error_id')}"
                    lines.append(diag_line(name, entity, status, str(warning["warning"]), code))
    return lines


def _children(node: Any) -> dict[str, Any]:
    if not isinstance(node, dict):
        return {}
    children = node.get("children", node)
    return children if isinstance(children, dict) else {}


def readable(text: str) -> str:
    """`text` with any dcgmi health or diag report in it (JSON or table) written one line per
    incident; anything else is returned as it was."""
    if not any(marker in text for marker in _MARKERS):
        return text
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            document = json.loads(text[start : end + 1])
        except ValueError:
            document = None
        if isinstance(document, dict):
            diag = "DCGM Diagnostic" in document
            lines = diag_lines(document) if diag else health_lines(document)
            return "\n".join([text[:start].rstrip(), *lines, text[end + 1 :].lstrip()]).strip()
    return "\n".join(_table_lines(text.splitlines()))


def _table_lines(lines: Sequence[str]) -> Iterator[str]:
    """The rows of dcgmi's tables, read as a tree (health) or a test list (diag)."""
    health = any("Health Monitor Report" in line for line in lines)
    reader = _HealthTable() if health else _DiagTable()
    for line in lines:
        row = _ROW.match(line)
        if row is None:
            if not line.startswith("+") and not line.startswith("|-"):
                yield from reader.flush()
                yield line
            continue
        yield from reader.row(row.group("left"), row.group("right").rstrip())
    yield from reader.flush()


class _HealthTable:
    """`dcgmi health -c`: section (GPU), entity (-> 0), Errors, system (-> PCIe system) with
    its health and the message on the rows below it."""

    def __init__(self) -> None:
        self.group = ""
        self.entity = ""
        self.system: tuple[str, str] | None = None
        self.message: list[str] = []

    def row(self, left: str, right: str) -> Iterator[str]:
        label, right = left.strip(), right.strip()
        if not label:
            if self.system is not None and right:
                self.message.append(right)
            return
        yield from self.flush()
        level = left.index("->") // 3 + 1 if label.startswith("->") else 0
        name = label.removeprefix("->").strip()
        if level == 0:
            self.group = name
        elif level == 1:
            self.entity = name
        elif level == 3:
            self.system = (name, right)

    def flush(self) -> Iterator[str]:
        if self.system is not None:
            system, health = self.system
            yield health_line(f"{self.group} {self.entity}", system, health, " ".join(self.message))
        self.system, self.message = None, []


class _DiagTable:
    """`dcgmi diag`: a test and its result, each entity's result, and `Warning: GPU0` rows
    whose message dcgmi cuts every 45 characters (mid-word: the pieces are joined as they are)."""

    def __init__(self) -> None:
        self.test = ""
        self.status = ""
        self.entity: str | None = None
        self.message: list[str] | None = None
        self.about: str | None = None

    def row(self, left: str, right: str) -> Iterator[str]:
        label = left.strip()
        if not label:
            entity = _ENTITY_RESULT.match(right)
            if entity and entity.group("result") in _DIAG_RESULTS:
                yield from self.flush()
                self.entity = f"{entity.group('group')} {entity.group('id')}"
                self.status = entity.group("result")
            elif self.message is not None:
                self.message.append(right)
            return
        yield from self.flush()
        warning = _WARNING_LABEL.match(label)
        if warning:
            self.message = [right]
            if warning.group("group"):
                self.about = f"{warning.group('group')} {warning.group('id')}"
            else:
                self.about = self.entity
        elif right.split(" - ")[0] in _DIAG_RESULTS:
            self.test, self.status, self.entity = label, right.split(" - ")[0], None

    def flush(self) -> Iterator[str]:
        if self.message is not None and self.status in ("Fail", "Warn"):
            yield diag_line(self.test, self.about, self.status, "".join(self.message), None)
        self.message, self.about = None, None
