"""No recording holds a log or XID record the agent would not have shipped.

Most log lines of a case are printed lines that the replay reads through the agent's
collectors. A case may still hold `log` and `xid` observations in its batches where it needs
wire-level control (an XID delivered late, say): each of them, its message written to the log
the agent tails, must come out of the agent's collectors as an equivalent record (the same
source, pattern, family and severity; an XID with the same number).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sentinel.replay.agent import through_the_agents
from sentinel.replay.recording import Line, Printed, recording_path
from sentinel.replay.runner import case_dirs

CASES = case_dirs([Path(__file__).parent / "cases"])
# Most lines of a recording are GPU samples and heartbeats: only these are decoded.
_LOG_OR_XID = re.compile(r'"kind":\s*"(?:log|xid)"')
_AT = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)


def wire_records(case: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number in the recording, observation) for every log and log-read XID record."""
    path = recording_path(case)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        for n, raw in enumerate(f, 1):
            if not _LOG_OR_XID.search(raw):
                continue
            for obs in json.loads(raw).get("batch", {}).get("observations", []):
                # An XID from NVML's event stream was read from no log.
                if obs["kind"] == "log" or (obs["kind"] == "xid" and obs["source"] != "nvml"):
                    yield n, obs


def as_printed(obs: dict[str, Any]) -> Printed:
    """The log line(s) a record says the host printed."""
    if obs["kind"] == "xid" or obs["source"] == "kernel":
        return Printed(host="host", log="kernel", text=obs["message"])
    file = Path(obs.get("path") or "train.log").name
    return Printed(host="host", log="training", file=file, text=obs["message"])


def what_the_agent_ships(printed: Printed) -> list[dict[str, Any]]:
    lines = through_the_agents([Line(at=_AT, lines=printed)])
    return [obs for line in lines if line.batch for obs in line.batch["observations"]]


def _shape(obs: dict[str, Any]) -> tuple[Any, ...]:
    if obs["kind"] == "xid":
        return ("xid", obs["xid"])
    return ("log", obs["source"], obs.get("pattern"), obs.get("family"), obs["severity"])


def unshippable(case: Path) -> list[str]:
    """Each wire-level log or XID record of the case that the agent would not have shipped."""
    problems = []
    for n, obs in wire_records(case):
        made = [_shape(o) for o in what_the_agent_ships(as_printed(obs))]
        if _shape(obs) not in made:
            problems.append(
                f"{case.name}, recording line {n}: {_shape(obs)} {obs['message'][:120]!r}; "
                f"the agent ships {made or 'nothing'}"
            )
    return problems


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_wire_level_log_record_is_one_the_agent_ships(case: Path) -> None:
    assert unshippable(case) == []


def test_a_record_the_agent_would_not_make_is_named_by_its_case_and_line(tmp_path: Path) -> None:
    xid = {
        "kind": "xid",
        "xid": 79,
        "message": "NVRM: Xid (PCI:0000:5d:00): 79, pid=0, name=python, GPU has fallen off the "
        "bus.",
        "source": "kernel_log",
    }
    # NCCL INFO chatter is never shipped; nor is a line no pattern knows called one.
    info = {
        "kind": "log",
        "source": "nccl",
        "message": "node-0001:1:2 [0] NCCL INFO Channel 00/32 : 0[0] -> 1[0] via P2P",
        "severity": "info",
    }
    relabelled = {**xid, "xid": 48}
    batch = {"host_id": "node-0001", "observations": [xid]}
    recording = [
        {"at": _AT.isoformat(), "batch": batch},
        {"at": _AT.isoformat(), "batch": {**batch, "observations": [xid, info]}},
        {"at": _AT.isoformat(), "batch": {**batch, "observations": [relabelled]}},
    ]
    case = tmp_path / "made-up"
    case.mkdir()
    (case / "recording.jsonl").write_text("".join(json.dumps(x) + "\n" for x in recording))
    problems = unshippable(case)
    assert [p.split(":")[0] for p in problems] == [
        "made-up, recording line 2",
        "made-up, recording line 3",
    ]
    assert "NCCL INFO" in problems[0] and "nothing" in problems[0]
    assert "('xid', 48)" in problems[1] and "('xid', 79)" in problems[1]
