"""Each flight-recorder detector alone: one job where it finds its culprit, one where it finds
nothing.

`dumps` builds a small job's dumps (4 ranks: tp 2, pp 2) with the synthesizer's defaults, a
planted failure of its kinds, and an `edit` of each rank's document for what the synthesizer
does not plant (a pending send, a rank that arrives late). analyze_dumps runs the detectors in
order and resolves cascades; these call one detector's `find` on the context directly.
tests/test_every_rule_is_tested.py fails when a detector has no test here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sentinel.flightrec.analyze import (
    CallDiffersFromMajority,
    Context,
    RankArrivesLateToCollectives,
    RankBehindPeersInState,
    RankMissingFromCollective,
    UnmatchedSendRecv,
    build_context,
)
from sentinel.flightrec.models import VerdictKind
from sentinel.flightrec.parse import parse_dump
from sentinel.flightrec.synth import DUMP_PREFIX, Layout, Plan, PlantedKind, synthesize

LAYOUT = Layout(4, tp=2, pp=2)
Edit = Callable[[int, dict[str, Any]], None]


def dumps(kind: PlantedKind = "healthy", culprit: int = 3, edit: Edit | None = None) -> Context:
    """Every rank's dump of a healthy 4-rank job, or one with `kind` planted on `culprit`."""
    plan = Plan(LAYOUT, entries=40, kind=kind, culprit=culprit)
    parsed = []
    for rank in range(LAYOUT.world):
        doc = synthesize(plan, rank, LAYOUT.rank_groups(rank))
        if edit is not None:
            edit(rank, doc)
        parsed.append(parse_dump(json.dumps(doc).encode(), f"{DUMP_PREFIX}{rank}"))
    return build_context(parsed)


def test_a_call_that_differs_from_the_majority_is_found() -> None:
    [finding] = CallDiffersFromMajority().find(dumps("mismatch", culprit=3))
    assert (finding.kind, finding.culprit_ranks, finding.group) == (VerdictKind.mismatch, [3], "0")


def test_calls_that_agree_differ_from_nothing() -> None:
    assert CallDiffersFromMajority().find(dumps()) == []


def test_a_rank_behind_its_peers_in_state_is_found() -> None:
    [finding] = RankBehindPeersInState().find(dumps("stuck", culprit=3))
    assert (finding.kind, finding.culprit_ranks) == (VerdictKind.stuck, [3])


def test_a_rank_that_never_called_is_not_behind_in_state() -> None:
    # Missing is another detector's: the ranks that called are all in the same state.
    assert RankBehindPeersInState().find(dumps("missing", culprit=3)) == []


def test_a_rank_missing_from_a_collective_is_found() -> None:
    findings = RankMissingFromCollective().find(dumps("missing", culprit=3))
    assert [(f.kind, f.group, f.culprit_ranks) for f in findings] == [
        (VerdictKind.missing, "0", [3])
    ]


def test_a_rank_that_called_late_in_state_is_not_missing() -> None:
    assert RankMissingFromCollective().find(dumps("stuck", culprit=3)) == []


def _pending_last_send(rank: int, doc: dict[str, Any]) -> None:
    """Rank 0's last send to its pipeline peer (rank 2) is still pending."""
    if rank != 0:
        return
    send = [e for e in doc["entries"] if e["profiling_name"].startswith("nccl:send")][-1]
    send.update(
        state="started",
        retired=False,
        time_discovered_completed_ns=None,
        duration_ms=None,
    )


def test_a_send_without_its_receive_is_found() -> None:
    [finding] = UnmatchedSendRecv().find(dumps(edit=_pending_last_send))
    assert (finding.kind, finding.culprit_ranks, finding.waiting_ranks) == (
        VerdictKind.p2p,
        [2],
        [0],
    )


def test_completed_sends_and_receives_match() -> None:
    assert UnmatchedSendRecv().find(dumps()) == []


def _rank_3_arrives_late(rank: int, doc: dict[str, Any]) -> None:
    """Its peers wait 200 ms in every collective; rank 3, the last to join, 8.9 ms."""
    if rank == 3:
        return
    for entry in doc["entries"]:
        if entry["state"] == "completed":
            entry["duration_ms"] = 200.0


def test_the_rank_its_peers_keep_waiting_for_is_found() -> None:
    [finding] = RankArrivesLateToCollectives().find(dumps(edit=_rank_3_arrives_late))
    assert (finding.kind, finding.culprit_ranks) == (VerdictKind.straggler, [3])


def test_ranks_that_arrive_together_keep_nobody_waiting() -> None:
    assert RankArrivesLateToCollectives().find(dumps()) == []
