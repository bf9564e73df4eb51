"""The Slurm JSON of every release family from 22.05 to 25.05 reads as the same jobs and nodes.

The outputs are recorded per family in data/releases/ (data/releases/README.md: where each
shape comes from); one scene in each: a requeued job, a held one, an array task, a job
completing after its requeue; nodes drained by NHC and by an admin, one in a maintenance
reservation, one down and not responding, one busy, one rebooting.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.schedulers.base import NodeInfo
from sentinel.schedulers.slurm import job_state_word, parse_sinfo, parse_squeue

RELEASES = Path(__file__).parent / "data" / "releases"
FAMILIES = ("22.05", "23.02", "23.11", "24.05", "24.11", "25.05")
NODE_LISTINGS = [(f, "sinfo.json") for f in FAMILIES] + [
    (f, "scontrol-nodes.json") for f in FAMILIES if f != "22.05"
]


def test_every_family_is_recorded() -> None:
    assert sorted(p.name for p in RELEASES.iterdir() if p.is_dir()) == list(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_squeue_json_of_each_release(family: str) -> None:
    jobs = {j.job_id: j for j in parse_squeue((RELEASES / family / "squeue.json").read_text())}

    assert sorted(jobs) == ["41", "42", "50_7", "60"]
    running = jobs["41"]
    assert (running.state, running.raw_state, running.reason) == ("running", "RUNNING", "")
    assert (running.nodes, running.excluded_nodes, running.restarts) == (
        ("gpu-a02", "gpu-a05"),
        ("gpu-a01",),
        2,
    )
    assert (jobs["42"].state, jobs["42"].reason, jobs["42"].nodes) == ("pending", "JobHeldUser", ())
    assert (jobs["50_7"].state, jobs["50_7"].reason) == ("pending", "Resources")
    # A requeued job passing through COMPLETING is not yet pending, whatever the release.
    assert (jobs["60"].state, jobs["60"].raw_state) == ("completing", "COMPLETING")


@pytest.mark.parametrize(("family", "listing"), NODE_LISTINGS)
def test_node_listings_of_each_release(family: str, listing: str) -> None:
    nodes = {n.name: n for n in parse_sinfo((RELEASES / family / listing).read_text())}

    assert list(nodes) == [f"gpu-a0{i}" for i in range(1, 7)]
    nhc = nodes["gpu-a01"]
    assert (nhc.state, nhc.raw_state, nhc.reason_by) == ("drained", "IDLE+DRAIN", "root")
    assert nhc.reason.startswith("NHC: check_hw_ib:")
    assert nhc.reason_at == 1764990000
    admin = nodes["gpu-a02"]
    assert (admin.state, admin.reason, admin.reason_by) == (
        "draining",
        "xid 79 on gpu 3, ticket 4412",
        "alice",
    )
    assert (admin.gpus, admin.gpus_used, admin.cpus, admin.cpus_allocated) == (8, 8, 192, 96)
    maint = nodes["gpu-a03"]
    assert (maint.state, maint.maintenance, maint.raw_state) == (
        "idle",
        True,
        "IDLE+MAINTENANCE+RESERVED",
    )
    if family != "22.05":  # 22.05 names no reservation on a node, only the flag
        assert maint.reservation == "maint_rack7"
    down = nodes["gpu-a04"]
    assert (down.state, down.responding, down.reason) == ("down", False, "Not responding")
    assert (nodes["gpu-a05"].state, nodes["gpu-a05"].reason_at) == ("allocated", None)
    rebooting = nodes["gpu-a06"]
    assert (rebooting.state, rebooting.raw_state) == ("drained", "IDLE+DRAIN+REBOOT_ISSUED")


@pytest.mark.parametrize("family", FAMILIES)
def test_capacity_reads_the_same_in_each_release(family: str) -> None:
    from sentinel.schedulers.base import NodesResult

    nodes = parse_sinfo((RELEASES / family / "sinfo.json").read_text())
    counts = NodesResult(adapter="slurm", op="nodes", ok=True, nodes=tuple(nodes)).counts()

    assert (counts.total, counts.idle, counts.allocated, counts.drained, counts.draining) == (
        6,
        1,
        1,
        2,
        1,
    )
    assert (counts.down, counts.spare_gpus) == (1, 8)


def test_merged_sinfo_records_name_each_node() -> None:
    """Without -N, sinfo merges nodes that look alike into one record: each is listed, and the
    record's CPU sums are shared out."""
    text = (
        '{"sinfo": [{"node": {"state": ["IDLE"]}, "nodes": {"nodes": ["n1", "n2"]},'
        ' "cpus": {"allocated": 0, "total": 16}, "gres": {"total": "gpu:4", "used": "gpu:0"},'
        ' "reason": {"description": "", "time": 0, "user": ""}}]}'
    )
    assert parse_sinfo(text) == [
        NodeInfo(name=n, state="idle", raw_state="IDLE", cpus=8, gpus=4) for n in ("n1", "n2")
    ]


@pytest.mark.parametrize(
    ("words", "word"),
    [
        (["RUNNING"], "RUNNING"),
        (["PENDING", "REQUEUED"], "REQUEUED"),
        (["PENDING", "REQUEUED", "COMPLETING"], "COMPLETING"),
        (["RUNNING", "CONFIGURING"], "CONFIGURING"),
        (["NODE_FAIL"], "NODE_FAIL"),
        ([], "UNKNOWN"),
    ],
)
def test_a_job_state_list_reads_as_the_word_slurm_prints(words: list[str], word: str) -> None:
    assert job_state_word(words) == word


@pytest.mark.parametrize(
    "number",
    [
        '{"set": true, "infinite": false, "number": 7}',
        "7",
    ],
)
def test_optional_numbers_plain_or_structured(number: str) -> None:
    text = (
        '{"jobs": [{"job_id": 57, "array_job_id": ' + number.replace("7", "50") + ","
        ' "array_task_id": ' + number + ', "job_state": ["PENDING"], "name": "x"}]}'
    )
    (job,) = parse_squeue(text)
    assert job.job_id == "50_7"


@pytest.mark.parametrize(
    "unset",
    [
        '{"set": false, "infinite": false, "number": 0}',
        "null",
        '"Infinity"',
        '{"set": false, "infinite": true, "number": 0}',
    ],
)
def test_unset_numbers_are_none(unset: str) -> None:
    text = (
        '{"jobs": [{"job_id": 57, "array_job_id": 0, "array_task_id": ' + unset + ","
        ' "job_state": "PENDING"}]}'
    )
    (job,) = parse_squeue(text)
    assert job.job_id == "57"
