"""`sentinel classify` on pasted output of the hardware and scheduler tools (issue 16): ipmitool,
Redfish SEL JSON, mcelog, ras-mc-ctl, dcgmi health/diag, nvidia-smi -q, ibstat and `scontrol
show node`. Each excerpt in tests/triage/excerpts/ of those tools classifies to the category
its header expects through the command's own path, a healthy one stays `unknown`, and a
section-per-part tool's fault is named by its section (the GPU of nvidia-smi -q, the HCA port
of ibstat)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sentinel.triage.classify import classify_text
from sentinel.triage.cli import app
from tests.triage.conftest import EXCERPTS, load_excerpt

# Each tool family by the names its excerpts' files start with.
FAMILIES: dict[str, tuple[str, ...]] = {
    "ipmitool": ("ipmitool_",),
    "Redfish SEL JSON": ("redfish_",),
    "mcelog": ("mcelog_",),
    "ras-mc-ctl": ("ras_mc_ctl_",),
    "dcgmi health/diag": ("dcgmi_health_", "dcgmi_diag_"),
    "nvidia-smi -q": ("nvidia_smi_q_",),
    "ibstat": ("ibstat_",),
    "scontrol show node": ("scontrol_node_",),
}
PASTED = {
    family: sorted(p for p in EXCERPTS.glob("*.log") if p.name.startswith(prefixes))
    for family, prefixes in FAMILIES.items()
}
ALL = sorted(p for paths in PASTED.values() for p in paths)
runner = CliRunner()


def test_there_are_at_least_40_pasted_tool_excerpts_of_every_family() -> None:
    counts = {family: len(paths) for family, paths in PASTED.items()}
    assert sum(counts.values()) >= 40, counts
    assert all(n >= 3 for n in counts.values()), counts


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_sentinel_classify_gives_the_expected_category(path: Path) -> None:
    excerpt = load_excerpt(path)
    result = runner.invoke(app, [str(path), "--json"])
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.output)
    assert verdict["category"] == excerpt.expect, verdict["reason"]


def test_healthy_output_of_every_kind_stays_unknown() -> None:
    healthy = [
        "ibstat_healthy",
        "ibstat_eight_hcas_healthy",
        "ras_mc_ctl_no_errors",
        "nvidia_smi_q_healthy",
        "scontrol_node_allocated_healthy",
    ]
    for name in healthy:
        excerpt = load_excerpt(EXCERPTS / f"{name}.log")
        assert excerpt.expect == "unknown"
        assert classify_text(excerpt.text).category.value == "unknown", name


def test_the_installed_command_classifies_one_excerpt_of_each_family() -> None:
    """The `sentinel` console script, as a user runs it, on the first excerpt of each family
    that names a fault."""
    command = Path(sys.executable).with_name("sentinel")
    assert command.exists(), command
    for family, paths in PASTED.items():
        path = next(p for p in paths if load_excerpt(p).expect != "unknown")
        done = subprocess.run(
            [str(command), "classify", str(path), "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "NO_COLOR": "1"},
        )
        assert done.returncode == 0, (family, done.stderr)
        assert json.loads(done.stdout)["category"] == load_excerpt(path).expect, family


SMI_SECTION = """GPU {pci}
    Product Name                          : NVIDIA H100 80GB HBM3
    Remapped Rows
        Correctable Error                 : 0
        Uncorrectable Error               : {uncorrectable}
        Pending                           : No
        Remapping Failure Occurred        : {failed}
"""


def test_an_nvidia_smi_q_fault_is_the_gpu_of_its_section() -> None:
    text = (
        "Attached GPUs                             : 8\n"
        + SMI_SECTION.format(pci="00000000:18:00.0", uncorrectable=0, failed="No")
        + SMI_SECTION.format(pci="00000000:DB:00.0", uncorrectable=9, failed="Yes")
    )
    verdict = classify_text(text)
    assert (verdict.category.value, verdict.culprit_gpu) == ("gpu_hbm_memory", "00000000:DB:00.0")


def test_a_power_brake_in_a_gpu_section_is_the_boards_not_the_gpus() -> None:
    excerpt = load_excerpt(EXCERPTS / "nvidia_smi_q_power_brake_slowdown.log")
    verdict = classify_text(excerpt.text)
    assert (verdict.category.value, verdict.culprit_gpu) == ("power_supply", None)


def test_an_ibstat_port_down_is_named_by_its_ca_and_port() -> None:
    text = (
        "CA 'mlx5_0'\n\tPort 1:\n\t\tState: Active\n\t\tPhysical state: LinkUp\n"
        "CA 'mlx5_7'\n\tPort 1:\n\t\tState: Down\n\t\tPhysical state: Disabled\n"
    )
    verdict = classify_text(text)
    assert verdict.category.value == "nic"
    assert "port mlx5_7/1" in verdict.reason
