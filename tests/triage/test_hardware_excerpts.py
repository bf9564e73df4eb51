"""Pasted output of the hardware-error tools (mcelog, ras-mc-ctl, EDAC sysfs, ibstat,
ibv_devinfo, perfquery, InfiniBand sysfs, devlink health) classifies to its category and
names the part: the DIMM, the CPU and bank, the HCA port (excerpts/*.log with `# names:`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sentinel.triage.classify import classify_text
from tests.triage.conftest import EXCERPTS, load_excerpt

_TOOLS = ("mcelog_", "ras_mc_ctl_", "rasdaemon_", "edac_sysfs_", "ibstat_", "ibv_devinfo_",
          "perfquery_", "ib_sysfs_", "devlink_")  # fmt: skip
HARDWARE = sorted(p for p in EXCERPTS.glob("*.log") if p.name.startswith(_TOOLS))
_NAMES = re.compile(r"^# names: (?P<part>.+)$", re.MULTILINE)


def test_every_tool_has_excerpts() -> None:
    assert len(HARDWARE) >= 20
    for prefix in _TOOLS:
        assert any(p.name.startswith(prefix) for p in HARDWARE), prefix


@pytest.mark.parametrize("path", HARDWARE, ids=[p.stem for p in HARDWARE])
def test_verdict_names_the_part(path: Path) -> None:
    excerpt = load_excerpt(path)
    verdict = classify_text(excerpt.text)
    assert verdict.category.value == excerpt.expect, verdict.reason
    named = _NAMES.search(path.read_text())
    if named:
        assert named.group("part") in verdict.reason, verdict.reason


def test_an_uncorrected_mcelog_record_outranks_a_corrected_one() -> None:
    corrected = load_excerpt(EXCERPTS / "mcelog_ce_memory.log")
    uncorrected = load_excerpt(EXCERPTS / "mcelog_uc_memory.log")
    weak, strong = classify_text(corrected.text), classify_text(uncorrected.text)
    assert weak.rule == "MostSevereRemainingCauseWins"
    assert strong.rule == "BlameHostHardwareOverPeerTimeouts"
    assert strong.confidence > weak.confidence
