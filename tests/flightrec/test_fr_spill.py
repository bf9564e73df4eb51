"""A pooled read leaves its tables in files the workers wrote: the analysis reads the same
rows from them, and the files go with the set (or with the service's job process)."""

from __future__ import annotations

import gc
import gzip
import tempfile
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sentinel.flightrec.analyze import analyze_dumps
from sentinel.flightrec.dumpfiles import dump_paths
from sentinel.flightrec.models import DumpSet, Table
from sentinel.flightrec.parse import read_dump_set, read_dumps
from sentinel.flightrec.synth import Layout, Plan, write_dumps

PLAN = Plan(Layout(128), entries=60, kind="stuck", culprit=77)


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("dumps")
    write_dumps(PLAN, folder)
    return dump_paths(folder)


def _sorted(table: pl.DataFrame) -> pl.DataFrame:
    return table.sort("rank", "record_id" if "record_id" in table.columns else "p2p_seq")


@pytest.mark.parametrize("table", ["collectives", "p2p"])
def test_a_pooled_read_spills_its_tables_and_reads_back_the_same_rows(
    dumps: list[Path], tmp_path: Path, table: Table
) -> None:
    spilled = read_dump_set(dumps, workers=2, spill_parent=tmp_path)
    in_memory = DumpSet.of(read_dumps(dumps, workers=1))
    expected: pl.DataFrame = getattr(in_memory, table)

    assert {t.table for t in spilled.spilled} == {"collectives", "p2p"}
    assert getattr(spilled, table).is_empty() and not expected.is_empty()
    assert all(Path(t.path).parent.parent == tmp_path for t in spilled.spilled)
    assert spilled.count(table) == in_memory.count(table) == expected.height
    assert_frame_equal(
        _sorted(spilled.scan(table).collect()), _sorted(expected), categorical_as_str=True
    )
    # a rank's rows come from the files that hold its rank, and are all of them
    for rank in (0, 77, 127):
        assert_frame_equal(
            _sorted(spilled.scan(table, [rank]).filter(pl.col("rank") == rank).collect()),
            _sorted(expected.filter(pl.col("rank") == rank)),
            categorical_as_str=True,
        )
    assert analyze_dumps(spilled) == analyze_dumps(in_memory)
    verdict = analyze_dumps(spilled)
    assert verdict.culprit_ranks == [77]
    assert any("rank 77's last collective" in line for line in verdict.evidence)


def test_the_files_go_with_the_set(dumps: list[Path], tmp_path: Path) -> None:
    dump_set = read_dump_set(dumps, workers=2, spill_parent=tmp_path)
    files = [Path(t.path) for t in dump_set.spilled]
    assert files and all(f.exists() for f in files)

    del dump_set
    gc.collect()

    assert list(tmp_path.iterdir()) == []


def test_without_a_directory_for_the_files_the_tables_come_back_in_memory(
    dumps: list[Path], tmp_path: Path
) -> None:
    dump_set = read_dump_set(dumps, workers=2, spill_parent=tmp_path / "no-such-directory")

    assert dump_set.spilled == () and dump_set.spill_dir is None
    assert dump_set.collectives.height > 0 and dump_set.p2p.height > 0
    assert analyze_dumps(dump_set).culprit_ranks == [77]


def test_a_table_that_cannot_be_written_stays_in_memory(dumps: list[Path], tmp_path: Path) -> None:
    part = DumpSet.of(read_dumps(dumps[:8], workers=1))

    kept = part.spilled_to(tmp_path / "no-such-directory")

    assert kept.spilled == ()
    assert kept.collectives.height == part.collectives.height > 0
    assert kept.p2p.height == part.p2p.height > 0


def test_the_service_job_process_leaves_no_files(
    dumps: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentinel.incidents.flightrec import FrJobFailure, analyse_isolated

    stored = []
    for path in dumps:
        gz = tmp_path / f"{path.name.rsplit('_', 1)[1]}.gz"
        gz.write_bytes(gzip.compress(path.read_bytes(), 1))
        stored.append((int(gz.name.split(".")[0]), str(gz)))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    verdict, errors = analyse_isolated(stored, {}, timeout_s=120, workers=2)
    assert verdict.culprit_ranks == [77] and errors == []
    assert list(scratch.iterdir()) == []

    # killed with its parsing processes at its time limit, however far it got: the parent
    # removes whatever they wrote
    with pytest.raises(FrJobFailure, match="limit"):
        analyse_isolated(stored, {}, timeout_s=0.5, workers=2)
    assert list(scratch.iterdir()) == []
