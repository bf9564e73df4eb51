"""What an operator sends to change a decision: a note, or an override with its reason."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from sentinel.inputs import Comment, Reason
from sentinel.wire.v1 import Name


class Note(BaseModel):
    comment: Comment = ""


class OverrideIn(BaseModel):
    action: Literal["restart", "exclude_and_restart", "hold", "escalate", "none"]
    exclude_hosts: list[Name] = Field(default_factory=list, max_length=1000)
    reason: Reason
