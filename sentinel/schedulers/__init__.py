"""Scheduler adapters: carry out drain, resume and requeue on Slurm, a webhook, or a fake."""

from sentinel.schedulers.base import (
    JobInfo,
    JobResult,
    JobState,
    NodeCounts,
    NodeInfo,
    NodesResult,
    NodeState,
    OpResult,
    SchedulerAdapter,
)
from sentinel.schedulers.factory import make_scheduler
from sentinel.schedulers.settings import SchedulerSettings

__all__ = [
    "JobInfo",
    "JobResult",
    "JobState",
    "NodeCounts",
    "NodeInfo",
    "NodeState",
    "NodesResult",
    "OpResult",
    "SchedulerAdapter",
    "SchedulerSettings",
    "make_scheduler",
]
