"""One gzip member inflated under a cap: ISA-L (where installed) and zlib give the same bytes
and the same refusals, whatever the input."""

from __future__ import annotations

import gzip
import os
import zlib
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel import inflate
from sentinel.inflate import InflateError, Refusal, inflate_gzip

ENGINES: list[ModuleType] = [zlib]
if inflate._isal() is not None:
    ENGINES.append(inflate._isal())  # type: ignore[arg-type]


def _outcome(data: bytes, limit: int) -> bytes | Refusal:
    try:
        return inflate_gzip(data, limit)
    except InflateError as exc:
        return exc.refusal


def _answer(data: bytes, limit: int) -> bytes | str:
    """What a client sees: the bytes, 413 (over the cap) or 400 (not one whole member; the
    engines word a broken header differently: zlib 'corrupt', ISA-L 'truncated')."""
    outcome = _outcome(data, limit)
    if isinstance(outcome, bytes):
        return outcome
    return "413" if outcome is Refusal.too_large else "400"


@pytest.fixture(params=ENGINES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setattr(inflate, "_ENGINE", request.param)
    return request.param  # type: ignore[no-any-return]


BODY = os.urandom(2000) + b"entries" * 20_000
MEMBER = gzip.compress(BODY, 9)


@pytest.mark.parametrize(
    ("data", "limit", "expected"),
    [
        (MEMBER, len(BODY), BODY),
        (MEMBER + gzip.compress(b"second member"), len(BODY), BODY),  # ignored, as zlib does
        (MEMBER + b"trailing", len(BODY), BODY),
        (MEMBER, len(BODY) - 1, Refusal.too_large),  # a zip bomb stops at the cap
        (MEMBER[:-9], len(BODY), Refusal.truncated),
        (MEMBER[: len(MEMBER) // 2], len(BODY), Refusal.truncated),
        (b"", 10, Refusal.truncated),
        (b"PK\x03\x04 not gzip", 100, Refusal.corrupt),
        (zlib.compress(BODY), len(BODY), Refusal.corrupt),  # zlib, not gzip, framing
    ],
    ids=[
        "whole",
        "two-members",
        "trailing",
        "over-cap",
        "no-trailer",
        "half",
        "empty",
        "zip",
        "zlib-framing",
    ],
)
def test_one_member_under_the_cap(
    engine: ModuleType, data: bytes, limit: int, expected: bytes | Refusal
) -> None:
    assert _outcome(data, limit) == expected


def test_a_corrupt_member_says_what_the_inflater_said(engine: ModuleType) -> None:
    broken = bytearray(MEMBER)
    broken[2] = 9  # a compression method other than deflate (8)
    with pytest.raises(InflateError) as refused:
        inflate_gzip(bytes(broken), len(BODY))
    assert refused.value.refusal is Refusal.corrupt
    assert str(refused.value).startswith("corrupt gzip: ") and refused.value.detail


@pytest.mark.skipif(len(ENGINES) < 2, reason="isal is not installed")
@settings(max_examples=500, deadline=None)
@given(
    body=st.binary(max_size=4096),
    cut=st.integers(0, 5000),
    flip=st.tuples(st.integers(0, 5000), st.integers(1, 255)),
    limit=st.integers(0, 5000),
)
def test_isal_and_zlib_agree_on_any_bytes(
    body: bytes, cut: int, flip: tuple[int, int], limit: int
) -> None:
    """Fuzzed members, cut short or with a byte flipped: the same bytes or the same answer."""
    member = bytearray(gzip.compress(body, 6))
    at, mask = flip
    if at < len(member):
        member[at] ^= mask
    data = bytes(member[:cut])
    outcomes = []
    for module in ENGINES:
        inflate._ENGINE = module
        try:
            outcomes.append(_answer(data, limit))
        finally:
            inflate._ENGINE = ENGINES[-1]
    assert outcomes[0] == outcomes[1]
