"""Write the replay cases in tests/replay/cases/ (run: python tests/replay/build_cases.py).

Each case is a small fleet training one job with realistic noise and one or more injected
faults, as the agents would report them, plus what triage must conclude. Log lines are in the
formats the real tools print (NVRM, NCCL, PyTorch, mlx5, EDAC, nvme, ...).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from sentinel.replay.synth import Fleet

CASES = Path(__file__).parent / "cases"
BUILDERS: dict[str, Callable[[Path], None]] = {}


def case(fn: Callable[[Path], None]) -> Callable[[Path], None]:
    BUILDERS[fn.__name__.replace("_", "-")] = fn
    return fn


def nccl_timeout(rank: int, seq: int = 88123, op: str = "ALLREDUCE") -> str:
    return (
        f"[rank{rank}]:[E302 04:{rank % 60:02d}:11.{rank:03d}000 ProcessGroupNCCL.cpp:616] "
        f"[Rank {rank}] Watchdog caught collective operation timeout: WorkNCCL(SeqNum={seq}, "
        f"OpType={op}, NumelIn=262144, NumelOut=262144, Timeout(ms)=600000) ran for "
        f"600{rank % 90:03d} milliseconds before timing out."
    )


def peer_timeouts(f: Fleet, t: float, skip: set[int], hosts: int | None = None) -> None:
    """The symptom flood: every other host's ranks time out in the collective."""
    for h in range(hosts or f.hosts):
        if h in skip:
            continue
        f.log(t + (h % 7) * 0.3, h, nccl_timeout(h * 8), source="application", rank=h * 8)


@case
def faulty_gpu_xid79_with_peer_timeouts(folder: Path) -> None:
    f = Fleet(hosts=48, seed=1)
    f.xid(
        95.0,
        17,
        3,
        79,
        "NVRM: Xid (PCI:0000:5d:00): 79, pid=44112, name=python, GPU has fallen off the bus.",
    )
    f.gpu(95.5, 17, 3, lost=True)
    f.stall(95.0)
    peer_timeouts(f, 180.0, skip={17})
    f.write(
        folder,
        240,
        {
            "name": "faulty-gpu-xid79-with-peer-timeouts",
            "description": "XID 79 on one GPU; 47 peers then report NCCL watchdog timeouts. One "
            "incident, faulty_gpu on that host and GPU; the timeouts are symptoms.",
            "incidents": [
                {
                    "category": "faulty_gpu",
                    "culprit_host": "node-0017",
                    "culprit_gpu": "00000000:5D:00.0",
                    "by_s": 100,
                }
            ],
        },
    )


@case
def silent_hang_no_error(folder: Path) -> None:
    f = Fleet(hosts=32, seed=2, interval=10.0)
    f.stall(120.0)
    f.write(
        folder,
        200,
        {
            "name": "silent-hang-no-error",
            "description": "Every rank stops advancing at t=120 s with no error anywhere (a hung "
            "collective before NCCL's 10-minute watchdog): detected from heartbeats "
            "within 2 heartbeat intervals.",
            "incidents": [{"category": "nccl_watchdog_timeout", "by_s": 140, "after_s": 120}],
        },
    )


def main() -> None:
    for name, build in BUILDERS.items():
        folder = CASES / name
        shutil.rmtree(folder, ignore_errors=True)
        build(folder)
        print(f"wrote {folder}")


if __name__ == "__main__":
    main()
