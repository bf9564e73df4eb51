"""Every example line of the knowledge base, written to a file the agent's collectors tail,
is shipped, and the service reads the shipped observation as `sentinel classify` reads the
line: the same signals and the same verdict.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sentinel.db.models import Event
from sentinel.incidents.signals import event_signals
from sentinel.ingest.repository import event_row
from sentinel.knowledge import PatternCatalog, PatternSpec, default_knowledge
from sentinel.triage import Signal, classify_signals, classify_text, extract_signals
from sentinel.wire import LogRecord, Observation, XidEvent
from sentinel_agent.clock import ManualClock
from sentinel_agent.collectors.base import Collector, Context, HostState
from sentinel_agent.collectors.kernel_log import KernelLogCollector
from sentinel_agent.collectors.training_log import TrainingLogCollector
from sentinel_agent.metrics import AgentMetrics

HOST = "gpu-0001"
EXAMPLES = [
    (spec, example) for spec in default_knowledge().patterns.patterns for example in spec.examples
]


def _context(clock: ManualClock) -> Context:
    return Context(
        host_id=HOST,
        clock=clock,
        emit=lambda observations, *, critical=False: None,
        metrics=AgentMetrics(HOST),
        state=HostState(),
    )


def _collector(kind: str, ctx: Context, log: Path, patterns: PatternCatalog | None) -> Collector:
    if kind == "kernel":
        return KernelLogCollector(ctx, path=log, interval_s=1, patterns=patterns)
    return TrainingLogCollector(ctx, paths=[str(log)], interval_s=1, patterns=patterns)


def ship(
    kind: str, text: str, tmp_path: Path, patterns: PatternCatalog | None = None
) -> list[Observation]:
    """What the agent ships for `text` appended to the log it tails, once it is quiet again."""
    clock = ManualClock()
    log = tmp_path / f"{kind}.log"
    log.write_text("")
    collector = _collector(kind, _context(clock), log, patterns)
    assert collector.poll() == []
    with log.open("a") as f:
        f.write(text + "\n")
    shipped = list(collector.poll())
    clock.advance(10)  # past the idle time of a message that might have gone on
    shipped += collector.poll()
    collector.close()
    return shipped


def stored(observation: Observation) -> Event:
    """The event row ingest stores for an observation of this host."""
    return Event(**event_row(HOST, 1, observation, datetime.now(UTC)))


def _key(signal: Signal) -> tuple[object, ...]:
    # An XID event carries no pattern name (the line's is nvrm_xid or xid_mention); the host is
    # the agent's on the service's side whatever the line names (tested on its own).
    pattern = None if signal.kind == "xid" else signal.pattern
    return (
        signal.kind,
        signal.family,
        pattern,
        signal.xid,
        signal.category_hint,
        signal.role,
        signal.severity,
        signal.gpu,
        signal.rank,
    )


@pytest.mark.parametrize("kind", ["kernel", "training"])
@pytest.mark.parametrize(
    ("spec", "example"), EXAMPLES, ids=[f"{s.name}-{i}" for i, (s, _) in enumerate(EXAMPLES)]
)
def test_every_example_is_shipped_and_read_as_classify_reads_it(
    kind: str, spec: PatternSpec, example: str, tmp_path: Path
) -> None:
    (observation,) = ship(kind, example, tmp_path)
    through_agent = event_signals(stored(observation))
    # `sentinel classify` on the line, told which host printed it (what the agent's batch says).
    pasted = extract_signals(example, default_host=HOST)
    assert sorted(map(_key, through_agent), key=repr) == sorted(map(_key, pasted), key=repr)
    assert classify_signals(through_agent).category == classify_signals(pasted).category
    if isinstance(observation, XidEvent):
        assert kind == "kernel" and any(s.kind == "xid" for s in pasted)
    else:
        assert isinstance(observation, LogRecord)
        assert observation.pattern in {s.pattern for s in pasted} | {"python_traceback"}


def test_a_pattern_added_for_triage_is_shipped_with_no_agent_edit(tmp_path: Path) -> None:
    packaged = default_knowledge().patterns
    added = PatternSpec(
        name="frobnicator_melted",
        family="host",
        regex=r"frobnicator \d+ melted",
        role="cause",
        category="server_chassis",
        severity="error",
        examples=("frobnicator 3 melted",),
    )
    catalog = PatternCatalog(patterns=(*packaged.patterns, added))
    line = "[ 812.5] frobnicator 3 melted"
    assert ship("kernel", line, tmp_path) == []
    (record,) = ship("kernel", line, tmp_path, patterns=catalog)
    assert isinstance(record, LogRecord) and record.pattern == "frobnicator_melted"


# ---------------------------------------------------------------- the agent's host is the host

FOREIGN_KERNEL = [
    "Dec  6 04:16:25 gpu-node-17 kernel: [ 5032.3] NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, "
    "name=python, GPU has fallen off the bus.",
    "Dec  6 04:16:26 gpu-node-17 kernel: [ 5033.0] nvme nvme0: I/O 12 QID 3 timeout, aborting",
    "2026-03-02T04:01:41Z gpu-node-18 kernel: EDAC MC0: 1 UE memory read error on "
    "CPU_SrcID#0_MC#0_Chan#1_DIMM#0",
]
FOREIGN_NCCL = [
    "gpu-node-99:1234:5678 [3] transport/net_ib.cc:1295 NCCL WARN NET/IB : Got completion "
    "from peer 10.1.1.1<52035> with error 12, opcode 0, len 0, vendor err 129 (Recv)",
    "[rank5]: gpu-node-98:4242:4343 [5] misc/socket.cc:30 NCCL WARN socketProgressOpt: Call "
    "to recv from 10.1.1.2<52036> failed : Connection reset by peer",
]


@pytest.mark.parametrize(
    ("kind", "line"),
    [("kernel", line) for line in FOREIGN_KERNEL] + [("training", line) for line in FOREIGN_NCCL],
)
def test_a_hostname_in_the_line_never_makes_another_host_the_culprit(
    kind: str, line: str, tmp_path: Path
) -> None:
    named = extract_signals(line)[0].host  # what a pasted excerpt says: the line's host
    assert named is not None and named != HOST
    (observation,) = ship(kind, line, tmp_path)
    signals = event_signals(stored(observation))
    assert signals and {s.host for s in signals} == {HOST}
    if isinstance(observation, LogRecord):  # kept as what the line said
        assert {s.attrs.get("line_host") for s in signals} == {named}
    verdict = classify_signals(signals)
    assert verdict.culprit_host in (HOST, None)


def test_sentinel_classify_still_reads_the_hosts_of_a_pasted_excerpt() -> None:
    verdict = classify_text("\n".join(FOREIGN_KERNEL[:1]))
    assert verdict.culprit_host == "gpu-node-17"
