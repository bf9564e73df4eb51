"""A stored event's evidence keeps the line as the host printed it, its source and its time."""

from __future__ import annotations

import uuid
from typing import Any

from builders import at

from sentinel.db.models import Event
from sentinel.incidents.signals import RECORD_SHOWN_MAX, event_signals
from sentinel.triage.verdict import Evidence, Verdict

XID_LINE = "NVRM: Xid (PCI:0000:9b:00): 79, pid=2711, name=python, GPU has fallen off the bus."


def _event(kind: str, payload: dict[str, Any], seconds: float = 3.0) -> Event:
    return Event(
        id=uuid.uuid4(),
        host_id="node17",
        seq=1,
        kind=kind,
        observed_at=at(seconds),
        received_at=at(seconds + 1),
        payload=payload,
    )


def _evidence(ev: Event) -> list[Evidence]:
    return [Evidence.of(s) for s in event_signals(ev)]


def test_a_log_line_is_evidence_with_its_file_and_time() -> None:
    line = f"[ 8812.113] {XID_LINE}"
    [evidence] = _evidence(
        _event("log", {"source": "kernel", "path": "/var/log/kern.log", "message": line})
    )
    assert (evidence.text, evidence.source, evidence.time) == (line, "/var/log/kern.log", at(3))
    assert (evidence.host, evidence.xid) == ("node17", 79)


def test_without_a_file_the_source_is_the_collector() -> None:
    [evidence] = _evidence(
        _event("xid", {"xid": 79, "gpu_index": 3, "message": XID_LINE, "source": "nvml"})
    )
    assert (evidence.text, evidence.source, evidence.time) == (XID_LINE, "nvml", at(3))
    [synthetic] = _evidence(_event("host_silent", {"seconds": 60.0}))
    assert synthetic.source is None and synthetic.time == at(3)


def test_a_multi_line_record_is_shown_whole_up_to_a_bound() -> None:
    report = (
        "NVRM: The NVIDIA GPU 0000:9b:00.0 (PCI ID: 10de:2330)\n"
        "NVRM: installed in this system has fallen off the bus and is not responding.\n"
        f"{XID_LINE}"
    )
    payload = {"source": "kernel", "path": "/dev/kmsg", "message": report}
    [evidence] = _evidence(_event("log", payload))
    assert evidence.text == report

    long = report + "\n" + "NVRM: GPU Board Serial Number: 1650924060120\n" * 60
    assert len(long) > RECORD_SHOWN_MAX
    [evidence] = _evidence(_event("log", {**payload, "message": long}))
    assert evidence.text == XID_LINE  # the line that matched, never a cut record


def test_a_verdict_stored_before_lines_were_located_still_loads() -> None:
    stored = {
        "category": "faulty_gpu",
        "confidence": 0.9,
        "reason": "Xid 79",
        "rule": "FaultyGpuOnFatalXid",
        "evidence": [
            {
                "text": XID_LINE,
                "pattern": None,
                "family": "kernel_xid",
                "role": "cause",
                "host": "node17",
                "event_id": None,
            }
        ],
    }
    [evidence] = Verdict.model_validate(stored).evidence
    assert (evidence.text, evidence.time, evidence.source) == (XID_LINE, None, None)
    assert Verdict.model_validate(stored).model_dump(mode="json")["evidence"][0]["time"] is None
