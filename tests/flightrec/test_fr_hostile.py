"""Hostile dumps are refused with an error naming the file, and nothing in them runs."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.flightrec.models import FrParseError, ParsedDump
from sentinel.flightrec.parse import parse_dump
from sentinel.flightrec.unpickler import load_plain

from .conftest import dump_dir

REAL = [
    dump_dir("hang", "raw") / "nccl_trace_rank_5",
    dump_dir("hang", "fixed") / "nccl_trace_rank_5",
    dump_dir("hang", "json") / "nccl_trace_rank_5",
]


class RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_reduce_calling_os_system_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    data = pickle.dumps({"version": "2.10", "entries": [RunsShell(marker)]}, protocol=2)

    with pytest.raises(FrParseError, match=r"evil\.pkl: refused global (posix|os)\.system"):
        parse_dump(data, "evil.pkl")

    assert not marker.exists()


@pytest.mark.parametrize("proto", [0, 2, 4, 5])
def test_any_global_is_refused_in_every_protocol(proto: int) -> None:
    data = pickle.dumps({"version": "2.10", "x": Path("/")}, protocol=proto)

    with pytest.raises(FrParseError, match="refused global"):
        load_plain(data, "g.pkl")


def test_persistent_id_is_refused() -> None:
    data = b"\x80\x02X\x01\x00\x00\x00aQ."  # BINPERSID

    with pytest.raises(FrParseError, match="refused persistent id"):
        load_plain(data, "p.pkl")


def test_deep_nesting_is_refused_as_a_wrong_shape() -> None:
    depth = 200_000
    data = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."

    with pytest.raises(FrParseError, match=r"deep\.pkl"):
        parse_dump(data, "deep.pkl")


def test_memo_repetition_bomb_is_refused_without_expanding() -> None:
    doc = pickle.loads(REAL[0].read_bytes())  # our own fixture, to mutate it
    dims = [1] * 1000
    tensors = [dims] * 1000
    doc["entries"][0]["input_sizes"] = [tensors] * 1000  # 10^9 ints if ever expanded
    data = pickle.dumps(doc, protocol=2)  # the pickler memoizes: a few KB
    assert len(data) < 20_000

    with pytest.raises(FrParseError, match=r"bomb\.pkl: too many"):
        parse_dump(data, "bomb.pkl")


# BINBYTES8, BINUNICODE8, BYTEARRAY8
@pytest.mark.parametrize("opcode", [b"\x8e", b"\x8d", b"\x96"])
def test_absurd_declared_length_is_refused(opcode: bytes) -> None:
    data = b"\x80\x05" + opcode + struct.pack("<Q", 2**60) + b"abc."

    with pytest.raises(FrParseError, match=r"huge\.pkl"):
        load_plain(data, "huge.pkl")


def test_binunicode_longer_than_the_file_is_refused() -> None:
    data = b"\x80\x02X" + struct.pack("<I", 2**31) + b"abc."

    with pytest.raises(FrParseError, match=r"len\.pkl: not a valid pickle"):
        load_plain(data, "len.pkl")


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.parent.name)
def test_every_truncation_of_a_real_dump_is_an_error_naming_the_file(path: Path) -> None:
    data = path.read_bytes()
    for cut in range(0, len(data) - 1, 7):
        with pytest.raises(FrParseError, match=r"cut-file"):
            parse_dump(data[:cut], "cut-file")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("collective_seq_id", "7"),
        ("input_sizes", [["4"]]),
        ("input_sizes", 4),
        ("process_group", "0"),
        ("state", "exploded"),
        ("state", ["scheduled"]),
        ("time_created_ns", 1.5),
        ("input_dtypes", [1]),
        ("frames", [{"name": 1}]),
    ],
)
def test_wrong_field_types_are_refused(field: str, value: object) -> None:
    doc = pickle.loads(REAL[0].read_bytes())  # our own fixture, to mutate it
    doc["entries"][-1][field] = value

    with pytest.raises(FrParseError, match=r"typed\.pkl"):
        parse_dump(pickle.dumps(doc, protocol=2), "typed.pkl")


def test_missing_field_and_wrong_version_are_refused() -> None:
    doc = pickle.loads(REAL[0].read_bytes())  # our own fixture, to mutate it
    del doc["entries"][0]["state"]
    with pytest.raises(FrParseError, match="lacks the field 'state'"):
        parse_dump(pickle.dumps(doc), "f.pkl")
    with pytest.raises(FrParseError, match="unsupported dump version"):
        parse_dump(b'{"version": "9.0", "entries": []}', "v.json")


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(FrParseError, match="over the"):
        load_plain(b"\x80\x02" + b"N" * 100 + b".", "big.pkl", max_bytes=50)


def _parses_or_refuses(data: bytes) -> None:
    try:
        result = parse_dump(data, "fuzz")
    except FrParseError as exc:
        assert "fuzz" in str(exc)
    else:
        assert isinstance(result, ParsedDump)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_fuzz_random_bytes(data: bytes) -> None:
    _parses_or_refuses(data)
    _parses_or_refuses(b"\x80\x02" + data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([p.read_bytes() for p in REAL]),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_fuzz_mutated_real_dumps(data: bytes, edits: list[tuple[int, int]]) -> None:
    mutated = bytearray(data)
    for where, byte in edits:
        mutated[where % len(mutated)] = byte
    _parses_or_refuses(bytes(mutated))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("record_id", 2**70, "record_id' is out of the 64-bit range"),
        ("record_id", True, "record_id' must be an integer"),
        ("collective_seq_id", "7", "collective_seq_id' must be an integer"),
        ("time_created_ns", -(2**64), "time_created_ns' is out of the 64-bit range"),
        ("duration_ms", 10**400, "duration_ms' is out of range"),
        ("duration_ms", "fast", "duration_ms' must be a number"),
        ("is_p2p", 1, "is_p2p' must be a boolean"),
    ],
)
def test_wrong_values_are_refused_before_polars_sees_them(
    field: str, value: object, message: str
) -> None:
    # Types and ranges are checked in Python first: polars can crash the process on some
    # hostile mixes instead of raising, and a dump is untrusted input.
    doc = json.loads(REAL[2].read_bytes())  # the JSON form: no pickle is ever loaded here
    doc["entries"][0][field] = value
    with pytest.raises(FrParseError, match=message):
        parse_dump(json.dumps(doc).encode(), "hostile")
