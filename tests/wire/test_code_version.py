"""The heartbeat summary's code version is untrusted input: bounded, a safe alphabet."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pydantic
import pytest

from sentinel.wire import HeartbeatSummary

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def _summary(**kw: object) -> HeartbeatSummary:
    return HeartbeatSummary(
        id=uuid.uuid4(), observed_at=NOW, job_id="j", rank=0, local_rank=0, step=1,
        last_beat_at=NOW, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize(
    "version", ["3f2a9c1", "v1.2.3", "registry.local/train:v2@sha256:0b1c", "release+7"]
)
def test_a_git_sha_or_an_image_tag_is_a_code_version(version: str) -> None:
    assert _summary(code_version=version).code_version == version


@pytest.mark.parametrize(
    "version", ["", "v1 v2", "$(reboot)", "-rf", "a" * 129, "x\x00", "v1;reboot", "ü"]
)
def test_anything_else_is_refused(version: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="code_version"):
        _summary(code_version=version)


def test_an_agent_from_before_sends_none() -> None:
    assert _summary().code_version is None


def test_the_agent_checks_with_the_wires_alphabet() -> None:
    """The heartbeat client, the launcher and the agent's collector drop what the service
    would refuse, by one pattern (stdlib-only, so not imported from the wire): the same one."""
    from sentinel.wire.v1 import CodeVersion
    from sentinel_agent.heartbeat import CODE_VERSION

    assert CODE_VERSION.pattern == CodeVersion.__metadata__[0].pattern
