"""Read a request body with a size cap, inflating gzip with the same cap (no zip bombs)."""

from __future__ import annotations

from fastapi import HTTPException, Request, status

from sentinel.inflate import InflateError, Refusal, inflate_gzip


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
    try:
        return inflate_gzip(data, limit)
    except InflateError as exc:
        if exc.refusal is Refusal.too_large:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE, f"body inflates to more than {limit} bytes"
            ) from None
        if exc.refusal is Refusal.corrupt:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, f"corrupt gzip body: {exc.detail}"
            ) from None
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "truncated gzip body") from None
