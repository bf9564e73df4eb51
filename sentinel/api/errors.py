"""Turn bad input into a 4xx whose message names the problem; never a 500.

The answers' shapes are also documented here (``error_responses``, ``document_errors``), so
that the OpenAPI schema lists every status a route gives and the body that comes with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from sentinel.alerting.service import NotFiring, NotFound
from sentinel.incidents.state import IncidentTransitionRefused, UnknownIncident
from sentinel.remediation.decisions import (
    IncompleteOverride,
    ResumeRefused,
    TransitionRefused,
    UnknownHost,
)
from sentinel.remediation.planned import PlannedRestartRefused, UnknownJob


class ErrorOut(BaseModel):
    """Every refusal: what was wrong, in words."""

    detail: str


class FieldErrorOut(BaseModel):
    loc: list[str | int]
    msg: str


class ValidationErrorOut(ErrorOut):
    errors: list[FieldErrorOut] = Field(
        default_factory=list,
        description="The fields refused by their schema (at most 20)",
    )


_DESCRIPTIONS = {
    400: "Malformed body (JSON or gzip)",
    401: "Missing or unknown bearer token",
    403: "The token may not do this",
    404: "Not found",
    409: "Not allowed in the resource's current state",
    413: "Body too large",
    415: "Unsupported Content-Encoding (use gzip)",
    422: "Refused input; the message names the field",
    429: "Overloaded: retry after Retry-After",
    502: "The scheduler refused",
    503: "Unavailable: retry after Retry-After",
}


def error_responses(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route's refusals; ``descriptions`` override by ``"409"``."""
    return {
        code: {
            "model": ValidationErrorOut if code == 422 else ErrorOut,
            "description": descriptions.get(str(code), _DESCRIPTIONS[code]),
        }
        for code in codes
    }


def document_errors(schema: dict[str, Any]) -> None:
    """Add the refusals every route shares to an OpenAPI schema, in the shape they really have.

    FastAPI documents 422 with its own body, not the one ``install_error_handlers`` sends. A
    route with a token dependency (all of the API's) can answer 401 and 403, and 422 for an
    unknown query parameter (``deps.known_query``); one with a body 400 (not JSON: FastAPI's
    answer) and 413 (the admission middleware's limit), whatever the route itself says.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorOut, ValidationErrorOut):
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
    shared = error_responses(400, 401, 403, 413, 422)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            codes = ["401", "403", "422"] if operation.get("security") else []
            codes += ["400", "413"] if "requestBody" in operation else []
            codes += ["422"] if "422" in responses else []
            for code in codes:
                responses[code] = {
                    "description": responses.get(code, {}).get("description")
                    or shared[int(code)]["description"],
                    "content": {"application/json": {"schema": _ref(shared[int(code)]["model"])}},
                }
    for fastapi_own in ("HTTPValidationError", "ValidationError"):
        components.pop(fastapi_own, None)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


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
        return http_error_response(exc)


def http_error_response(exc: HTTPException) -> JSONResponse:
    """The answer to an HTTPException, wherever it was raised (a route, or a plain ASGI layer)."""
    return JSONResponse(
        status_code=exc.status_code, content={"detail": exc.detail}, headers=exc.headers
    )


# The domains' refusals and the status each answers with (the dashboard shows the same status
# and message on its page).
REFUSALS: Final[dict[type[Exception], int]] = {
    NotFound: status.HTTP_404_NOT_FOUND,
    UnknownHost: status.HTTP_404_NOT_FOUND,
    UnknownIncident: status.HTTP_404_NOT_FOUND,
    UnknownJob: status.HTTP_404_NOT_FOUND,
    NotFiring: status.HTTP_409_CONFLICT,
    TransitionRefused: status.HTTP_409_CONFLICT,
    IncidentTransitionRefused: status.HTTP_409_CONFLICT,
    PlannedRestartRefused: status.HTTP_409_CONFLICT,
    IncompleteOverride: status.HTTP_422_UNPROCESSABLE_CONTENT,
    ResumeRefused: status.HTTP_502_BAD_GATEWAY,
}


def refusal(exc: Exception) -> tuple[int, str] | None:
    """The status and message that answer a domain's refusal; None for anything else."""
    code = REFUSALS.get(type(exc))
    return None if code is None else (code, str(exc))


@contextmanager
def refusals() -> Iterator[None]:
    """Answer a domain's refusal inside the block with its status and message."""
    try:
        yield
    except Exception as exc:
        answer = refusal(exc)
        if answer is None:
            raise
        raise HTTPException(*answer) from None
