"""The dependency rules of ARCHITECTURE.md, held by a test: every import in sentinel/ and
agents/ (module level or inside a function) is read from the source and checked against the
allowed edges below, which are data. A new edge is a decision: add it here, with the reason.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What each part may import of Sentinel's own code ("*" = anything). A part is a top-level
# package of sentinel/ (sentinel.triage) or the agent (sentinel_agent, in agents/). Parts not
# listed may import any part except those whose importers are restricted in ONLY_IMPORTED_BY.
MAY_IMPORT: dict[str, frozenset[str]] = {
    # The agent runs on every GPU host with its own small install: the wire contract and the
    # shared knowledge, nothing of the service.
    "sentinel_agent": frozenset({"sentinel.wire", "sentinel.knowledge"}),
    # Pure packages: data and functions, no database, no HTTP, no settings.
    "sentinel.wire": frozenset(),
    # The knowledge base labels what it matches with the wire's severity (both sides use it).
    "sentinel.knowledge": frozenset({"sentinel.wire"}),
    "sentinel.triage": frozenset({"sentinel.knowledge", "sentinel.wire"}),
    "sentinel.flightrec": frozenset({"sentinel.knowledge", "sentinel.wire"}),
    # Adapters to the outside never reach back into the HTTP layer or the dashboard.
    # sentinel.retry: the service's one retry policy (backoff, Retry-After), itself pure.
    "sentinel.schedulers": frozenset(
        {"sentinel.clock", "sentinel.inputs", "sentinel.retry", "sentinel.wire"}
    ),
    "sentinel.retry": frozenset(),
}
# Parts (or modules of a part: the most specific entry applies) that may be imported only by
# the parts named (and by tests). The runtime is the composition root: the CLI serves its app
# and replay drives it in-process; of it, the request dependencies read only the context. The
# HTTP package and the dashboard are mounted by the runtime. The test harnesses (tests.harness)
# are not in the wheel: nothing of the product imports them (the demo runs its own runner).
ONLY_IMPORTED_BY: dict[str, frozenset[str]] = {
    "sentinel.runtime": frozenset({"sentinel.cli", "sentinel.replay"}),
    # AppContext: what a request's dependencies (api.deps) hand a route, the dashboard's too.
    "sentinel.runtime.context": frozenset(
        {"sentinel.cli", "sentinel.replay", "sentinel.api", "sentinel.web"}
    ),
    # The runtime's own settings (retention), composed by the root settings tree.
    "sentinel.runtime.settings": frozenset(
        {"sentinel.cli", "sentinel.replay", "sentinel.settings"}
    ),
    # The dashboard's routes (sentinel.web) share the API's HTTP plumbing: deps, body, errors.
    "sentinel.api": frozenset({"sentinel.runtime", "sentinel.web"}),
    "sentinel.web": frozenset({"sentinel.runtime"}),
    "tests.harness": frozenset(),
    # The simulation draws its faults from the demo's templates (only that data module); the
    # test harnesses (not scanned: they are tests) drive the service through the demo's runner.
    "sentinel.demo": frozenset({"sentinel.cli", "sentinel.reports"}),
}
# Parts that must never import these parts.
NEVER: dict[str, frozenset[str]] = {
    "sentinel.alerting": frozenset({"sentinel.api", "sentinel.web"}),
    "sentinel.remediation": frozenset({"sentinel.api", "sentinel.web"}),
    "sentinel.incidents": frozenset({"sentinel.api", "sentinel.web"}),
    "sentinel.ingest": frozenset({"sentinel.api", "sentinel.web", "sentinel.incidents"}),
}
# Third-party packages the agent's install does not have (pyproject's server extra does; the
# base install has pydantic, PyYAML, typer and rich): neither the agent nor anything it imports
# of Sentinel may import them.
SERVER_ONLY = frozenset(
    {"fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "asyncpg", "psycopg", "polars"}
    | {"jinja2", "numba", "numpy", "pydantic_settings", "aiosqlite", "tenacity"}
)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. sentinel.triage.rules
    target: str  # what it imports, e.g. sentinel.knowledge.taxonomy
    line: int

    def where(self) -> str:
        return f"{self.module}:{self.line}"


def part_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "sentinel_agent":
        return "sentinel_agent"
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(source: str, module: str, is_package: bool) -> Iterator[Import]:
    """Every import statement of a module, relative ones resolved."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            # `from a.b import c` may import the module a.b.c: name it, the closure below
            # falls back to a.b where c is only an attribute.
            for alias in node.names:
                yield Import(module, f"{target}.{alias.name}", node.lineno)


def project_imports(root: Path = REPO) -> list[Import]:
    found: list[Import] = []
    for source_root, top in ((root, "sentinel"), (root / "agents", "sentinel_agent")):
        for path in sorted((source_root / top).rglob("*.py")):
            module = module_name(path, source_root)
            found += imports_in(path.read_text(), module, path.name == "__init__.py")
    return found


def _ours(target: str) -> bool:
    # `tests` too: the product must not import the test harnesses (they are not in the wheel).
    return target.split(".")[0] in {"sentinel", "sentinel_agent", "tests"}


def importers_of(target: str) -> frozenset[str] | None:
    """Who may import ``target``: the entry of its most specific restricted part or module."""
    parts = target.split(".")
    for n in range(len(parts), 1, -1):
        importers = ONLY_IMPORTED_BY.get(".".join(parts[:n]))
        if importers is not None:
            return importers
    return None


def violations(found: Iterable[Import]) -> list[str]:
    """Each import that breaks a rule, with the rule it breaks."""
    out: list[str] = []
    for imp in found:
        if not _ours(imp.target):
            continue
        src, dst = part_of(imp.module), part_of(imp.target)
        if src == dst or dst == "sentinel":
            continue
        allowed = MAY_IMPORT.get(src)
        if allowed is not None and dst not in allowed:
            out.append(
                f"{imp.where()} imports {imp.target}: {src} may import only {sorted(allowed)}"
            )
        importers = importers_of(imp.target)
        if importers is not None and src not in importers:
            out.append(f"{imp.where()} imports {imp.target}: only {sorted(importers)} may")
        if dst in NEVER.get(src, frozenset()):
            out.append(f"{imp.where()} imports {imp.target}: {src} never imports {dst}")
    return out


def agent_closure(found: Iterable[Import]) -> dict[str, set[Import]]:
    """Sentinel modules the agent reaches (transitively), with their third-party imports."""
    by_module: dict[str, list[Import]] = {}
    for imp in found:
        by_module.setdefault(imp.module, []).append(imp)
    seen: set[str] = set()
    todo = [m for m in by_module if part_of(m) == "sentinel_agent"]
    third: dict[str, set[Import]] = {}
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for imp in by_module.get(module, []):
            if _ours(imp.target):
                # The module itself, or the package whose attribute it names.
                for candidate in (imp.target, imp.target.rpartition(".")[0]):
                    if candidate in by_module:
                        todo.append(candidate)
                        break
            else:
                third.setdefault(imp.target.split(".")[0], set()).add(imp)
    return third


def test_the_tree_keeps_the_dependency_rules() -> None:
    assert violations(project_imports()) == []


def test_the_agent_reaches_no_server_only_package() -> None:
    reached = agent_closure(project_imports())
    bad = {
        name: sorted(i.where() for i in imps)
        for name, imps in reached.items()
        if name in SERVER_ONLY
    }
    assert bad == {}


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        (
            "sentinel_agent.collectors.kernel_log",
            "from sentinel.db.models import Event\n",
            "may import",
        ),
        ("sentinel.triage.rules", "import sentinel.incidents.service\n", "may import"),
        ("sentinel.alerting.slack", "from sentinel.api.deps import Ctx\n", "never imports"),
        ("sentinel.reports.html", "from tests.harness.service import LiveService\n", "only"),
        ("sentinel.wire.v1", "from ..settings import Settings\n", "may import"),
        # The composition root is imported by the CLI and replay only; the HTTP package and
        # the dashboard only by the root (and the dashboard the API's plumbing).
        ("sentinel.alerting.dispatcher", "from sentinel.runtime.loops import every\n", "only"),
        ("sentinel.api.deps", "from sentinel.runtime.app import create_app\n", "only"),
        ("sentinel.replay.runner", "from sentinel.api.routes import include_routes\n", "only"),
        ("sentinel.cli", "from sentinel.web.routes import router\n", "only"),
    ],
)
def test_a_forbidden_import_is_caught(module: str, source: str, broken: str) -> None:
    problems = violations(imports_in(source, module, is_package=False))
    assert problems and all(module in p for p in problems)
    assert any(broken in p for p in problems), problems


def test_the_request_dependencies_may_read_the_context() -> None:
    source = "from sentinel.runtime.context import AppContext\n"
    assert violations(imports_in(source, "sentinel.api.deps", is_package=False)) == []


def test_a_server_package_reached_from_the_agent_is_caught(tmp_path: Path) -> None:
    (tmp_path / "agents" / "sentinel_agent").mkdir(parents=True)
    (tmp_path / "sentinel" / "wire").mkdir(parents=True)
    (tmp_path / "agents" / "sentinel_agent" / "__init__.py").write_text(
        "from sentinel.wire import v1\n"
    )
    (tmp_path / "sentinel" / "__init__.py").write_text("")
    (tmp_path / "sentinel" / "wire" / "__init__.py").write_text("")
    (tmp_path / "sentinel" / "wire" / "v1.py").write_text("import sqlalchemy\n")
    reached = agent_closure(project_imports(tmp_path))
    assert "sqlalchemy" in reached


if __name__ == "__main__":  # print the current graph of parts
    edges: dict[str, set[str]] = {}
    for imp in project_imports():
        if _ours(imp.target) and part_of(imp.module) != part_of(imp.target):
            edges.setdefault(part_of(imp.module), set()).add(part_of(imp.target))
    for part, targets in sorted(edges.items()):
        sys.stdout.write(f"{part} -> {', '.join(sorted(targets))}\n")
