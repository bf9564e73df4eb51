"""What an operator sends to change an incident."""

from __future__ import annotations

from pydantic import BaseModel

from sentinel.inputs import Reason


class ResolveIn(BaseModel):
    reason: Reason
