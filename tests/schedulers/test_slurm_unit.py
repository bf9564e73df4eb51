"""The Slurm adapter without Slurm: 22.05 JSON samples, reasons, and a scripted CLI."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from sentinel.schedulers.slurm import SlurmScheduler, parse_sinfo, parse_squeue, sanitize_reason

DATA = Path(__file__).parent / "data"


def test_squeue_json_of_a_requeued_job() -> None:
    (job,) = parse_squeue((DATA / "squeue-22.05.json").read_text())

    assert (job.job_id, job.name, job.state, job.raw_state) == ("1", "train", "running", "RUNNING")
    assert (job.nodes, job.restarts, job.reason, job.excluded_nodes) == (("node2",), 2, "", ())


def test_squeue_json_with_a_held_job() -> None:
    jobs = {j.job_id: j for j in parse_squeue((DATA / "squeue-held-22.05.json").read_text())}

    assert jobs["1"].nodes == ("node1", "node2")
    assert (jobs["2"].state, jobs["2"].reason, jobs["2"].nodes) == ("pending", "JobHeldUser", ())


def test_sinfo_json_with_drained_draining_and_down_nodes() -> None:
    nodes = {n.name: n for n in parse_sinfo((DATA / "sinfo-22.05.json").read_text())}

    assert (nodes["node1"].state, nodes["node1"].reason) == ("draining", "xid 79 on gpu 3")
    assert (nodes["node2"].state, nodes["node2"].gpus_used) == ("mixed", 8)
    assert (nodes["node3"].state, nodes["node3"].gpus, nodes["node3"].gpus_used) == ("idle", 8, 0)
    assert (nodes["node4"].state, nodes["node4"].reason) == ("down", "power")
    assert (nodes["node5"].state, nodes["node5"].raw_state) == ("drained", "IDLE+DRAIN")


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ('XID 79 "fell off the bus"', "XID 79 fell off the bus"),
        ("line one\nline two\r\n\tend", "line one line two end"),
        ("it's `bad` \\ here", "its bad here"),
        ("", "sentinel"),
        ("\n\"'", "sentinel"),
        ("ünïcode ok", "n code ok"),
    ],
)
def test_reasons_are_sanitized(given: str, stored: str) -> None:
    assert sanitize_reason(given) == stored


def test_long_reasons_are_cut() -> None:
    reason = sanitize_reason("x" * 1000)
    assert len(reason) == 200 and reason.endswith("...")


def fake_cli(tmp_path: Path, **scripts: str) -> Path:
    """A bin folder whose scontrol/squeue/sinfo are the given shell snippets; each call is
    appended to calls.log."""
    for tool, body in scripts.items():
        path = tmp_path / tool
        path.write_text(f'#!/bin/sh\necho "{tool} $*" >> {tmp_path}/calls.log\n{body}\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def squeue_with(tmp_path: Path, **job: object) -> str:
    raw = json.loads((DATA / "squeue-22.05.json").read_text())
    raw["jobs"][0].update(job)
    (tmp_path / "squeue.json").write_text(json.dumps(raw))
    return f"cat {tmp_path}/squeue.json"


async def test_a_missing_cli_is_a_failed_result(tmp_path: Path) -> None:
    result = await SlurmScheduler(bin_dir=tmp_path).drain("node1", "x")

    assert not result.ok and not result.retryable
    assert "scontrol not found" in (result.error or "")


async def test_a_hung_command_times_out_retryable_and_is_reaped(tmp_path: Path) -> None:
    bin_dir = fake_cli(tmp_path, scontrol=f"echo $$ > {tmp_path}/pid; exec sleep 30")

    result = await SlurmScheduler(bin_dir=bin_dir, timeout_s=0.5).drain("node1", "x")

    assert not result.ok and result.retryable
    assert "timed out" in (result.error or "")
    pid = int((tmp_path / "pid").read_text())
    assert not os.path.exists(f"/proc/{pid}")


async def test_an_unreachable_controller_is_retryable(tmp_path: Path) -> None:
    message = "slurm_update error: Unable to contact slurm controller (connect failure)"
    bin_dir = fake_cli(tmp_path, scontrol=f'echo "{message}" >&2; exit 1')

    result = await SlurmScheduler(bin_dir=bin_dir).resume("node1")

    assert not result.ok and result.retryable and result.error == message


async def test_requeue_of_a_completing_job_asks_to_be_retried(tmp_path: Path) -> None:
    bin_dir = fake_cli(tmp_path, squeue=squeue_with(tmp_path, job_state="COMPLETING"))

    result = await SlurmScheduler(bin_dir=bin_dir).requeue("1", [])

    assert not result.ok and result.retryable and "completing" in (result.error or "")
    assert (tmp_path / "calls.log").read_text() == "squeue --json\n"


async def test_a_retried_requeue_finishes_the_start_now_step(tmp_path: Path) -> None:
    """The first attempt requeued the job and died before moving StartTime: the retry sees a
    requeued job waiting on its begin time and only moves that."""
    bin_dir = fake_cli(
        tmp_path,
        squeue=squeue_with(
            tmp_path,
            job_state="PENDING",
            state_reason="BeginTime",
            nodes="",
            restart_cnt=1,
            excluded_nodes="node2",
        ),
        sinfo=f"cat {DATA}/sinfo-22.05.json",
        scontrol="true",
    )

    result = await SlurmScheduler(bin_dir=bin_dir).requeue("1", ["node2"])

    assert result.ok, result.error
    assert (tmp_path / "calls.log").read_text().splitlines() == [
        "squeue --json",
        "sinfo -N --json",
        "scontrol update JobId=1 ExcNodeList=node2",
        "scontrol update JobId=1 StartTime=now+2",
    ]


async def test_unreadable_json_is_a_failed_result(tmp_path: Path) -> None:
    bin_dir = fake_cli(tmp_path, squeue="echo '{not json'", sinfo="echo '{\"nodes\": [{}]}'")
    scheduler = SlurmScheduler(bin_dir=bin_dir)

    job = await scheduler.job_state("1")
    nodes = await scheduler.nodes()

    assert not job.ok and "unreadable squeue json" in (job.error or "")
    assert not nodes.ok and "unreadable sinfo json" in (nodes.error or "")


@pytest.mark.parametrize("job_id", ["", "1;2", "-1", "1 2", "12_x"])
async def test_bad_job_ids_run_nothing(tmp_path: Path, job_id: str) -> None:
    result = await SlurmScheduler(bin_dir=fake_cli(tmp_path, squeue="true")).job_state(job_id)

    assert not result.ok and result.commands == ()
    assert not (tmp_path / "calls.log").exists()


async def test_a_failed_early_start_does_not_fail_the_done_requeue(tmp_path: Path) -> None:
    """scontrol requeue worked; only moving the start failed: the job restarts anyway,
    after cred_expire, so the result is a success that says so."""
    running = squeue_with(tmp_path, job_state="RUNNING")
    (tmp_path / "pending.json").write_text(
        (tmp_path / "squeue.json").read_text().replace('"RUNNING"', '"PENDING"')
    )
    bin_dir = fake_cli(
        tmp_path,
        # The first squeue sees the job running, later ones see it pending.
        squeue=f"if [ -e {tmp_path}/seen ]; then cat {tmp_path}/pending.json; "
        f"else touch {tmp_path}/seen; {running}; fi",
        scontrol='case "$*" in *StartTime*) echo "Access/permission denied" >&2; exit 1;; esac',
    )

    result = await SlurmScheduler(bin_dir=bin_dir).requeue("1", [])

    assert result.ok and not result.error
    assert "start not advanced (Access/permission denied)" in result.output
    assert result.commands[:2] == ("squeue --json", "scontrol requeue 1")
    assert result.commands[-1] == "scontrol update JobId=1 StartTime=now+2"


async def test_a_reboot_already_asked_for_is_not_asked_again(tmp_path: Path) -> None:
    listing = json.loads((DATA / "releases" / "24.11" / "sinfo.json").read_text())
    (tmp_path / "sinfo.json").write_text(json.dumps(listing))
    bin_dir = fake_cli(tmp_path, sinfo=f"cat {tmp_path}/sinfo.json", scontrol="true")

    pending = await SlurmScheduler(bin_dir=bin_dir).reboot("gpu-a06", "sentinel: x")
    asked = await SlurmScheduler(bin_dir=bin_dir).reboot("gpu-a01", 'sentinel: "79"')

    assert pending.ok and "its reboot was asked for already" in pending.output
    assert asked.ok
    assert (tmp_path / "calls.log").read_text().splitlines() == [
        "sinfo -N --json",
        "sinfo -N --json",
        "scontrol reboot ASAP nextstate=RESUME reason=sentinel: 79 gpu-a01",
    ]


async def test_gpu_reset_commands_and_a_retry_finding_its_reservation(tmp_path: Path) -> None:
    # A retried reset finds the reservation of the attempt before: that is not a failure.
    scontrol = (
        'case "$1" in create) echo "Error creating the reservation: Duplicate reservation name"'
        " >&2; exit 1;; esac"
    )
    bin_dir = fake_cli(tmp_path, scontrol=scontrol, srun="true")

    result = await SlurmScheduler(bin_dir=bin_dir, nvidia_smi="/usr/bin/nvidia-smi").reset_gpu(
        "gpu-a02", "00000000:5D:00.0", "sentinel"
    )

    assert result.ok, result.error
    assert [c.split(" ")[:2] for c in (tmp_path / "calls.log").read_text().splitlines()] == [
        ["scontrol", "create"],
        ["scontrol", "update"],
        ["srun", "--reservation=sentinel-reset-gpu-a02"],
        ["scontrol", "delete"],
    ]
    assert result.commands[2].endswith("/usr/bin/nvidia-smi -r -i 00000000:5D:00.0")


async def test_a_failed_gpu_reset_drains_again_and_cleans_up(tmp_path: Path) -> None:
    bin_dir = fake_cli(
        tmp_path, scontrol="true", srun='echo "srun: error: nvidia-smi: GPU in use" >&2; exit 1'
    )

    result = await SlurmScheduler(bin_dir=bin_dir).reset_gpu("gpu-a02", "3", "sentinel")

    assert not result.ok and result.error == "GPU 3 reset: srun: error: nvidia-smi: GPU in use"
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls[-2].startswith(
        "scontrol update NodeName=gpu-a02 State=DRAIN Reason=sentinel: GPU 3"
    )
    assert calls[-1] == "scontrol delete ReservationName=sentinel-reset-gpu-a02"


@pytest.mark.parametrize("gpu", ["", "3;reboot", "-i", "a b"])
async def test_bad_gpus_run_nothing(tmp_path: Path, gpu: str) -> None:
    bin_dir = fake_cli(tmp_path, scontrol="true", srun="true")

    result = await SlurmScheduler(bin_dir=bin_dir).reset_gpu("node1", gpu, "x")

    assert not result.ok and not (tmp_path / "calls.log").exists()
