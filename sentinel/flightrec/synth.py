"""Synthesize flight-recorder dumps shaped like NCCL's, with a planted culprit, for tests
and benchmarks."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

PlantedKind = Literal["healthy", "missing", "stuck", "mismatch"]

DUMP_PREFIX = "nccl_trace_rank_"
_T0_NS = 1_795_848_077_000_000_000
_STEP_NS = 350_000_000  # one training step
_TIMEOUT_MS = 600_000  # NCCL's default watchdog timeout

_SITE = "/opt/venv/lib/python3.11/site-packages"


def _stack(op: str, line: int, caller: str) -> list[dict[str, Any]]:
    """A Megatron-like call stack: the c10d wrapper, the parallel layer, the train loop."""
    return [
        {"name": op, "filename": f"{_SITE}/torch/distributed/distributed_c10d.py", "line": line},
        {"name": "wrapper", "filename": f"{_SITE}/torch/distributed/c10d_logger.py", "line": 83},
        {"name": caller, "filename": f"{_SITE}/megatron/core/parallel_state_ops.py", "line": 212},
        {"name": "forward_backward_step", "filename": "/workspace/train/schedules.py", "line": 431},
        {"name": "train_step", "filename": "/workspace/train/training.py", "line": 1187},
        {"name": "train", "filename": "/workspace/train/training.py", "line": 1523},
        {"name": "main", "filename": "/workspace/train/pretrain_gpt.py", "line": 302},
        {"name": "<module>", "filename": "/workspace/train/pretrain_gpt.py", "line": 319},
    ]


# One training step, in call order: (group kind, op, input sizes, output sizes, stack).
# Shared frame dicts mirror PyTorch's pickler, which memoizes identical frames.
_STEP: list[tuple[str, str, list[list[int]], list[list[int]] | None, list[dict[str, Any]]]] = [
    ("tp", "all_reduce", [[4096, 8192]], [[4096, 8192]], _stack("all_reduce", 3245, "tp_fwd")),
    ("pp", "send", [[1, 4096, 8192]], [[1, 4096, 8192]], _stack("send", 2310, "send_fwd")),
    ("pp", "recv", [[1, 4096, 8192]], [[1, 4096, 8192]], _stack("recv", 2390, "recv_fwd")),
    ("tp", "all_reduce", [[4096, 8192]], [[4096, 8192]], _stack("all_reduce", 3245, "tp_bwd")),
    (
        "dp",
        "reduce_scatter_tensor_coalesced",
        [[262144]],
        None,
        _stack("reduce_scatter_tensor", 4620, "grad_sync"),
    ),
    ("default", "all_reduce", [[1]], [[1]], _stack("all_reduce", 3245, "loss_sync")),
]


@dataclass(frozen=True)
class Layout:
    """Process groups like a 3D-parallel job: tp within a host, then pp, then dp."""

    world: int
    tp: int = 8
    pp: int = 4

    def __post_init__(self) -> None:
        if self.world % (self.tp * self.pp):
            raise ValueError(f"world {self.world} is not a multiple of tp*pp={self.tp * self.pp}")

    @property
    def dp(self) -> int:
        return self.world // (self.tp * self.pp)

    def groups(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """name -> (desc, ranks); names numbered in creation order, as PyTorch does."""
        tp, pp, dp = self.tp, self.pp, self.dp
        made: list[tuple[str, tuple[int, ...]]] = [("default_pg", tuple(range(self.world)))]
        made += [("tp", tuple(range(h * tp, (h + 1) * tp))) for h in range(self.world // tp)]
        made += [
            ("pp", tuple(d * tp * pp + s * tp + t for s in range(pp)))
            for d in range(dp)
            for t in range(tp)
        ]
        made += [
            ("dp", tuple(d * tp * pp + s * tp + t for d in range(dp)))
            for s in range(pp)
            for t in range(tp)
        ]
        return {str(i): g for i, g in enumerate(made)}

    def rank_groups(self, rank: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        """kind ('default', 'tp', 'pp', 'dp') -> (group name, ranks) for one rank."""
        out = {}
        for name, (desc, ranks) in self.groups().items():
            if rank in ranks:
                out["default" if desc == "default_pg" else desc] = (name, ranks)
        return out


@dataclass(frozen=True)
class Plan:
    layout: Layout
    entries: int = 200
    kind: PlantedKind = "missing"
    culprit: int = 5


def synthesize(
    plan: Plan, rank: int, groups: dict[str, tuple[str, tuple[int, ...]]]
) -> dict[str, Any]:
    """One rank's dump: the last `plan.entries` operations, ending in the planted failure.

    Every rank runs the same steps; the failure is planted in the final step's default
    all_reduce: the culprit never calls it (missing), calls it but never starts it
    (stuck: its stream is blocked), or calls it with another size (mismatch).

    The ids are PyTorch's: the job started with the first step, so `record_id` counts
    every entry this rank recorded (the ring keeps the last ones: a dump's ids start
    where its ring starts, not at 0, and ranks that record more operations, the middle
    pp stages, have higher ids); `pg_id` is the group's local uid (this rank's groups in
    creation order), `op_id` counts the group's operations, and `pg_status` is keyed by
    `pg_id` as ProcessGroupNCCL writes it.
    """
    steps = plan.entries // (len(_STEP) - 1) + 2  # edge pp stages skip one p2p op
    ops: list[dict[str, Any]] = []
    coll_seq: dict[str, int] = {}
    p2p_seq: dict[str, int] = {}
    op_ids: dict[str, int] = {}
    # The uid ProcessGroupNCCL gives each group it is a member of, in creation order.
    made = sorted(groups.values(), key=lambda g: int(g[0]) if g[0].isdigit() else 0)
    pg_ids = {name: i for i, (name, _ranks) in enumerate(made)}
    enqueued: dict[str, int] = {}  # collective seq per group (PGStatus), -1 when none
    started: dict[str, int] = {}
    completed: dict[str, int] = {}
    stage = groups["pp"][1].index(rank)
    pp_ranks = groups["pp"][1]
    failing = plan.kind != "healthy"
    for step in range(steps):
        last = step == steps - 1
        for i, (kind, op, ins, outs, frames) in enumerate(_STEP):
            name, ranks = groups[kind]
            if op in ("send", "recv"):
                # pipeline: stage s sends forward to s+1, which receives from s
                peer = stage + 1 if op == "send" else stage - 1
                if not 0 <= peer < len(pp_ranks):
                    continue
                p2p_seq[name] = p2p_seq.get(name, 0) + 1
                arrow = "->" if op == "send" else "<-"
                profiling = f"nccl:{op} {stage}{arrow}{peer}"
                is_p2p = True
            else:
                coll_seq[name] = coll_seq.get(name, 0) + 1
                profiling = f"nccl:{op}"
                is_p2p = False
            final = last and i == len(_STEP) - 1
            if final and failing and rank == plan.culprit and plan.kind == "missing":
                break
            created = _T0_NS + step * _STEP_NS + i * 40_000_000 + rank * 1_000
            sizes = ins
            if final and failing and rank == plan.culprit and plan.kind == "mismatch":
                sizes = [[2]]
            if final and failing:
                state = (
                    "scheduled" if rank == plan.culprit and plan.kind == "stuck" else ("started")
                )
            else:
                state = "completed"
            out_sizes = outs if outs is not None else [[ins[0][0] // max(len(ranks), 1)]]
            op_ids[name] = op_ids.get(name, 0) + 1
            if not is_p2p:
                seq = coll_seq[name]
                enqueued[name] = seq
                if state != "scheduled":
                    started[name] = seq
                if state == "completed":
                    completed[name] = seq
            ops.append(
                {
                    "frames": list(frames),
                    "record_id": len(ops),
                    "pg_id": pg_ids[name],
                    "process_group": (name, _desc(kind)),
                    "thread_id": "140261913721728",
                    "thread_name": "pt_main_thread",
                    # both counters as the group has them (p2p ops do not bump the first)
                    "collective_seq_id": coll_seq.get(name, 0),
                    "p2p_seq_id": p2p_seq.get(name, 0),
                    "op_id": op_ids[name],
                    "profiling_name": profiling,
                    "time_created_ns": created,
                    "input_sizes": sizes,
                    "input_dtypes": ["BFloat16"],
                    "output_sizes": sizes if final else out_sizes,
                    "output_dtypes": ["BFloat16"],
                    "state": state,
                    "time_discovered_started_ns": created + 20_000
                    if state != "scheduled"
                    else None,
                    "time_discovered_completed_ns": created + 9_000_000
                    if state == "completed"
                    else None,
                    "retired": state == "completed",
                    "timeout_ms": _TIMEOUT_MS,
                    "is_p2p": is_p2p,
                    "duration_ms": 8.9 if state == "completed" else None,
                }
            )
    tail = ops[-plan.entries :]
    return {
        "version": "2.10",
        "pg_config": {
            name: {"name": name, "desc": _desc(kind), "ranks": str(list(ranks))}
            for kind, (name, ranks) in groups.items()
        },
        "pg_status": {
            str(pg_ids[name]): {
                "last_enqueued_collective": enqueued.get(name, -1),
                "last_started_collective": started.get(name, -1),
                "last_completed_collective": completed.get(name, -1),
            }
            for name, _ranks in made
        },
        "comm_lib_version": "2.27.5",
        "entries": tail,
    }


def _desc(kind: str) -> str:
    return "default_pg" if kind == "default" else kind


def dump_bytes(
    plan: Plan,
    rank: int,
    fmt: Literal["pickle", "json"] = "pickle",
    groups: dict[str, tuple[str, tuple[int, ...]]] | None = None,
) -> bytes:
    dump = synthesize(plan, rank, groups or plan.layout.rank_groups(rank))
    if fmt == "json":
        return json.dumps(dump).encode()
    # Protocol 2, like PyTorch's C++ pickler (writing with pickle is safe; reading is not)
    return pickle.dumps(dump, protocol=2)


def iter_dumps(
    plan: Plan, fmt: Literal["pickle", "json"] = "pickle"
) -> Iterator[tuple[str, bytes]]:
    """(file name, bytes) for every rank."""
    for rank in range(plan.layout.world):
        yield f"{DUMP_PREFIX}{rank}", dump_bytes(plan, rank, fmt)


def write_dumps(
    plan: Plan,
    directory: Path,
    ranks: range | None = None,
    fmt: Literal["pickle", "json"] = "pickle",
) -> None:
    """Write one file per rank (optionally only some ranks, to split work across processes)."""
    directory.mkdir(parents=True, exist_ok=True)
    all_groups = plan.layout.groups()
    member_of: dict[int, dict[str, tuple[str, tuple[int, ...]]]] = {}
    for name, (desc, group_ranks) in all_groups.items():
        kind = "default" if desc == "default_pg" else desc
        for r in group_ranks:
            member_of.setdefault(r, {})[kind] = (name, group_ranks)
    for rank in ranks if ranks is not None else range(plan.layout.world):
        data = dump_bytes(plan, rank, fmt, member_of[rank])
        (directory / f"{DUMP_PREFIX}{rank}").write_bytes(data)
