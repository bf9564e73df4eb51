"""Request-scoped dependencies: the app's context, the unit of work, the caller's role."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel import auth
from sentinel.auth import Principal, Role, TokenStore
from sentinel.db.engine import unit_of_work
from sentinel.runtime.context import AppContext


async def get_ctx(request: Request) -> AppContext:
    # async on purpose: FastAPI runs a plain def dependency in a thread pool, a costly hop
    # on every request.
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


async def get_session(ctx: Ctx) -> AsyncIterator[AsyncSession]:
    async with unit_of_work(ctx.sessions) as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]

_bearer = HTTPBearer(
    auto_error=False, description="A Sentinel token (roles: agent, operator, viewer)"
)


def authenticate(tokens: TokenStore, authorization: str | None) -> Principal:
    """The caller named by an ``Authorization: Bearer`` header value, or a 401.

    The admission middleware calls it before any body is read; the route dependency after.
    """
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = tokens.authenticate(token.strip())
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "unknown token", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


def require(allowed: frozenset[Role]) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def dependency(
        ctx: Ctx,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        # _bearer declares the scheme in the OpenAPI schema; one function judges the header.
        header = None if credentials is None else f"{credentials.scheme} {credentials.credentials}"
        return check_role(authenticate(ctx.tokens, header), allowed)

    return dependency


def check_role(principal: Principal, allowed: frozenset[Role]) -> Principal:
    """``principal``, if its role is one of ``allowed``; else a 403 that names the roles."""
    if principal.role not in allowed:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"role {principal.role!r} may not do this; needs one of {sorted(allowed)}",
        )
    return principal


Viewer = Annotated[Principal, Depends(require(auth.READ))]
Operator = Annotated[Principal, Depends(require(auth.OPERATE))]
Agent = Annotated[Principal, Depends(require(auth.REPORT))]


_QUERY_NAMES: dict[str, frozenset[str]] = {}


def _query_names(route: APIRoute) -> frozenset[str]:
    names = _QUERY_NAMES.get(route.unique_id)
    if names is None:
        found: set[str] = set()
        dependants = [route.dependant]
        while dependants:
            dependant = dependants.pop()
            found.update(param.alias for param in dependant.query_params)
            dependants.extend(dependant.dependencies)
        names = _QUERY_NAMES[route.unique_id] = frozenset(found)
    return names


async def known_query(request: Request) -> None:
    """Refuse a query parameter the route does not take (422, named).

    Ignored, a misspelt filter would answer with everything: ``?stauts=pending`` would hand a
    scheduler every decision instead of the pending ones.
    """
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = _query_names(route)
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) or "none"
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"unknown query parameter {', '.join(map(repr, unknown))}; this route takes: {takes}",
        )
