"""The compiled fast path reads exactly what the checked path reads, or declines.

`parse_dump` tries `scan` first and falls back to the restricted unpickler; these
tests hold the fast path to the checked one: the same ParsedDump on every dump it
takes, and a decline (never a crash, never a different answer) on everything else.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from sentinel.flightrec import parse, scan
from sentinel.flightrec.models import FrParseError, ParsedDump
from sentinel.flightrec.synth import Layout, Plan, dump_bytes, synthesize
from sentinel.flightrec.unpickler import load_plain

from .conftest import FIXTURES, SCENARIOS


def _checked(data: bytes, name: str) -> ParsedDump:
    return parse._to_parsed(load_plain(data, name), name)


def assert_same(fast: ParsedDump | None, checked: ParsedDump) -> None:
    assert fast is not None, "the fast path declined a well-formed dump"
    assert_frame_equal(fast.entries, checked.entries, categorical_as_str=True)
    assert fast.entries.schema == checked.entries.schema
    assert fast.frames == checked.frames
    assert fast.pg_config == checked.pg_config
    assert (fast.name, fast.rank, fast.version, fast.backend) == (
        checked.name,
        checked.rank,
        checked.version,
        checked.backend,
    )


def _small_plan(kind: str = "stuck") -> Plan:
    return Plan(Layout(64), entries=120, kind=kind, culprit=5)  # type: ignore[arg-type]


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("fmt", ["raw", "fixed"])
def test_real_pytorch_pickles_take_the_fast_path_and_read_the_same(scenario: str, fmt: str) -> None:
    for path in sorted((FIXTURES / scenario / fmt).iterdir()):
        data = path.read_bytes()
        assert_same(parse._parse_fast(data, str(path)), _checked(data, str(path)))


@pytest.mark.parametrize("kind", ["healthy", "missing", "stuck", "mismatch"])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_synthetic_dumps_read_the_same_in_every_protocol(kind: str, protocol: int) -> None:
    plan = _small_plan(kind)
    for rank in (0, 5, 9, 63):
        doc = synthesize(plan, rank, plan.layout.rank_groups(rank))
        data = pickle.dumps(doc, protocol=protocol)
        name = f"d/nccl_trace_rank_{rank}"
        assert_same(parse._parse_fast(data, name), _checked(data, name))


def test_unshared_strings_and_shapes_read_the_same() -> None:
    """A writer that does not memoize repeats every string and list in full."""
    plan = _small_plan()
    doc = synthesize(plan, 3, plan.layout.rank_groups(3))
    for entry in doc["entries"]:
        entry["state"] = "".join(entry["state"])  # a distinct object per entry
        entry["input_dtypes"] = [str(d) + "" for d in entry["input_dtypes"]]
        entry["input_sizes"] = [list(t) for t in entry["input_sizes"]]
        entry["frames"] = [dict(f) for f in entry["frames"]]
    data = pickle.dumps(doc, protocol=2)
    fast = parse._parse_fast(data, "nccl_trace_rank_3")
    assert_same(fast, _checked(data, "nccl_trace_rank_3"))


def test_optional_fields_absent_or_none_read_the_same() -> None:
    plan = _small_plan()
    doc = synthesize(plan, 2, plan.layout.rank_groups(2))
    for i, entry in enumerate(doc["entries"]):
        if i % 3 == 0:
            del entry["is_p2p"], entry["duration_ms"], entry["frames"]
        elif i % 3 == 1:
            entry["is_p2p"] = None
            entry["duration_ms"] = 7  # an int duration is a float column value
            entry["time_discovered_started_ns"] = 0  # 0 reads as null, as in JSON dumps
    data = pickle.dumps(doc, protocol=2)
    assert_same(parse._parse_fast(data, "r2"), _checked(data, "r2"))


def test_parse_dump_uses_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    data = dump_bytes(_small_plan(), 4)
    monkeypatch.setattr(parse, "load_plain", lambda *_a: pytest.fail("took the slow path"))
    assert parse.parse_dump(data, "nccl_trace_rank_4").rank == 4


# -- the machine itself: plain data in, the same plain data out ----------------------------

# Wider ints are declined (the checked path refuses them in entries).
_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _plain(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(leaves, _containers, max_leaves=30)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=6) | _INT64, inner, max_size=5)
    )


_LEAVES = st.none() | st.booleans() | _INT64 | st.floats(allow_nan=False) | st.text(max_size=12)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    case=st.tuples(_plain(_LEAVES), st.just(2))
    # bytes exist from protocol 3; protocol 2 spells them as a call to codecs.encode
    | st.tuples(_plain(_LEAVES | st.binary(max_size=12)), st.sampled_from([3, 4, 5]))
)
def test_the_machine_rebuilds_any_plain_value(case: tuple[Any, int]) -> None:
    value, protocol = case
    data = pickle.dumps(value, protocol=protocol)
    nodes = scan.Nodes(data)
    assert nodes.run()
    assert nodes.value(nodes.root) == value


def test_shared_values_stay_shared_and_floats_keep_their_bits() -> None:
    shared = [1, 2]
    value = {"a": shared, "b": [shared, shared], "f": [-0.0, math.inf, 1e-310, 2.5]}
    data = pickle.dumps(value, protocol=2)
    nodes = scan.Nodes(data)
    assert nodes.run()
    rebuilt = nodes.value(nodes.root)
    assert rebuilt == value
    assert math.copysign(1, rebuilt["f"][0]) == -1


# -- hostile bytes: the fast path declines and the checked path words the error -------------


def _declines(data: bytes) -> None:
    assert parse._parse_fast(data, "h.pkl") is None


def test_a_global_is_declined_and_refused_by_the_checked_path() -> None:
    data = pickle.dumps({"version": "2.10", "entries": [Path("/")]}, protocol=2)
    _declines(data)
    with pytest.raises(FrParseError, match="refused global"):
        parse.parse_dump(data, "h.pkl")


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x02]q\x00h\x00a.",  # a list that contains itself
        b"\x80\x02]r\xff\xff\xff\x7f.",  # LONG_BINPUT far beyond the file
        b"\x80\x02h\x05.",  # BINGET of nothing
        b"\x80\x02X\xff\xff\xff\x7fab.",  # a declared length beyond the file
        b"\x80\x02\x8a\x09" + b"\x01" * 9 + b".",  # an int beyond 64 bits
        b"\x80\x02(K\x01K\x02u.",  # SETITEMS with no dict under the mark
        b"\x80\x02}(]K\x01u.",  # a list as a dict key
        b"\x80\x02}(K\x01u.",  # an odd number of SETITEMS items
        b"\x80\x02e.",  # APPENDS without a mark
        b"\x80\x02",  # no STOP
        b"\x80\x09N.",  # an unknown protocol
    ],
)
def test_malformed_pickles_are_declined(data: bytes) -> None:
    _declines(data)


def test_a_memo_bomb_is_declined_without_expanding() -> None:
    # Each level is a list holding the level below ten times: 10**30 leaves if walked.
    out = bytearray(b"\x80\x02]q\x00")
    for level in range(1, 31):
        out += b"](" + b"h" + bytes([level - 1]) * 1 + (b"h" + bytes([level - 1])) * 9
        out += b"eq" + bytes([level])
    out += b"."
    nodes = scan.Nodes(bytes(out))
    assert nodes.run()
    with pytest.raises(OverflowError):
        nodes.value(nodes.root)
    _declines(bytes(out))


def _fuzz_seed() -> bytes:
    return dump_bytes(Plan(Layout(32), entries=12, kind="stuck", culprit=3), 3)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_mutated_dumps_read_the_same_or_are_declined(data: st.DataObject) -> None:
    raw = bytearray(_fuzz_seed())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = data.draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[at] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[at:]
        elif op == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif len(raw) > 1:
            del raw[at : at + data.draw(st.integers(1, 16))]
        if not raw:
            raw = bytearray(b"\x80")
    blob = bytes(raw)
    fast = parse._parse_fast(blob, "nccl_trace_rank_3")
    try:
        checked = _checked(blob, "nccl_trace_rank_3")
    except FrParseError:
        assert fast is None, "the fast path took a dump the checked path refuses"
        return
    if fast is not None:
        assert_same(fast, checked)


@pytest.mark.parametrize(
    "text",
    ["plain", "ünïcödé", "日本語", "😀 emoji", "\udc80 lone surrogate", "\U0010ffff"],
)
def test_strings_pickle_accepts_are_accepted(text: str) -> None:
    data = pickle.dumps([text, text + "x"], protocol=2)
    nodes = scan.Nodes(data)
    assert nodes.run()
    assert nodes.value(nodes.root) == [text, text + "x"]


@pytest.mark.parametrize(
    "raw",
    [
        b"\x80",
        b"\xc0\xaf",
        b"\xe0\x80\xaf",
        b"\xf4\x90\x80\x80",
        b"\xf5\x80\x80\x80",
        b"ab\xe6\x97",
    ],
)
def test_invalid_utf8_anywhere_is_declined(raw: bytes) -> None:
    data = b"\x80\x02]q\x00X" + len(raw).to_bytes(4, "little") + raw + b"a."
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(data)
    assert not scan.Nodes(data).run()


# A pg_config as PyTorch writes it, and everything else a dump may hold there: the fast
# path reads the usual shape from its nodes (`parse._usual_pg_config`) and anything else as
# the checked path does; either way the groups are the checked path's.
_RANK_TEXT = st.lists(st.integers(-2, 40), max_size=6).map(str) | st.just(
    str(list(range(400)))  # over 1 KB: the byte-compared cache of long lists
)
_GROUP = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=3),
        "desc": st.text(max_size=6) | _INT64 | st.none(),
        "ranks": _RANK_TEXT | st.lists(st.integers(-1, 9), max_size=4) | st.none() | _INT64,
        "extra": _plain(_LEAVES),
    },
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    pg_config=st.none()
    | st.lists(_INT64, max_size=2)
    | st.dictionaries(st.text(max_size=4) | _INT64, _GROUP | _plain(_LEAVES), max_size=4),
    protocol=st.sampled_from([2, 4, 5]),
    present=st.booleans(),
)
def test_any_pg_config_reads_as_the_checked_path_reads_it(
    pg_config: Any, protocol: int, present: bool
) -> None:
    doc = synthesize(_small_plan(), 3, _small_plan().layout.rank_groups(3))
    if present:
        doc["pg_config"] = pg_config
    else:
        del doc["pg_config"]
    data = pickle.dumps(doc, protocol=protocol)
    name = "d/nccl_trace_rank_3"
    fast = parse._parse_fast(data, name)
    try:
        checked = _checked(data, name)
    except FrParseError:
        assert fast is None, "the fast path took a dump the checked path refuses"
        return
    assert_same(fast, checked)


def test_a_long_rank_list_that_changes_is_read_again() -> None:
    """The cache of long rank lists compares bytes: an equal-length list that differs is
    not taken for the last one."""
    doc = synthesize(_small_plan(), 3, _small_plan().layout.rank_groups(3))
    for ranks in (list(range(1000, 1400)), list(range(2000, 2400)), list(range(1000, 1400))):
        doc["pg_config"] = {"0": {"name": "0", "desc": "default_pg", "ranks": str(ranks)}}
        data = pickle.dumps(doc, protocol=2)
        fast = parse._parse_fast(data, "nccl_trace_rank_3")
        assert fast is not None
        assert fast.pg_config["0"].ranks == tuple(ranks)
