"""The decoder specialised to the entry layout takes the usual dumps and declines the rest.

Whatever it declines, the generic fast path (`scan`) or the checked path reads: the
parser's answer is the checked path's either way (`assert_same`).
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from polars.testing import assert_frame_equal

from sentinel.flightrec import entryscan, parse
from sentinel.flightrec.models import DumpSet
from sentinel.flightrec.synth import Layout, Plan, dump_bytes, synthesize

from .conftest import FIXTURES, SCENARIOS
from .test_fr_scan import _checked, assert_same

NAME = "nccl_trace_rank_3"


def _doc() -> dict[str, Any]:
    plan = Plan(Layout(64), entries=60, kind="stuck", culprit=5)
    return synthesize(plan, 3, plan.layout.rank_groups(3))


def _specialised(data: bytes) -> object:
    return entryscan.parse_pickle(
        data,
        parse.MAX_TENSORS_PER_ENTRY,
        parse.MAX_DIMS_PER_TENSOR,
        parse._TOP_LEVEL_READ,
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_real_pytorch_pickles_take_the_specialised_decoder(scenario: str) -> None:
    for path in sorted((FIXTURES / scenario / "raw").iterdir()):
        assert _specialised(path.read_bytes()) is not None, path


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_synthetic_dumps_take_the_specialised_decoder(protocol: int) -> None:
    data = pickle.dumps(_doc(), protocol=protocol)
    assert _specialised(data) is not None
    assert_same(parse._parse_fast(data, NAME), _checked(data, NAME))


def test_an_entry_listed_twice_is_declined_and_read_by_the_generic_path() -> None:
    doc = _doc()
    doc["entries"].insert(1, doc["entries"][0])  # the same dict object twice
    data = pickle.dumps(doc, protocol=2)
    assert _specialised(data) is None
    assert_same(parse._parse_fast(data, NAME), _checked(data, NAME))


def test_an_entry_dict_read_elsewhere_is_declined() -> None:
    doc = _doc()
    entries = doc.pop("entries")
    pg_config = doc.pop("pg_config")
    doc["entries"] = entries
    # pg_config now comes after the entries and shares one of them: a walk of it meets
    # a dict whose items went into the columns.
    doc["pg_config"] = {**pg_config, "shared": entries[0]}
    data = pickle.dumps(doc, protocol=2)
    # The specialised decoder does not walk pg_config itself; a walk of its nodes cannot
    # read the entry, and the parser then takes the generic decoder's nodes.
    specialised = _specialised(data)
    assert specialised is not None
    nodes = specialised[0]
    with pytest.raises(KeyError):
        nodes.value(nodes.top_level_node("pg_config"))
    assert_same(parse._parse_fast(data, NAME), _checked(data, NAME))


def test_a_sizes_list_that_grows_after_its_entry_is_declined() -> None:
    """The columns read an entry's lists when the entry is complete; a pickle can still
    append to a memoized list later, and the unpickled entry then has the longer list."""
    doc = _doc()
    shared = doc["entries"][0]["input_sizes"]
    doc["zzz"] = shared  # the last key: a back-reference to the sizes list
    data = pickle.dumps(doc, protocol=2)
    assert data.endswith(b"u.")
    # before the final SETITEMS: append [1] to that list (EMPTY_LIST BININT1 1 APPEND APPEND)
    grown = data[:-2] + b"]K\x01aa" + data[-2:]
    checked = _checked(grown, NAME)
    assert checked.entries["in_sig"].cast(str)[0].startswith("[[4096, 8192], [1]]")
    assert _specialised(grown) is None
    assert_same(parse._parse_fast(grown, NAME), checked)


@pytest.mark.parametrize("json_rank", [None, 5])
def test_a_chunk_builds_the_tables_that_single_dumps_split_into(json_rank: int | None) -> None:
    """DumpSetBuilder makes the collectives and p2p tables straight from the scanned
    columns; DumpSet.of filters the concatenated frames of single dumps: the same rows."""
    plan = Plan(Layout(64), entries=80, kind="mismatch", culprit=17)
    builder = parse.DumpSetBuilder()
    single = []
    for rank in range(0, 64, 5):
        fmt = "json" if rank == json_rank else "pickle"
        data, name = dump_bytes(plan, rank, fmt), f"d/nccl_trace_rank_{rank}"
        builder.add(data, name)
        single.append(parse.parse_dump(data, name))
    built, whole = builder.build(), DumpSet.of(single)
    assert sorted(d.rank for d in built.dumps) == [d.rank for d in whole.dumps]
    for table in ("collectives", "p2p"):
        assert_frame_equal(
            getattr(built, table).sort("rank", maintain_order=True),
            getattr(whole, table).sort("rank", maintain_order=True),
            categorical_as_str=True,
        )


def test_a_chunk_computes_the_wait_as_the_single_dump_tables_do() -> None:
    """tables.py computes `wait` in numpy; DumpSet.of with polars' models.WAIT: the same
    values to the bit, timestamps that overflow the difference, nulls, NaN and inf too."""
    doc = _doc()
    # (started, completed): 5 ns is where / 1e6 and * 1e-6 differ in the last bit
    timings = [
        (2, 7),
        (123_456_788, -5),
        (-(2**63), 2**63 - 1),
        (2**63 - 1, -(2**63)),
        (1, 10**18),
        (None, 5),
        (5, None),
        (1_733_500_000_000_000_000, 1_733_500_000_009_000_001),
    ]
    durations = [None, float("nan"), float("inf"), -1.5, 0.0, 3.25, None]
    for i, entry in enumerate(doc["entries"]):
        started, completed = timings[i % len(timings)]
        entry["time_discovered_started_ns"] = started
        entry["time_discovered_completed_ns"] = completed
        duration = durations[i % len(durations)]
        if duration is None:
            entry.pop("duration_ms", None)
        else:
            entry["duration_ms"] = duration
    data = pickle.dumps(doc, protocol=2)
    builder = parse.DumpSetBuilder()
    builder.add(data, NAME)
    built = builder.build().collectives["wait"]
    expected = DumpSet.of([parse.parse_dump(data, NAME)]).collectives["wait"]
    assert built.is_null().to_list() == expected.is_null().to_list()
    assert [repr(v) for v in built.to_list()] == [repr(v) for v in expected.to_list()]
