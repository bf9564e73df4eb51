"""An incident's states, read from the table: every change allowed or refused."""

from __future__ import annotations

import pytest

from sentinel.incidents.state import (
    OPEN_STATES,
    TRANSITIONS,
    IncidentState,
    IncidentTransitionRefused,
    check_move,
)

PAIRS = [(a, b) for a in IncidentState for b in IncidentState]


@pytest.mark.parametrize(("state", "to"), PAIRS)
def test_each_change_from_each_state(state: IncidentState, to: IncidentState) -> None:
    if to in TRANSITIONS[state]:
        check_move(state.value, to)
    else:
        with pytest.raises(IncidentTransitionRefused):
            check_move(state.value, to)


def test_the_table() -> None:
    assert {
        IncidentState.open: {IncidentState.mitigating, IncidentState.resolved},
        IncidentState.mitigating: {IncidentState.resolved},
        IncidentState.resolved: set(),
    } == TRANSITIONS


def test_the_values_are_the_stored_strings() -> None:
    assert [s.value for s in IncidentState] == ["open", "mitigating", "resolved"]
    assert OPEN_STATES == ("open", "mitigating")


def test_resolving_twice_is_refused_as_the_api_says_it() -> None:
    with pytest.raises(IncidentTransitionRefused, match=r"^incident is already resolved$"):
        check_move("resolved", IncidentState.resolved)
