"""`sentinel classify` prints a verdict for a file or stdin; unreadable input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sentinel.triage.cli import app

runner = CliRunner()
XID79 = "NVRM: Xid (PCI:0000:44:00): 79, pid=0, GPU has fallen off the bus.\n"


def test_json_from_stdin() -> None:
    result = runner.invoke(app, ["--json"], input=XID79)
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["category"] == "faulty_gpu"
    assert 0 < document["confidence"] <= 1
    assert document["evidence"][0]["xid"] == 79
    assert document["rules_fired"] == ["BlameHardGpuXidOverPeerTimeouts"]
    assert document["secondary"] == []


def test_text_from_file(tmp_path: Path) -> None:
    path = tmp_path / "dmesg.log"
    path.write_text(XID79)
    result = runner.invoke(app, [str(path)])
    assert result.exit_code == 0, result.output
    assert "faulty_gpu" in result.output
    assert "BlameHardGpuXidOverPeerTimeouts" in result.output


def test_undecodable_bytes_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "binary.log"
    path.write_bytes(b"\xff\xfe\x00" + XID79.encode())
    result = runner.invoke(app, [str(path), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["category"] == "faulty_gpu"


def test_empty_input_is_unknown() -> None:
    result = runner.invoke(app, ["--json"], input="")
    assert result.exit_code == 0
    assert json.loads(result.output)["category"] == "unknown"


def test_unreadable_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, [str(tmp_path / "missing.log")])
    assert result.exit_code == 2
    result = runner.invoke(app, [str(tmp_path)])
    assert result.exit_code == 2
