"""An incident's lifecycle: its states and which state may follow which (a table)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class IncidentState(StrEnum):
    """An incident's state; the values are what the incidents table stores."""

    open = "open"  # the job is interrupted, nothing done yet
    mitigating = "mitigating"  # its decision is carried out (or there is nothing to do)
    resolved = "resolved"  # the job trains again, or an operator says it is over


# The states that still concern someone (a new fault joins such an incident).
OPEN_STATES: Final = (IncidentState.open, IncidentState.mitigating)
# Which states each may move to; a new incident starts open.
TRANSITIONS: Final[dict[IncidentState, frozenset[IncidentState]]] = {
    IncidentState.open: frozenset({IncidentState.mitigating, IncidentState.resolved}),
    IncidentState.mitigating: frozenset({IncidentState.resolved}),
    IncidentState.resolved: frozenset(),
}


class IncidentTransitionRefused(Exception):
    """The incident's state does not allow the change: HTTP 409."""


class UnknownIncident(LookupError):
    """HTTP 404."""


def check_move(state: str, to: IncidentState) -> None:
    """Refuse a change the table does not allow."""
    if to not in TRANSITIONS[IncidentState(state)]:
        if state == IncidentState.resolved:
            raise IncidentTransitionRefused("incident is already resolved")
        raise IncidentTransitionRefused(f"an incident that is {state!r} cannot become {to.value!r}")
