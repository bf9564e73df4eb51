"""Turn bad input into a 4xx whose message names the problem; never a 500."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or "body"


def describe_validation_error(exc: ValidationError) -> tuple[int, str]:
    errors = exc.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return status.HTTP_400_BAD_REQUEST, f"malformed JSON: {errors[0]['msg']}"
    shown = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return status.HTTP_422_UNPROCESSABLE_CONTENT, shown + more


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        shown = "; ".join(f"{_where(e.get('loc', ()))}: {e.get('msg')}" for e in errors[:5])
        return JSONResponse(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            content={
                "detail": shown,
                "errors": [
                    {"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors[:20]
                ],
            },
        )

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code, content={"detail": exc.detail}, headers=exc.headers
        )
