"""`sentinel fr analyze DIR --json` as an operator runs it, for the tests that hold the
service's flight-recorder verdict to the command line's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def cli_verdict(directory: Path) -> dict[str, Any]:
    """The verdict the CLI prints for a folder of dumps (exit 1: a fault found)."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "sentinel"), "fr", "analyze", str(directory), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]
