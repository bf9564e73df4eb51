"""The analyzer on real PyTorch 2.13 dumps: rank 5 in every scenario, in any file order."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from sentinel.flightrec.analyze import analyze_dumps
from sentinel.flightrec.cli import app
from sentinel.flightrec.dumpfiles import dump_paths
from sentinel.flightrec.models import ParsedDump, VerdictKind
from sentinel.flightrec.parse import read_dump

from .conftest import FORMATS, SCENARIOS, dump_dir

ORDERS = ("sorted", "reversed", "shuffled-1", "shuffled-2")

EXPECTED = {
    "hang": (VerdictKind.missing, "0", 7, "all_reduce"),
    "hang_cascade": (VerdictKind.missing, "3", 4, "all_reduce"),
    "mismatch": (VerdictKind.mismatch, "0", 7, "all_reduce"),
    "wrong_op": (VerdictKind.mismatch, "0", 7, "all_reduce"),
}


def load(scenario: str, fmt: str, order: str) -> list[ParsedDump]:
    dumps = [read_dump(p) for p in dump_paths(dump_dir(scenario, fmt))]
    if order == "reversed":
        dumps.reverse()
    elif order.startswith("shuffled"):
        random.Random(order).shuffle(dumps)
    return dumps


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_verdict_names_rank_5_in_any_format_and_order(scenario: str, fmt: str, order: str) -> None:
    verdict = analyze_dumps(load(scenario, fmt, order))

    if scenario == "healthy":
        assert verdict.kind is VerdictKind.healthy
        assert verdict.culprit_ranks == []
        return
    kind, group, seq, op = EXPECTED[scenario]
    assert (verdict.kind, verdict.group, verdict.seq, verdict.op) == (kind, group, seq, op)
    assert verdict.culprit_ranks == [5]
    assert 5 not in verdict.victim_ranks


@pytest.mark.parametrize("fmt", FORMATS)
def test_cascade_names_rank_4_a_victim_and_one_origin(fmt: str) -> None:
    verdict = analyze_dumps(load("hang_cascade", fmt, "reversed"))

    assert verdict.victim_ranks == [4]
    roles = {(f.group, f.role) for f in verdict.findings}
    assert ("5", "cascade") in roles  # dp group 5 blamed rank 4, who waited on rank 5
    assert any("rank 4 is a victim" in line for line in verdict.evidence)


def test_gloo_dumps_carry_no_timings_and_broken_pg_config() -> None:
    dump = read_dump(dump_dir("hang", "raw") / "nccl_trace_rank_0")

    assert dump.backend == "gloo"
    assert dump.pg_config == {}  # the single '' key is dropped
    assert dump.entries["t_started"].null_count() == dump.entries.height
    assert dump.frames  # the pickle has stacks, the JSON has none


def test_fixed_pg_config_gives_membership() -> None:
    dump = read_dump(dump_dir("hang", "fixed") / "nccl_trace_rank_5")

    assert dump.pg_config["0"].ranks == tuple(range(8))
    assert dump.pg_config["3"].ranks == (4, 5)


def test_rank_map_names_host_and_gpu() -> None:
    rank_map = {r: (f"host-{r // 4}", r % 4) for r in range(8)}

    verdict = analyze_dumps(load("hang_cascade", "raw", "sorted"), rank_map)

    assert [(loc.rank, loc.host, loc.gpu) for loc in verdict.culprit_locations] == [
        (5, "host-1", 1)
    ]
    assert [loc.rank for loc in verdict.victim_locations] == [4]


def test_verdict_round_trips_as_json() -> None:
    verdict = analyze_dumps(load("mismatch", "json", "sorted"))

    again = type(verdict).model_validate_json(verdict.model_dump_json())

    assert again == verdict


runner = CliRunner()


@pytest.mark.parametrize(("scenario", "code"), [("healthy", 0), ("hang", 1), ("wrong_op", 1)])
def test_cli_exit_status(scenario: str, code: int) -> None:
    result = runner.invoke(app, [str(dump_dir(scenario, "raw"))])

    assert result.exit_code == code, result.output


def test_cli_json_output() -> None:
    result = runner.invoke(app, [str(dump_dir("hang_cascade", "json")), "--json"])

    assert result.exit_code == 1
    verdict = json.loads(result.stdout)
    assert verdict["culprit_ranks"] == [5]
    assert verdict["victim_ranks"] == [4]


def test_cli_bad_input_exits_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "nccl_trace_rank_0").write_bytes(b"\x80\x02}q\x00(X")  # truncated

    result = runner.invoke(app, [str(tmp_path)])

    assert result.exit_code == 2
    assert "nccl_trace_rank_0" in result.output


def test_cli_empty_folder_exits_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert runner.invoke(app, [str(tmp_path)]).exit_code == 2
