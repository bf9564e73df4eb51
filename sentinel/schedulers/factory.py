"""Builds the configured scheduler adapter."""

from __future__ import annotations

from sentinel.clock import Clock, SystemClock
from sentinel.schedulers.base import SchedulerAdapter
from sentinel.schedulers.dryrun import DryRunScheduler
from sentinel.schedulers.fake import FakeScheduler
from sentinel.schedulers.hostlist import expand
from sentinel.schedulers.settings import SchedulerSettings
from sentinel.schedulers.slurm import SlurmScheduler
from sentinel.schedulers.webhook import WebhookScheduler


def make_scheduler(settings: SchedulerSettings, *, clock: Clock | None = None) -> SchedulerAdapter:
    """Raises ValueError for a configuration that cannot work (e.g. an unreadable secret)."""
    if settings.kind == "slurm":
        s = settings.slurm
        return SlurmScheduler(
            bin_dir=s.bin_dir,
            conf=s.conf,
            timeout_s=s.timeout_s,
            fast_requeue=s.fast_requeue,
            nvidia_smi=s.nvidia_smi,
        )
    if settings.kind == "webhook":
        w = settings.webhook
        assert w is not None  # the settings model refuses kind=webhook without it
        return WebhookScheduler(
            str(w.url),
            w.secret_bytes(),
            clock=clock or SystemClock(),
            timeout_s=w.timeout_s,
            retries=w.retries,
            backoff_initial_s=w.backoff_initial_s,
            backoff_max_s=w.backoff_max_s,
        )
    if settings.kind == "fake":
        fake = FakeScheduler(expand(settings.fake.nodes), gpus_per_node=settings.fake.gpus_per_node)
        for job_id, hosts in settings.fake.jobs.items():
            fake.run_on(job_id, expand(hosts))
        return fake
    return DryRunScheduler()
