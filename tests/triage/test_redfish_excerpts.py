"""Pasted Redfish output (a BMC's SEL or event-log LogEntry as `curl` prints it: Message,
MessageId, Severity, SensorType, Created) classifies to its category and names the part
(excerpts/redfish_*.log with `# names:`), with the patterns the agent's redfish records meet."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sentinel.triage.classify import classify_text
from tests.triage.conftest import EXCERPTS, load_excerpt

REDFISH = sorted(EXCERPTS.glob("redfish_*.log"))
_NAMES = re.compile(r"^# names: (?P<part>.+)$", re.MULTILINE)


def test_the_excerpts_are_redfish_log_entries() -> None:
    assert len(REDFISH) >= 8
    for path in REDFISH:
        text = load_excerpt(path).text
        lines = [line for line in text.splitlines() if line.strip()]
        entries = [json.loads(text)] if text.startswith("{\n") else [json.loads(x) for x in lines]
        for entry in entries:
            assert entry["@odata.type"].startswith("#LogEntry."), path.name
            assert {"Id", "Created", "Message", "MessageId", "Severity"} <= set(entry), path.name


@pytest.mark.parametrize("path", REDFISH, ids=[p.stem for p in REDFISH])
def test_verdict_names_the_category_and_part(path: Path) -> None:
    excerpt = load_excerpt(path)
    verdict = classify_text(excerpt.text)
    assert verdict.category.value == excerpt.expect, verdict.reason
    named = _NAMES.search(path.read_text())
    if named:
        assert named.group("part") in verdict.reason, verdict.reason


def test_an_entry_that_says_all_is_well_names_no_cause() -> None:
    healthy = {
        "@odata.id": "/redfish/v1/Chassis/1U/Power#/PowerSupplies/1",
        "Name": "Power Supply Bay 2",
        "Status": {"State": "Enabled", "Health": "OK"},
    }
    assert classify_text(json.dumps(healthy)).category.value == "unknown"
