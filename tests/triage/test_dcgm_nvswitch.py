"""DCGM and NVSwitch: pasted `dcgmi health -c` and `dcgmi diag` output (tables and -j JSON)
classifies by DCGM's own failure codes (dcgm.yaml); an NVSwitch SXid or a Fabric Manager error
is the host's baseboard, never a GPU, and a fatal one outranks the GPUs' NVLink XIDs it causes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sentinel.knowledge import KnowledgeError
from sentinel.knowledge.dcgm import (
    default_dcgm_catalog,
    diag_lines,
    health_lines,
    load_dcgm_catalog,
    readable,
)
from sentinel.knowledge.nvswitch import default_sxid_catalog
from sentinel.knowledge.taxonomy import CATEGORIES, Category
from sentinel.triage.classify import classify_text
from sentinel.triage.signals import extract_signals
from tests.triage.conftest import EXCERPTS, load_excerpt

DCGMI = sorted(EXCERPTS.glob("dcgmi_*.log"))
NVSWITCH = sorted([*EXCERPTS.glob("nvswitch_*.log"), *EXCERPTS.glob("fabric_manager_*.log")])
_NAMES = re.compile(r"^# names: (?P<part>.+)$", re.MULTILINE)

SXID_FATAL = (
    "Mar 14 02:17:45 gpu-node-07 kernel: nvidia-nvswitch3: SXid (PCI:0000:c8:00.0): 24007, "
    "Fatal, Link 44 sourcetrack timeout error (First)"
)
XID_74 = (
    "Mar 14 02:17:46 gpu-node-07 kernel: NVRM: Xid (PCI:0000:18:00): 74, pid=20412, "
    "name=python, NVLink: fatal error detected on link 6(0x0, 0x0, 0x10000, 0x0, 0x0, 0x0, 0x0)"
)
XID_48 = "Mar 14 02:17:44 gpu-node-07 kernel: NVRM: Xid (PCI:0000:18:00): 48, pid=20412, DBE"


def test_the_dcgmi_excerpts_cover_health_and_diag_in_both_forms() -> None:
    names = [p.name for p in DCGMI]
    assert len(DCGMI) >= 10
    for tool in ("health", "diag"):
        for form in ("text", "json"):
            assert any(n.startswith(f"dcgmi_{tool}_{form}_") for n in names), (tool, form)


@pytest.mark.parametrize("path", DCGMI, ids=[p.stem for p in DCGMI])
def test_a_dcgmi_report_is_read_by_its_failure_code(path: Path) -> None:
    excerpt = load_excerpt(path)
    verdict = classify_text(excerpt.text)
    assert verdict.category.value == excerpt.expect, verdict.reason
    if verdict.category != Category.UNKNOWN:
        assert "DCGM_FR_" in verdict.reason, "the verdict names DCGM's code"


def test_a_configuration_finding_is_not_a_fault() -> None:
    text = load_excerpt(EXCERPTS / "dcgmi_diag_json_config_only.log").text
    [signal] = extract_signals(text)
    assert signal.attrs["dcgm_code"] == "DCGM_FR_PERSISTENCE_MODE"
    assert (signal.role, signal.severity, signal.category_hint) == ("context", "info", None)


def test_health_json_reads_one_line_per_system() -> None:
    document = {
        "body": {
            "GPU": {
                "children": {
                    "4": {
                        "children": {
                            "Errors": {
                                "children": {
                                    "Memory system": {
                                        "overflow": [
                                            "Detected 2 volatile double-bit ECC error(s) in",
                                            "GPU 4.",
                                        ],
                                        "value": "Failure",
                                    }
                                }
                            }
                        },
                        "value": "Failure",
                    }
                }
            },
            "Overall Health": {"value": "Failure"},
        },
        "header": ["Health Monitor Report"],
    }
    assert health_lines(document) == [
        "dcgmi health: GPU 4: Memory system: Failure: "
        "Detected 2 volatile double-bit ECC error(s) in GPU 4."
    ]
    assert readable(json.dumps(document)) == health_lines(document)[0]


def test_diag_json_names_the_code_of_each_error() -> None:
    text = load_excerpt(EXCERPTS / "dcgmi_diag_json_row_remap_failure.log").text
    document = json.loads(text[text.index("{") :])
    assert diag_lines(document) == [
        "dcgmi diag: memory: GPU 3: Fail: DCGM_FR_ROW_REMAP_FAILURE: "
        "GPU 3 had uncorrectable memory errors and row remapping failed."
    ]


def test_text_without_a_dcgmi_report_is_left_alone() -> None:
    text = "| a table | of something else |\nNVRM: Xid (PCI:0000:18:00): 74, NVLink"
    assert readable(text) is text


def test_the_dcgm_table_is_nvidias() -> None:
    catalog = default_dcgm_catalog()
    row_remap = catalog.by_name["DCGM_FR_ROW_REMAP_FAILURE"]
    assert (row_remap.code, row_remap.nvidia_severity) == (80, "RESET")
    assert row_remap.category == Category.GPU_HBM_MEMORY
    assert catalog.by_code[15].category == Category.IO_EXPANSION_BOARD  # NVSWITCH_FATAL_ERROR
    hardware = [c for c in catalog.codes if c.nvidia_category.startswith("HARDWARE_")]
    unmapped = [c.name for c in hardware if c.category is None and c.nvidia_severity != "CONFIG"]
    assert unmapped == ["DCGM_FR_NO_MEMORY_CLOCKS", "DCGM_FR_NO_GRAPHICS_CLOCKS"]


def test_a_bad_dcgm_table_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "dcgm.yaml"
    entry = (
        "{code: 3, name: DCGM_FR_PCI_REPLAY_RATE, nvidia_severity: ISOLATE, nvidia_category: "
        "HARDWARE_PCIE, category: faulty_gpu, part: pcie, severity: error, summary: x}"
    )
    path.write_text(f"systems: []\ncodes:\n  - {entry}\n  - {entry}\n")
    with pytest.raises(KnowledgeError, match="duplicate codes"):
        load_dcgm_catalog(path)


# ---------------------------------------------------------------- NVSwitch


@pytest.mark.parametrize("path", NVSWITCH, ids=[p.stem for p in NVSWITCH])
def test_an_nvswitch_error_is_the_baseboard_not_a_gpu(path: Path) -> None:
    excerpt = load_excerpt(path)
    verdict = classify_text(excerpt.text)
    assert verdict.category.value == excerpt.expect, verdict.reason
    assert verdict.culprit_gpu is None
    named = _NAMES.search(path.read_text())
    if named:
        assert named.group("part") in verdict.reason, verdict.reason


def test_an_sxid_names_no_gpu() -> None:
    [signal] = extract_signals(SXID_FATAL)
    assert signal.gpu is None
    assert (signal.category_hint, signal.severity) == (Category.IO_EXPANSION_BOARD, "critical")
    assert signal.attrs["nvswitch"] == "3" and signal.attrs["link"] == "44"
    assert signal.attrs["action"] == "RESTART_BM"


def test_a_fatal_sxid_outranks_the_nvlink_xids_it_causes() -> None:
    verdict = classify_text("\n".join([SXID_FATAL, XID_74]))
    assert verdict.rule == "BlameNvSwitchOverTheGpusOnItsBaseboard"
    assert (verdict.category, verdict.culprit_host) == (Category.IO_EXPANSION_BOARD, "gpu-node-07")
    assert verdict.culprit_gpu is None
    assert "NVSwitch 3 link 44" in verdict.reason
    assert any(s.xid == 74 for s in verdict.symptoms)


def test_a_gpus_own_memory_fault_beside_an_sxid_stays_the_gpus() -> None:
    verdict = classify_text("\n".join([XID_48, SXID_FATAL, XID_74]))
    assert verdict.category == Category.GPU_HBM_MEMORY, verdict.reason


def test_the_baseboard_category_drains_the_host() -> None:
    # Why io_expansion_board: a fatal SXid is remedied on the host (drain, reset), not by
    # holding the job for the network (network_switch_cable) nor by blaming one GPU.
    assert CATEGORIES[Category.IO_EXPANSION_BOARD].host_must_leave
    fatal = [s for s in default_sxid_catalog().sxids if s.fatal]
    assert fatal and all(s.action == "RESTART_BM" for s in fatal)
