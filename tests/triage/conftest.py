"""Fixtures for triage tests: the packaged knowledge, excerpt files, and signal builders."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sentinel.knowledge import Knowledge, default_knowledge

EXCERPTS = Path(__file__).parent / "excerpts"
_HEADER = re.compile(r"^# (?P<key>\w+): (?P<value>.*)$")


@dataclass(frozen=True)
class Excerpt:
    """A real-format log excerpt with its expected verdict (from `# key: value` headers)."""

    name: str
    text: str
    expect: str
    culprit_host: str | None
    culprit_gpu: str | None


def load_excerpt(path: Path) -> Excerpt:
    headers: dict[str, str] = {}
    body: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _HEADER.match(line)
        if match and not body:
            headers[match.group("key")] = match.group("value").strip()
        else:
            body.append(line)
    return Excerpt(
        name=path.stem,
        text="\n".join(body),
        expect=headers["expect"],
        culprit_host=headers.get("culprit_host"),
        culprit_gpu=headers.get("culprit_gpu"),
    )


def all_excerpts() -> list[Excerpt]:
    return [load_excerpt(p) for p in sorted(EXCERPTS.glob("*.log"))]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Tests that take `excerpt` run once per file in excerpts/, named after the file.
    if "excerpt" in metafunc.fixturenames:
        excerpts = all_excerpts()
        metafunc.parametrize("excerpt", excerpts, ids=[e.name for e in excerpts])


@pytest.fixture(scope="session")
def knowledge() -> Knowledge:
    return default_knowledge()


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a knowledge file under tmp_path and return its path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def timeout_line() -> Callable[..., str]:
    return nccl_timeout_line


def nccl_timeout_line(host: str, rank: int, seq: int = 4711) -> str:
    """A PyTorch watchdog timeout as one rank on one host prints it (with a syslog prefix)."""
    return (
        f"Nov 28 07:38:56 {host} python[4242]: [rank{rank}]:[E1128 07:38:56.123456 "
        f"ProcessGroupNCCL.cpp:632] [Rank {rank}] Watchdog caught collective operation timeout: "
        f"WorkNCCL(SeqNum={seq}, OpType=ALLREDUCE, NumelIn=1048576, NumelOut=1048576, "
        f"Timeout(ms)=600000) ran for 600010 milliseconds before timing out."
    )


def host_name(index: int) -> str:
    return f"gpu-{index:04d}"
