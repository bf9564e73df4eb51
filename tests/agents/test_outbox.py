"""The outbox: order, byte-identical resends, the cap policy, dead letters."""

from __future__ import annotations

import json
from pathlib import Path

from agent_helpers import ecc, sample, xid

from sentinel.wire import Batch
from sentinel_agent.clock import ManualClock
from sentinel_agent.transport.outbox import Outbox


def _outbox(tmp_path: Path, **kw: int) -> Outbox:
    return Outbox(
        tmp_path / "o.db",
        host_id="host-1",
        clock=ManualClock(),
        max_bytes=kw.pop("max_bytes", 1 << 20),
        **kw,
    )


def test_batches_keep_order_and_validate_against_the_wire_contract(tmp_path: Path) -> None:
    box = _outbox(tmp_path, max_batch_observations=3)
    items = [sample(i) for i in range(5)] + [xid()]
    box.put(items)
    assert box.depth == 6
    first = box.next_batch()
    assert first is not None
    parsed = Batch.model_validate_json(first.body)
    assert [o.id for o in parsed.observations] == [o.id for o in items[:3]]
    assert box.next_batch() == first  # not acked: the same batch again, same seq and bytes
    box.ack(first.seq)
    second = box.next_batch()
    assert second is not None and second.seq == first.seq + 1
    assert [o.id for o in Batch.model_validate_json(second.body).observations] == [
        o.id for o in items[3:]
    ]
    box.ack(second.seq)
    assert box.next_batch() is None and box.depth == 0


def test_a_formed_batch_survives_a_restart_byte_identical(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    box.put([xid(), sample()])
    before = box.next_batch()
    box.close()
    again = _outbox(tmp_path)
    after = again.next_batch()
    assert after == before
    assert again.depth == 2
    again.ack(after.seq)  # type: ignore[union-attr]
    again.put([ecc()])
    nxt = again.next_batch()
    assert nxt is not None and nxt.seq == before.seq + 1  # type: ignore[union-attr]


def test_sequence_starts_at_wall_clock_seconds(tmp_path: Path) -> None:
    clock = ManualClock()
    box = Outbox(tmp_path / "o.db", host_id="h", clock=clock, max_bytes=1 << 20)
    box.put([sample()])
    batch = box.next_batch()
    assert batch is not None and batch.seq == int(clock.now().timestamp())


def test_cap_drops_oldest_samples_never_events(tmp_path: Path) -> None:
    box = _outbox(tmp_path, max_bytes=64 * 1024)
    events = [xid() for _ in range(20)] + [ecc() for _ in range(20)]
    box.put(events[:20])
    samples = [sample(i % 8) for i in range(400)]  # ~100 KiB of samples: well over the cap
    dropped = 0
    for s in samples:
        dropped += box.put([s])
    dropped += box.put(events[20:])
    assert dropped > 0 and box.dropped_samples == dropped
    assert box.size_bytes <= 64 * 1024
    kept: list[str] = []
    while (batch := box.next_batch()) is not None:
        kept += [o["id"] for o in json.loads(batch.body)["observations"]]
        box.ack(batch.seq)
    assert {str(e.id) for e in events} <= set(kept)  # every event survived
    kept_samples = [k for k in kept if k in {str(s.id) for s in samples}]
    assert kept_samples == [str(s.id) for s in samples[-len(kept_samples) :]]  # newest kept


def test_events_alone_may_exceed_the_cap(tmp_path: Path) -> None:
    box = _outbox(tmp_path, max_bytes=64 * 1024)
    events = [xid() for _ in range(400)]
    for e in events:
        box.put([e])
    assert box.depth == 400 and box.dropped_samples == 0 and box.size_bytes > 64 * 1024


def test_dropped_count_persists(tmp_path: Path) -> None:
    box = _outbox(tmp_path, max_bytes=64 * 1024)
    for i in range(400):
        box.put([sample(i % 8)])
    dropped = box.dropped_samples
    box.close()
    assert dropped > 0 and _outbox(tmp_path, max_bytes=64 * 1024).dropped_samples == dropped


def test_dead_letter_moves_the_batch_aside(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    box.put([xid()])
    batch = box.next_batch()
    assert batch is not None
    box.dead_letter(batch.seq, 422, "schema error")
    assert box.next_batch() is None and box.depth == 0
    assert box.dead_letters() == [(batch.seq, 422, "schema error")]


def test_batch_byte_limit_splits_batches(tmp_path: Path) -> None:
    box = _outbox(tmp_path, max_batch_bytes=64 * 1024)
    box.put([sample(i % 8) for i in range(1000)])
    sizes = []
    while (batch := box.next_batch()) is not None:
        sizes.append(len(batch.body))
        box.ack(batch.seq)
    assert len(sizes) > 1 and max(sizes) <= 64 * 1024 + 512


def test_a_second_agent_cannot_open_the_same_outbox(tmp_path: Path) -> None:
    import pytest

    from sentinel_agent.transport.outbox import OutboxBusy

    first = _outbox(tmp_path)
    with pytest.raises(OutboxBusy):
        _outbox(tmp_path)
    first.close()
    _outbox(tmp_path).close()  # free again once the first is closed
