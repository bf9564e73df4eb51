"""``sentinel-agent check --drain`` as the real Slurm's HealthCheckProgram.

slurmd runs the program every HealthCheckInterval with nothing in its environment but
SLURMD_NODENAME, as it does on a real node; the site's wrapper (the one below is the
documented shape) sets PATH, SLURM_CONF and where the agent's config is. Each fake node
reads its own GPU scenario and kernel log, so one cluster has a healthy node and failing ones.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sentinel.incidents.scheduler_view import worth_noting
from sentinel.knowledge.taxonomy import Category
from sentinel.schedulers import make_scheduler
from sentinel.triage.signals import scheduler_node_signals
from sentinel.wire import JobEnd
from tests.harness.slurm import SlurmCluster, SlurmUnavailable, start_slurm

pytestmark = pytest.mark.slurm

SCENARIOS = Path(__file__).parents[2] / "agents" / "sentinel_agent" / "scenarios"
INTERVAL_S = 2

WRAPPER = """#!/bin/sh
# HealthCheckProgram: slurmd gives it SLURMD_NODENAME and nothing else.
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
export SLURM_CONF={conf}
export SENTINEL_AGENT_COLLECTORS__NVML__PROVIDER=fake
export SENTINEL_AGENT_COLLECTORS__NVML__SCENARIO={root}/$SLURMD_NODENAME.yaml
export SENTINEL_AGENT_COLLECTORS__KERNEL_LOG__PATH={root}/$SLURMD_NODENAME.kern.log
# The memory controllers of the machine running the tests are no fake node's.
export SENTINEL_AGENT_COLLECTORS__EDAC__ENABLED=false
{python} -m sentinel_agent check --drain --gpus 8 >> {root}/$SLURMD_NODENAME.out 2>&1
rc=$?
echo "exit=$rc" >> {root}/$SLURMD_NODENAME.out
exit $rc
"""

PROLOG = """#!/bin/sh
# Prolog: the same check without --drain; a failure is enough for Slurm to drain the node.
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
export SENTINEL_AGENT_COLLECTORS__NVML__PROVIDER=fake
export SENTINEL_AGENT_COLLECTORS__NVML__SCENARIO={root}/$SLURMD_NODENAME.prolog.yaml
export SENTINEL_AGENT_COLLECTORS__KERNEL_LOG__ENABLED=false
export SENTINEL_AGENT_COLLECTORS__EDAC__ENABLED=false
exec {python} -m sentinel_agent check --gpus 8 >> {root}/$SLURMD_NODENAME.prolog.out 2>&1
"""

EPILOG = """#!/bin/sh
# Epilog: slurmd gives it SLURM_JOB_ID, SLURM_JOB_EXIT_CODE2 and the like.
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
export SENTINEL_AGENT_OUTBOX__PATH={root}/$SLURMD_NODENAME/outbox.db
exec {python} -m sentinel_agent epilog >> {root}/$SLURMD_NODENAME.epilog.out 2>&1
"""


@pytest.fixture(scope="module")
def checked() -> Iterator[tuple[SlurmCluster, Path]]:
    """Three nodes whose slurmd runs the check every 2 s; all healthy at start."""
    if os.environ.get("SENTINEL_TEST_SKIP_SLURM") == "1":
        pytest.skip("SENTINEL_TEST_SKIP_SLURM=1: Slurm tests skipped")
    work = Path(tempfile.mkdtemp(prefix="sentinel-hc-"))
    work.chmod(0o755)  # munged wants every folder above its socket searchable
    hosts = work / "hosts"
    hosts.mkdir()
    cluster_root = work / "slurm"
    for node in ("node1", "node2", "node3"):
        shutil.copy(SCENARIOS / "healthy.yaml", hosts / f"{node}.yaml")
        shutil.copy(SCENARIOS / "healthy.yaml", hosts / f"{node}.prolog.yaml")
        (hosts / f"{node}.kern.log").write_text("")
    program = work / "healthcheck"
    program.write_text(
        WRAPPER.format(conf=cluster_root / "etc" / "slurm.conf", root=hosts, python=sys.executable)
    )
    program.chmod(0o755)
    epilog = work / "epilog"
    epilog.write_text(EPILOG.format(root=hosts, python=sys.executable))
    epilog.chmod(0o755)
    prolog = work / "prolog"
    prolog.write_text(PROLOG.format(root=hosts, python=sys.executable))
    prolog.chmod(0o755)
    try:
        cluster = start_slurm(
            nodes=3,
            root=cluster_root,
            extra_conf=(
                f"HealthCheckProgram={program}",
                f"HealthCheckInterval={INTERVAL_S}",
                "HealthCheckNodeState=ANY",
                f"Epilog={epilog}",
                f"Prolog={prolog}",
            ),
        )
    except SlurmUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield cluster, hosts
    cluster.stop()
    shutil.rmtree(work, ignore_errors=True)


def _runs(hosts: Path, node: str) -> list[str]:
    path = hosts / f"{node}.out"
    text = path.read_text() if path.exists() else ""
    return [line for line in text.splitlines() if line.startswith("exit=")]


def test_the_epilog_spools_the_jobs_end_for_the_agent(checked: tuple[SlurmCluster, Path]) -> None:
    """slurmd runs ``sentinel-agent epilog`` as the job ends: its end, with the script's exit
    code, waits in the agent's spool (the agent sends it: tests/agents/test_epilog.py)."""
    cluster, hosts = checked
    job_id = cluster.run(
        "sbatch", "--parsable", "--nodelist=node1", f"--chdir={cluster.jobs_dir}",
        "--wrap", "exit 3",
    ).stdout.strip()  # fmt: skip
    spool = hosts / "node1" / "spool"
    cluster._wait(lambda: any(spool.glob("job_end-*.json")), 120, "the job end spooled")
    (spooled,) = spool.glob("job_end-*.json")
    end = JobEnd.model_validate_json(spooled.read_text(), strict=False)
    assert (end.job_id, end.exit_code, end.signal, end.scheduler) == (job_id, 3, 0, "slurm")
    # The epilog returned at once: the node leaves COMPLETING and is idle again.
    cluster._wait(cluster._all_idle, 120, "node1 idle after its epilog")


def test_failing_checks_drain_their_node_and_a_healthy_one_stays_idle(
    checked: tuple[SlurmCluster, Path],
) -> None:
    cluster, hosts = checked
    # Healthy first: every node's check has run (twice) and passed; nothing is drained.
    cluster._wait(
        lambda: all(len(_runs(hosts, n)) >= 2 for n in ("node1", "node2", "node3")),
        120,
        "two health checks on every node",
    )
    assert {r for n in ("node1", "node2", "node3") for r in _runs(hosts, n)} == {"exit=0"}
    assert {n: (v["state"], v["state_flags"]) for n, v in cluster.sinfo().items()} == {
        "node1": ("idle", []),
        "node2": ("idle", []),
        "node3": ("idle", []),
    }

    # node2's GPU 5 runs out of spare rows; node3's kernel logs an XID 79 now.
    shutil.copy(SCENARIOS / "hbm_remap_failure.yaml", hosts / "node2.yaml")
    stamp = datetime.now(UTC).isoformat()
    (hosts / "node3.kern.log").write_text(
        f"{stamp} node3 kernel: NVRM: Xid (PCI:0000:9b:00): 79, pid=0, name=python, "
        "GPU has fallen off the bus.\n"
    )

    def drained(node: str) -> bool:
        return "DRAIN" in cluster.sinfo()[node]["state_flags"]

    cluster._wait(lambda: drained("node2") and drained("node3"), 120, "node2 and node3 drained")
    sinfo = cluster.sinfo()
    assert sinfo["node2"]["reason"] == (
        "sentinel: GPU 5 (00000000:AB:00.0) row remapping failed; "
        "GPU 5 (00000000:AB:00.0) 1 uncorrectable ECC error(s)"
    )
    assert sinfo["node3"]["reason"] == (
        "sentinel: XID 79 (robust_channel_gpu_has_fallen_off_the_bus) on PCI:0000:9b:00"
    )
    # The healthy node's checks went on passing through all of this.
    runs_before = len(_runs(hosts, "node1"))
    cluster._wait(lambda: len(_runs(hosts, "node1")) > runs_before, 120, "another node1 check")
    assert set(_runs(hosts, "node1")) == {"exit=0"}
    assert (sinfo["node1"]["state"], sinfo["node1"]["state_flags"]) == ("idle", [])
    assert "FAIL row_remap: GPU 5" in (hosts / "node2.out").read_text()


async def test_the_service_reads_our_drain_as_its_own_and_nhcs_as_evidence(
    checked: tuple[SlurmCluster, Path],
) -> None:
    """What the service's scheduler view makes of the two kinds of drain, read back through
    the Slurm adapter: the check's drain is Sentinel's own (not evidence, not an incident);
    NHC's reason is a signal of its check's category."""
    cluster, hosts = checked
    shutil.copy(SCENARIOS / "xid79.yaml", hosts / "node2.yaml")
    cluster.run(
        "scontrol", "update", "NodeName=node1", "State=DRAIN",
        "Reason=NHC: check_fs_mount:  /lustre/scratch not mounted",
    )  # fmt: skip
    cluster._wait(lambda: "DRAIN" in cluster.sinfo()["node2"]["state_flags"], 120, "node2 drained")
    listing = await make_scheduler(cluster.settings()).nodes()
    assert listing.ok, listing.error
    node1, node2 = listing.node("node1"), listing.node("node2")
    assert node1 is not None and node2 is not None
    assert node2.reason.startswith("sentinel: ")
    assert not worth_noting(node2)
    assert worth_noting(node1)
    (signal,) = scheduler_node_signals(host="node1", state=node1.raw_state, reason=node1.reason)
    assert (signal.family, signal.category_hint, signal.role) == (
        "nhc",
        Category.DEPENDENCY,
        "cause",
    )
    # The healthy node1's check does not undo a drain that is not its own.
    runs = len(_runs(hosts, "node1"))
    cluster._wait(lambda: len(_runs(hosts, "node1")) > runs, 120, "another node1 check")
    assert cluster.sinfo()["node1"]["reason"].startswith("NHC: check_fs_mount")


def test_a_failing_prolog_check_makes_slurm_drain_the_node_and_requeue_the_job(
    checked: tuple[SlurmCluster, Path],
) -> None:
    """Prolog mode: no --drain, the exit code alone; Slurm drains the node (its own reason)
    and puts the job back in the queue, held."""
    cluster, hosts = checked
    cluster.run("scontrol", "update", "NodeName=node1", "State=RESUME")
    cluster._wait(lambda: not cluster.sinfo()["node1"]["state_flags"], 120, "node1 back")
    shutil.copy(SCENARIOS / "hbm_remap_failure.yaml", hosts / "node1.prolog.yaml")
    job_id = cluster.run(
        "sbatch", "--parsable", "--nodelist=node1", f"--chdir={cluster.jobs_dir}",
        "--wrap", "sleep 30",
    ).stdout.strip()  # fmt: skip
    cluster._wait(lambda: "DRAIN" in cluster.sinfo()["node1"]["state_flags"], 120, "node1 drained")
    assert cluster.sinfo()["node1"]["reason"] == "Prolog error"
    assert "FAIL row_remap: GPU 5" in (hosts / "node1.prolog.out").read_text()
    cluster._wait(
        lambda: cluster.squeue()[job_id]["job_state"] == "PENDING", 120, "the job requeued"
    )
    cluster.run("scancel", job_id)
