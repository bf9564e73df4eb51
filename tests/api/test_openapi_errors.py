"""The API's refusals are in its OpenAPI schema (issue 18: only 2 of 31 operations documented
an error other than 422): every write operation documents 401 and 403, every route of one
resource ({id} in its path) 404, and every operation whose code answers 404 or 409 documents
it, so that a client generated from the schema knows them."""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

WRITES = {"post", "put", "patch", "delete"}


def _operations(app: Any) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, ops in app.openapi()["paths"].items()
        for method, op in ops.items()
    ]


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, sqlite_template, tmp_path) -> str:  # type: ignore[no-untyped-def]
    import shutil

    shutil.copy(sqlite_template, tmp_path / "a.db")
    return f"sqlite:///{tmp_path / 'a.db'}"


async def test_every_write_documents_401_and_403(app_client: httpx.AsyncClient) -> None:
    app = app_client.app  # type: ignore[attr-defined]
    missing = [
        f"{method.upper()} {path}"
        for method, path, op in _operations(app)
        if method in WRITES and not {"401", "403"} <= set(op["responses"])
    ]
    assert missing == []
    writes = [1 for method, _, _ in _operations(app) if method in WRITES]
    assert len(writes) >= 10  # the schema really lists the API's writes


async def test_every_route_of_one_resource_documents_404(app_client: httpx.AsyncClient) -> None:
    app = app_client.app  # type: ignore[attr-defined]
    missing = [
        f"{method.upper()} {path}"
        for method, path, op in _operations(app)
        if "{" in path and "404" not in op["responses"]
    ]
    assert missing == []


def _raises(endpoint: Callable[..., Any]) -> set[str]:
    """The status codes the endpoint (or a function of its module that it calls) raises."""
    module = sys.modules[endpoint.__module__]
    source = textwrap.dedent(inspect.getsource(endpoint))
    called = {
        node.func.id
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    for name in called:
        helper = getattr(module, name, None)
        if inspect.isfunction(helper) and helper.__module__ == module.__name__:
            source += inspect.getsource(helper)
    return {code for code, name in (("404", "HTTP_404"), ("409", "HTTP_409")) if name in source}


def _api_routes(routes: list[Any], prefix: str = "") -> list[tuple[str, APIRoute]]:
    """(path, route) of every APIRoute, through included routers however FastAPI nests them."""
    out: list[tuple[str, APIRoute]] = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append((prefix + route.path_format, route))
        elif hasattr(route, "original_router"):  # an included router, kept as such
            context = getattr(route, "include_context", None)
            out += _api_routes(
                route.original_router.routes, prefix + getattr(context, "prefix", "")
            )
    return out


async def test_every_404_and_409_the_code_raises_is_documented(
    app_client: httpx.AsyncClient,
) -> None:
    app = app_client.app  # type: ignore[attr-defined]
    schema = app.openapi()["paths"]
    checked = 0
    missing = []
    for path, route in _api_routes(app.routes):
        if path not in schema:  # not in the schema (the dashboard's pages)
            continue
        for method in route.methods:
            op = schema[path][method.lower()]
            raised = _raises(route.endpoint)
            checked += bool(raised)
            missing += [f"{method} {path}: {code}" for code in raised
                        if code not in op["responses"]]  # fmt: skip
    assert missing == []
    assert checked >= 5  # the scan finds the routes that refuse
