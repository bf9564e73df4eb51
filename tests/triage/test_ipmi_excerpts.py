"""Pasted `ipmitool sel elist` and `ipmitool sdr elist` output (excerpts/ipmitool_*.log)
classifies to the category the BMC's entry names: power supplies, fans and chassis
temperatures, GPU temperatures, memory ECC, processors, critical interrupts on the PCIe bus.
The agent's IPMI collector ships SEL entries in the same form, so both read alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.triage.classify import classify_text
from tests.triage.conftest import EXCERPTS, load_excerpt

IPMITOOL = sorted(EXCERPTS.glob("ipmitool_*.log"))


def test_sel_and_sdr_excerpts_cover_every_category_a_bmc_reports() -> None:
    assert len(IPMITOOL) >= 10
    assert any(p.name.startswith("ipmitool_sel_") for p in IPMITOOL)
    assert any(p.name.startswith("ipmitool_sdr_") for p in IPMITOOL)
    assert {load_excerpt(p).expect for p in IPMITOOL} >= {
        "power_supply",
        "server_chassis",
        "gpu_thermal",
        "system_memory",
        "cpu",
        "io_expansion_board",
    }


@pytest.mark.parametrize("path", IPMITOOL, ids=[p.stem for p in IPMITOOL])
def test_pasted_ipmitool_output_gives_the_category(path: Path) -> None:
    excerpt = load_excerpt(path)
    verdict = classify_text(excerpt.text)
    assert verdict.category.value == excerpt.expect, verdict.reason


def test_a_sensor_back_to_ok_is_no_finding() -> None:
    healthy = "\n".join(
        [
            "FAN1             | 30h | ok  | 29.1 | 6720 RPM",
            "GPU1 Temp        | 51h | ok  | 216.1 | 62 degrees C",
            "Inlet Temp       | 04h | ok  | 64.96 | 24 degrees C",
            "PS1 Status       | 64h | ok  | 10.1 | Presence detected",
        ]
    )
    assert classify_text(healthy).category.value == "unknown"
