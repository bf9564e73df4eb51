"""Planted culprits in synthetic NCCL-shaped dumps are found, whatever the format."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sentinel.flightrec.analyze import analyze_dumps
from sentinel.flightrec.dumpfiles import dump_paths
from sentinel.flightrec.grouping import per_group_and_rank
from sentinel.flightrec.models import VerdictKind
from sentinel.flightrec.parse import parse_dump, read_dump_set, read_dumps
from sentinel.flightrec.synth import Layout, Plan, dump_bytes, iter_dumps, write_dumps

LAYOUTS = {16: Layout(16, tp=8, pp=2), 64: Layout(64)}


@pytest.mark.parametrize("fmt", ["pickle", "json"])
@pytest.mark.parametrize("kind", ["missing", "stuck", "mismatch"])
@pytest.mark.parametrize("world", [16, 64])
def test_planted_culprit_is_found(world: int, kind: str, fmt: str) -> None:
    culprit = world - 3
    plan = Plan(LAYOUTS[world], entries=200, kind=kind, culprit=culprit)  # type: ignore[arg-type]
    dumps = [parse_dump(data, name) for name, data in iter_dumps(plan, fmt)]  # type: ignore[arg-type]
    random.Random(world).shuffle(dumps)

    verdict = analyze_dumps(dumps)

    assert verdict.kind is VerdictKind(kind)
    assert verdict.culprit_ranks == [culprit]
    assert verdict.group == "0"
    assert verdict.victim_ranks == []


def test_healthy_synthetic_job_is_healthy() -> None:
    plan = Plan(LAYOUTS[64], entries=200, kind="healthy")

    verdict = analyze_dumps(parse_dump(data, name) for name, data in iter_dumps(plan))

    assert verdict.kind is VerdictKind.healthy


def test_synthetic_dump_has_the_real_shape() -> None:
    plan = Plan(LAYOUTS[64], entries=200, kind="healthy")
    name, data = next(iter(iter_dumps(plan)))

    dump = parse_dump(data, name)

    assert dump.rank == 0 and dump.backend == "nccl"
    assert dump.entries.height == 200
    assert set(dump.entries["pg_desc"].cast(str)) == {"default_pg", "tp", "pp", "dp"}
    assert dump.pg_config["1"].ranks == tuple(range(8))  # tp within one host
    assert dump.entries["is_p2p"].any()
    assert any("train_step" in line for stack in dump.frames.values() for line in stack)


def test_files_read_in_parallel_give_the_same_verdict(tmp_path: Path) -> None:
    plan = Plan(LAYOUTS[64], entries=50, kind="stuck", culprit=9)
    write_dumps(plan, tmp_path)
    paths = dump_paths(tmp_path)
    progress: list[int] = []

    parallel = analyze_dumps(read_dumps(paths, workers=2, on_progress=progress.append))
    serial = analyze_dumps(read_dumps(paths, workers=1))

    assert parallel == serial
    assert parallel.culprit_ranks == [9]
    assert sum(progress) == 64


def test_a_dump_set_gives_the_same_verdict_as_single_dumps(tmp_path: Path) -> None:
    """read_dump_set (one table per worker chunk) against one frame per dump, with a
    JSON dump among the pickles so that both parsing paths meet in one set."""
    plan = Plan(LAYOUTS[64], entries=50, kind="mismatch", culprit=17)
    write_dumps(plan, tmp_path)
    (tmp_path / "nccl_trace_rank_3").write_bytes(dump_bytes(plan, 3, "json"))
    paths = dump_paths(tmp_path)
    progress: list[int] = []

    dump_set = read_dump_set(paths, workers=2, on_progress=progress.append)
    single = read_dumps(paths, workers=1)

    assert sum(progress) == 64 and len(dump_set.dumps) == 64
    assert dump_set.count("collectives") + dump_set.count("p2p") == sum(
        d.entries.height for d in single
    )
    assert analyze_dumps(dump_set) == analyze_dumps(single)
    # the workers' (group, rank) summaries are those of the whole set
    assert dump_set.members is not None
    whole = per_group_and_rank(
        dump_set.scan("collectives").collect(), dump_set.scan("p2p").collect()
    )
    assert_frame_equal(
        dump_set.members.sort("pg", "rank"),
        whole.sort("pg", "rank"),
        check_column_order=False,
        categorical_as_str=True,
    )
    assert analyze_dumps(read_dump_set(paths, workers=1)).culprit_ranks == [17]


def test_sequence_numbers_out_of_the_key_range_still_compare_exactly() -> None:
    plan = Plan(LAYOUTS[64], entries=50, kind="stuck", culprit=9)
    dumps = [parse_dump(data, name) for name, data in iter_dumps(plan)]
    shifted = [
        dataclasses.replace(d, entries=d.entries.with_columns(pl.col("seq") - 10**6)) for d in dumps
    ]
    verdict, base = analyze_dumps(shifted), analyze_dumps(dumps)
    assert verdict.culprit_ranks == base.culprit_ranks == [9]
    assert verdict.seq == base.seq - 10**6
