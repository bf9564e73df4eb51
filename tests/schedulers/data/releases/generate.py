"""Writes the per-release Slurm JSON fixtures; README.md says where each shape comes from."""

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(sys.argv[1])
REL = {  # family: (release, data_parser)
    "22.05": ("22.05.11", None),
    "23.02": ("23.02.8", "v0.0.39"),
    "23.11": ("23.11.11", "v0.0.40"),
    "24.05": ("24.05.8", "v0.0.41"),
    "24.11": ("24.11.7", "v0.0.42"),
    "25.05": ("25.05.8", "v0.0.43"),
}
T = 1764990000

# name, base, flags, reason, by, reservation, alloc_cpus, gres_used
NODES = [
    (
        "gpu-a01",
        "IDLE",
        ["DRAIN"],
        "NHC: check_hw_ib:  No IB port mlx5_0:1 is ACTIVE (LinkUp 400 Gb/sec).",
        "root",
        "",
        0,
        "gpu:h100:0(IDX:N/A)",
    ),
    (
        "gpu-a02",
        "MIXED",
        ["DRAIN"],
        "xid 79 on gpu 3, ticket 4412",
        "alice",
        "",
        96,
        "gpu:h100:8(IDX:0-7)",
    ),
    (
        "gpu-a03",
        "IDLE",
        ["MAINTENANCE", "RESERVED"],
        "",
        "",
        "maint_rack7",
        0,
        "gpu:h100:0(IDX:N/A)",
    ),
    (
        "gpu-a04",
        "DOWN",
        ["NOT_RESPONDING"],
        "Not responding",
        "slurm",
        "",
        0,
        "gpu:h100:0(IDX:N/A)",
    ),
    ("gpu-a05", "ALLOCATED", [], "", "", "", 192, "gpu:h100:8(IDX:0-7)"),
    (
        "gpu-a06",
        "IDLE",
        ["DRAIN", "REBOOT_ISSUED"],
        "sentinel: faulty_gpu (RESTART_BM) decision 1a2b3c4d",
        "root",
        "",
        0,
        "gpu:h100:0(IDX:N/A)",
    ),
]
GRES = "gpu:h100:8(S:0-1)"


def num(v: int | None, fam: str) -> Any:
    """An optional number as each release prints it."""
    if fam == "22.05":
        return v
    if v is None:
        return {"set": False, "infinite": False, "number": 0}
    return {"set": True, "infinite": False, "number": v}


def meta(fam: str, command: list[str]) -> dict[str, Any]:
    rel, dp = REL[fam]
    major, minor, micro = rel.split(".")
    if fam == "22.05":
        return {
            "plugin": {"type": "openapi/v0.0.38", "name": "Slurm OpenAPI v0.0.38"},
            "Slurm": {
                "version": {"major": int(major), "micro": int(micro), "minor": int(minor)},
                "release": rel,
            },
        }
    if fam == "23.02":
        return {
            "plugins": {
                "data_parser": f"data_parser/{dp}",
                "accounting_storage": "accounting_storage/slurmdbd",
            },
            "command": command,
            "Slurm": {
                "version": {"major": int(major), "micro": int(micro), "minor": int(minor)},
                "release": rel,
            },
        }
    return {
        "plugin": {
            "type": "",
            "name": "",
            "data_parser": f"data_parser/{dp}",
            "accounting_storage": "accounting_storage/slurmdbd",
        },
        "client": {"source": "/dev/pts/0", "user": "root", "group": "root"},
        "command": command,
        "slurm": {
            "version": {"major": major, "micro": micro, "minor": minor},
            "release": rel,
            "cluster": "fleet",
        },
    }


def job_state(fam: str, base: str, flags: list[str]) -> Any:
    if fam in ("22.05", "23.02"):
        # job_state_string(): a flag outranks the base state
        return flags[0] if flags else base
    return [base, *flags]


def jobs(fam: str) -> dict[str, Any]:
    rows = [
        # id, array (job, task), name, base, flags, reason, nodes, excluded, restarts
        (41, None, "llama-70b", "RUNNING", [], "None", "gpu-a[02,05]", "gpu-a01", 2),
        (42, None, "eval", "PENDING", [], "JobHeldUser", "", "", 0),
        (57, (50, 7), "sweep", "PENDING", [], "Resources", "", "", 0),
        (60, None, "llama-8b", "PENDING", ["COMPLETING", "REQUEUED"], "None", "gpu-a06", "", 1),
    ]
    out = []
    for jid, arr, name, base, flags, reason, nodes, excl, restarts in rows:
        j = {
            "account": "research",
            "array_job_id": num(arr[0] if arr else 0, fam),
            "array_task_id": num(arr[1] if arr else None, fam),
            "job_id": jid,
            "job_state": job_state(fam, base, flags),
            "name": name,
            "nodes": nodes,
            "excluded_nodes": excl,
            "partition": "gpu",
            "restart_cnt": restarts,
            "state_reason": reason,
            # INFINITE: 22.05 prints null, later releases a number object
            "time_limit": None if fam == "22.05" else {"set": False, "infinite": True, "number": 0},
            "user_name": "trainer",
        }
        if fam != "22.05":
            j["priority"] = {"set": True, "infinite": False, "number": 4294901700}
        out.append(j)
    if fam == "22.05":
        return {"meta": meta(fam, []), "errors": [], "jobs": out}
    return {"meta": meta(fam, ["squeue", "--json"]), "errors": [], "warnings": [], "jobs": out}


def node_entry(fam: str, n: tuple[Any, ...]) -> dict[str, Any]:
    name, base, flags, reason, by, resv, alloc, used = n
    e = {
        "architecture": "x86_64",
        "boot_time": T - 86400
        if fam in ("22.05", "23.02")
        else {"set": True, "infinite": False, "number": T - 86400},
        "cpus": 192,
        "alloc_cpus": alloc,
        "gres": GRES,
        "gres_drained": "N/A",
        "gres_used": used,
        "name": name,
        "hostname": name,
        "address": name,
        "partitions": ["gpu"],
        "reason": reason,
        "reason_changed_at": (T if reason else 0)
        if fam in ("22.05", "23.02")
        else {"set": bool(reason), "infinite": False, "number": T if reason else 0},
        "reason_set_by_user": by or None,
        "real_memory": 2063000,
    }
    if fam == "22.05":
        e["state"] = base.lower()
        e["state_flags"] = flags
        e["next_state_after_reboot"] = "invalid"
        e["next_state_after_reboot_flags"] = []
    else:
        e["state"] = [base, *flags]
        e["next_state_after_reboot"] = ["INVALID"] if "REBOOT_ISSUED" not in flags else ["IDLE"]
        e["reservation"] = resv
        e["comment"] = ""
    return e


def sinfo(fam: str) -> dict[str, Any]:
    if fam == "22.05":
        return {"meta": meta(fam, []), "errors": [], "nodes": [node_entry(fam, n) for n in NODES]}
    recs = []
    for name, base, flags, reason, by, resv, alloc, used in NODES:
        recs.append(
            {
                "port": 6818,
                "node": {"state": [base, *flags]},
                "nodes": {
                    "allocated": int(base in ("MIXED", "ALLOCATED")),
                    "idle": int(base == "IDLE"),
                    "other": int(base not in ("MIXED", "ALLOCATED", "IDLE")),
                    "total": 1,
                    "hostnames": [name],
                    "addresses": [name],
                    "nodes": [name],
                },
                "cpus": {
                    "allocated": alloc,
                    "idle": 192 - alloc,
                    "other": 0,
                    "total": 192,
                    "minimum": 192,
                    "maximum": 192,
                    "load": {"minimum": 12, "maximum": 12},
                    "per_node": {"max": num(None, fam)},
                },
                "gres": {"total": GRES, "used": used},
                "cluster": "",
                "comment": "",
                "extra": "",
                "reason": {"description": reason, "time": T if reason else 0, "user": by},
                "reservation": resv,
                "partition": {"name": "gpu", "nodes": {"configured": "gpu-a[01-06]", "total": 6}},
            }
        )
    return {
        "sinfo": recs,
        "meta": meta(fam, ["sinfo", "-N", "--json"]),
        "errors": [],
        "warnings": [],
    }


def scontrol_nodes(fam: str) -> dict[str, Any]:
    return {
        "nodes": [node_entry(fam, n) for n in NODES],
        "last_update": {"set": True, "infinite": False, "number": T} if fam != "23.02" else T,
        "meta": meta(fam, ["scontrol", "show", "nodes", "--json"]),
        "errors": [],
        "warnings": [],
    }


for fam in REL:
    d = OUT / fam
    d.mkdir(parents=True, exist_ok=True)
    (d / "squeue.json").write_text(json.dumps(jobs(fam), indent=2) + "\n")
    (d / "sinfo.json").write_text(json.dumps(sinfo(fam), indent=2) + "\n")
    if fam != "22.05":
        (d / "scontrol-nodes.json").write_text(json.dumps(scontrol_nodes(fam), indent=2) + "\n")
