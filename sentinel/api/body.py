"""Read a request body with a size cap, inflating gzip with the same cap (no zip bombs)."""

from __future__ import annotations

import zlib

from fastapi import HTTPException, Request, status


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "bad Content-Length header") from None
        if size > limit:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE, f"body of {size} bytes exceeds {limit} bytes"
            )
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding != "gzip":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"Content-Encoding {encoding!r}: use gzip"
        )
    return inflate(body, limit)


def inflate(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"corrupt gzip body: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"body inflates to more than {limit} bytes"
        )
    if not inflater.eof:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "truncated gzip body")
    return out
