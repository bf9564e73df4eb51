"""What an operator sends to change a decision (a note, or an override with its reason) or to
ask for one (a restart in place for planned work)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from sentinel.inputs import Comment, Reason
from sentinel.wire.v1 import CodeVersion, Name


class Note(BaseModel):
    comment: Comment = ""


class OverrideIn(BaseModel):
    action: Literal["restart", "exclude_and_restart", "hold", "escalate", "none"]
    exclude_hosts: list[Name] = Field(default_factory=list, max_length=1000)
    reason: Reason


class RestartInPlaceIn(BaseModel):
    """An operator's restart in place of a job's ranks for planned work."""

    reason: Reason = Field(
        description="Why (a configuration or dataset update...): the decision says it."
    )
    code_version: CodeVersion | None = Field(
        None,
        description="A planned version change: the launchers restart the ranks with "
        "SENTINEL_CODE_VERSION set to it.",
    )
    at_checkpoint: bool = Field(
        True,
        description="Wait for the job's next durable checkpoint (the ranks are asked to save "
        "one; at most remediation.planned_checkpoint_wait_s) so that no work is lost; false: "
        "restart now, from the last durable checkpoint.",
    )
