"""The dashboard calls the domains' services, never the JSON API's route handlers: no module of
sentinel/web imports sentinel.api.routes (the API's plumbing, deps, body and errors, it shares)."""

from __future__ import annotations

import ast
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "sentinel" / "web"


def route_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
        found += [n for n in names if n.startswith("sentinel.api.routes")]
    return found


def test_the_dashboard_imports_no_route_module() -> None:
    found = {p.name: route_imports(p.read_text()) for p in sorted(WEB.rglob("*.py"))}
    assert {name: imports for name, imports in found.items() if imports} == {}


def test_a_route_import_is_caught() -> None:
    assert route_imports("from sentinel.api.routes import decisions as decisions_api\n") == [
        "sentinel.api.routes.decisions"
    ]
