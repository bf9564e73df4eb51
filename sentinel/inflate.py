"""One gzip member inflated under a cap (no zip bombs), by ISA-L where it is installed.

Both of the service's gzip inputs go through it: request bodies (agents' batches, alerts)
and flight-recorder dumps (checked when uploaded, inflated again for the analysis, 16,384
of them for one large job). ISA-L's inflater (`isal`, the `fast` extra) took 0.47 ms per
2,000-entry dump where zlib took 1.03 ms, the same bytes out; without it, zlib.
"""

from __future__ import annotations

import zlib
from enum import StrEnum
from types import ModuleType


def _isal() -> ModuleType | None:
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return isal_zlib


_ENGINE: ModuleType = _isal() or zlib
ENGINE = "isal" if _ENGINE is not zlib else "zlib"


class Refusal(StrEnum):
    corrupt = "corrupt"
    too_large = "too_large"
    truncated = "truncated"


class InflateError(ValueError):
    """Why the data is not one whole gzip member within the cap; `refusal` says which."""

    def __init__(self, refusal: Refusal, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.refusal = refusal
        self.detail = detail  # the inflater's own words, for a corrupt member


def inflate_gzip(data: bytes, limit: int) -> bytes:
    """The inflated bytes of one gzip member, at most `limit` of them; InflateError else.
    Bytes after the member (a second member, trailing garbage) are ignored, as zlib does."""
    inflater = _ENGINE.decompressobj(wbits=31)
    try:
        out: bytes = inflater.decompress(data, limit + 1)
    except _ENGINE.error as exc:
        raise InflateError(Refusal.corrupt, f"corrupt gzip: {exc}", str(exc)) from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise InflateError(Refusal.too_large, f"inflates to more than {limit} bytes")
    if not inflater.eof:
        raise InflateError(Refusal.truncated, "truncated gzip")
    return out
