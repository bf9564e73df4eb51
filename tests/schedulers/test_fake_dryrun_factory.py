"""The fake and dry-run adapters, and the factory that picks one from the settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sentinel.schedulers import SchedulerSettings, make_scheduler
from sentinel.schedulers.base import SchedulerAdapter
from sentinel.schedulers.dryrun import DryRunScheduler
from sentinel.schedulers.fake import FakeScheduler
from sentinel.schedulers.slurm import SlurmScheduler
from sentinel.schedulers.webhook import WebhookScheduler


def five_nodes() -> FakeScheduler:
    return FakeScheduler([f"node{i}" for i in range(1, 6)])


async def test_fake_runs_the_acceptance_scenario() -> None:
    fake = five_nodes()
    job = fake.submit("77", 4)
    culprit = job.nodes[1]

    drained = await fake.drain(culprit, "xid 79")
    requeued = await fake.requeue("77", [culprit])

    assert drained.ok and requeued.ok
    state = await fake.job_state("77")
    assert state.job is not None
    assert state.job.state == "running" and culprit not in state.job.nodes
    assert (len(state.job.nodes), state.job.restarts, state.job.excluded_nodes) == (
        4,
        1,
        (culprit,),
    )
    nodes = await fake.nodes()
    node = nodes.node(culprit)
    assert node is not None and node.state == "drained"
    assert nodes.counts().idle == 0 and nodes.counts().drained == 1


async def test_fake_job_waits_for_capacity_and_starts_on_resume() -> None:
    fake = five_nodes()
    fake.submit("1", 4)
    await fake.drain("node5", "spare is bad")
    await fake.requeue("1", ["node1"])

    waiting = await fake.job_state("1")
    assert waiting.job is not None
    assert (waiting.job.state, waiting.job.reason) == ("pending", "Resources")

    await fake.resume("node5")
    running = await fake.job_state("1")
    assert running.job is not None and running.job.state == "running"
    assert "node1" not in running.job.nodes


async def test_fake_failures_are_results() -> None:
    fake = five_nodes()
    fake.submit("1", 2)
    fake.finish("1")
    fake.fail_next("drain", "controller down", retryable=True)

    results = [
        await fake.drain("node1", "x"),
        await fake.drain("node99", "x"),
        await fake.requeue("1", []),
        await fake.requeue("2", []),
        await fake.job_state("2"),
    ]

    assert [r.ok for r in results] == [False] * 5
    assert results[0].retryable and not any(r.retryable for r in results[1:])
    assert [c[0] for c in fake.calls] == ["drain", "drain", "requeue", "requeue", "job_state"]


async def test_dry_run_records_and_changes_nothing() -> None:
    fake = five_nodes()
    fake.submit("9", 4)
    dry = DryRunScheduler(reads_from=fake)

    results = [
        await dry.drain("node2", "xid 79"),
        await dry.requeue("9", ["node2"]),
        await dry.resume("node2"),
    ]

    assert all(r.ok and r.output.startswith("dry run, not done") for r in results)
    assert dry.planned == results
    assert [c[0] for c in fake.calls] == []
    state = await dry.job_state("9")
    assert state.job is not None and state.job.restarts == 0
    assert (await dry.nodes()).counts().drained == 0
    assert not (await dry.drain("bad host", "x")).ok


async def test_dry_run_alone_has_nothing_to_read() -> None:
    dry = DryRunScheduler()
    assert not (await dry.job_state("1")).ok
    assert not (await dry.nodes()).ok


def test_factory_defaults_to_dry_run() -> None:
    assert isinstance(make_scheduler(SchedulerSettings()), DryRunScheduler)


def test_factory_builds_each_kind(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("0123456789abcdef0123\n")
    cases: list[tuple[dict[str, object], type]] = [
        ({"kind": "slurm", "slurm": {"conf": "/etc/slurm/slurm.conf"}}, SlurmScheduler),
        ({"kind": "fake", "fake": {"nodes": "gpu[01-16]"}}, FakeScheduler),
        (
            {
                "kind": "webhook",
                "webhook": {"url": "https://x.test/h", "secret_file": str(secret_file)},
            },
            WebhookScheduler,
        ),
    ]
    for raw, cls in cases:
        adapter: SchedulerAdapter = make_scheduler(SchedulerSettings.model_validate(raw))
        assert isinstance(adapter, cls)


async def test_factory_fake_has_the_configured_nodes() -> None:
    adapter = make_scheduler(
        SchedulerSettings.model_validate({"kind": "fake", "fake": {"nodes": "n[1-3]"}})
    )
    assert [n.name for n in (await adapter.nodes()).nodes] == ["n1", "n2", "n3"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"kind": "webhook"}, "scheduler.webhook is not set"),
        ({"kind": "webhook", "webhook": {"url": "https://x.test"}}, "exactly one of"),
        ({"kind": "webhook", "webhook": {"url": "https://x.test", "secret": "short"}}, "16"),
        ({"kind": "webhook", "webhook": {"url": "ftp://x", "secret": "s" * 20}}, "URL scheme"),
        ({"kind": "lsf"}, "Input should be"),
        ({"kind": "fake", "fake": {"nodes": "n[1-"}}, "fake.nodes"),
        ({"kind": "fake", "fake": {"nodes": "n[1-2]", "jobs": {"7": "n[2-3]"}}}, r"fake.jobs\[7\]"),
        ({"kind": "fake", "fake": {"jobs": {"7": "n[1-"}}}, r"fake.jobs\[7\]"),
        ({"slurm": {"timeout_s": 0}}, "greater than 0"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_bad_settings_are_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SchedulerSettings.model_validate(raw)


def test_an_unreadable_secret_file_stops_the_factory(tmp_path: Path) -> None:
    settings = SchedulerSettings.model_validate(
        {
            "kind": "webhook",
            "webhook": {"url": "https://x.test", "secret_file": str(tmp_path / "nope")},
        }
    )
    with pytest.raises(ValueError, match="secret_file"):
        make_scheduler(settings)


def test_secrets_do_not_show_in_settings() -> None:
    settings = SchedulerSettings.model_validate(
        {"kind": "webhook", "webhook": {"url": "https://x.test", "secret": "do-not-print-this-one"}}
    )
    assert "do-not-print" not in repr(settings) and "do-not-print" not in settings.model_dump_json()


async def test_the_fake_cluster_runs_the_jobs_configured_on_their_allocations() -> None:
    """A live service's fake cluster with a job holding a standby node (tests/agents)."""
    settings = SchedulerSettings.model_validate(
        {"kind": "fake", "fake": {"nodes": "n[1-4]", "jobs": {"7": "n[1-3]"}}}
    )
    fake = make_scheduler(settings)
    job = (await fake.job_state("7")).job
    assert job is not None and (job.state, job.nodes) == ("running", ("n1", "n2", "n3"))
    assert (await fake.nodes()).counts().idle == 1
