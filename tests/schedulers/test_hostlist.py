"""Slurm hostlist expressions both ways."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentinel.schedulers.hostlist import HostlistError, compress, expand


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("node1", ["node1"]),
        ("node[1-3,7]", ["node1", "node2", "node3", "node7"]),
        ("node[1,3-5],login1", ["node1", "node3", "node4", "node5", "login1"]),
        ("gpu[08-11]", ["gpu08", "gpu09", "gpu10", "gpu11"]),
        ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
        ("", []),
    ],
)
def test_expand(expr: str, names: list[str]) -> None:
    assert expand(expr) == names


@pytest.mark.parametrize(
    ("names", "expr"),
    [
        (["node3", "node1", "node2", "node7"], "node[1-3,7]"),
        (["node1"], "node1"),
        (["node9", "node10", "node11"], "node[9-11]"),
        (["gpu01", "gpu02", "gpu03"], "gpu[01-03]"),
        (["login", "node1", "node2", "node2"], "login,node[1-2]"),
        ([], ""),
    ],
)
def test_compress(names: list[str], expr: str) -> None:
    assert compress(names) == expr


@pytest.mark.parametrize(
    "expr", ["node[1-3", "node1-3]", "node[3-1]", "node[a-b]", "n[1-[2]]", "n[0-99999999]"]
)
def test_bad_expressions_are_refused(expr: str) -> None:
    with pytest.raises(HostlistError):
        expand(expr)


def test_names_that_cannot_be_listed_are_refused() -> None:
    with pytest.raises(HostlistError):
        compress(["node[1]"])


names = st.lists(
    st.builds(
        lambda prefix, number, pad: f"{prefix}{str(number).zfill(pad) if number >= 0 else ''}",
        st.sampled_from(["node", "gpu-a", "r1-n", "x", ""]),
        st.integers(-1, 120),
        st.integers(0, 4),
    ).filter(bool),
    max_size=40,
)


@given(names)
def test_expand_gives_back_what_compress_was_given(hosts: list[str]) -> None:
    assert sorted(expand(compress(hosts))) == sorted(set(hosts))
