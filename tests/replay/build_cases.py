"""Write the replay cases in tests/replay/cases/ (run: python tests/replay/build_cases.py).

Each case is a small fleet training one job with realistic noise and one or more injected
faults, plus what triage must conclude. Faults are log lines as the hosts print them into their
kernel and training logs (`kernel_log`, `training_log`: the replay reads them through the
agent's own collectors, so a case holds no record the agent would not ship) and GPU samples,
heartbeats and API calls as the agents and operators send them. Log lines are in the formats
the real tools print (NVRM, NCCL, PyTorch, mlx5, EDAC, nvme, ...), most of them taken from the
real excerpts in tests/triage/excerpts/.

The fleet and the case registry are in fleet.py, the log-line formats and fault shapes the
cases compose in shapes.py.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (python tests/replay/build_cases.py): the repo root is where `tests` is.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.replay import cases_gpu, cases_host, cases_job  # noqa: F401  (registers their cases)
from tests.replay.fleet import BUILDERS, HELD_BACK

CASES = Path(__file__).parent / "cases"


def main() -> None:
    with_held_back = "--held-back" in sys.argv[1:]
    for name, build in BUILDERS.items():
        folder = CASES / name
        shutil.rmtree(folder, ignore_errors=True)
        if name in HELD_BACK and not with_held_back:
            print(f"held back {name}: {HELD_BACK[name]}")
            continue
        build(folder)
        print(f"wrote {folder}")


if __name__ == "__main__":
    main()
