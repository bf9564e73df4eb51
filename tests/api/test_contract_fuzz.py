"""Schemathesis over the whole API, in-process: no 5xx, and every answer as the schema says.

Issue 14, finding 11: malformed but authenticated input got 500s, and schemathesis found 109
differences between the OpenAPI schema and the answers. Every operation is tried with
schema-valid and with schema-violating data; each case is sent with every role's token, so
that the routes behind auth are reached and the wrong roles' refusals are checked too. The
budget is fixed and the seed too: the same requests on every run (50 examples per operation
and mode, about 50 s on two cores).

Schemathesis's own pytest plugin (``schema.parametrize``) fails under pytest 9.2 (it reads a
``_nodeid`` that pytest's items no longer have), so the operations are driven here through its
Python API: a Hypothesis strategy per operation, and ``call_and_validate`` with its default
checks, less those excluded below with their reason.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from builders import T0
from conftest import auth
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans

from sentinel.auth import TokenSpec
from sentinel.clock import VirtualClock
from sentinel.runtime.app import create_app
from sentinel.settings import Settings

SEED = 14
EXAMPLES_PER_OPERATION = 50
ROLES = ("agent", "operator", "viewer")


def _without_positive_acceptance(path: str, method: str) -> dict[str, Any]:
    return {
        "include-path": path,
        "include-method": method,
        "checks": {"positive_data_acceptance": {"enabled": False}},
    }


CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            # The tokens are ours to give (every role's, below), not schemathesis's to invent.
            "with-security-parameters": False,
        },
        "operations": [
            # Rules a JSON Schema cannot state, by which a schema-valid body is rightly a 422:
            # a silence ends after it starts and not in the past, has an end or a duration,
            # and its regular expressions compile;
            _without_positive_acceptance("/api/v1/silences", "POST"),
            # a maintenance window ends after it starts;
            _without_positive_acceptance("/api/v1/maintenance", "POST"),
            # a stored time lies a day inside the calendar's ends (0001-01-02 to 9999-12-30),
            # so that no UTC offset carries it out: "date-time" says nothing of a range;
            _without_positive_acceptance("/api/v1/alertmanager", "POST"),
            # the wire contract is strict JSON: 2.0 is not an integer, which JSON Schema allows.
            _without_positive_acceptance("/api/v1/reports", "POST"),
        ],
    }
)


@schemathesis.serializer("application/gzip")
def _gzip(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    raw = value if isinstance(value, bytes) else str(value).encode()
    return gzip.compress(raw, mtime=0)


@pytest.fixture(scope="module")
def api_schema(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory, tokens: dict[str, str]
) -> Iterator[schemathesis.BaseSchema]:
    folder = tmp_path_factory.mktemp("contract")
    shutil.copy(sqlite_template, folder / "sentinel.db")
    settings = Settings(
        data_dir=folder / "data",
        database={"url": f"sqlite:///{folder / 'sentinel.db'}"},
        run_loops=False,
        auth={"tokens": [TokenSpec(name=r, role=r, token=t) for r, t in tokens.items()]},
    )
    app = create_app(settings, VirtualClock(T0))
    yield schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    # Schemathesis started the app's lifespan with its first request; end it with the module.
    shutdown_lifespans()


def _takes_input(operation: schemathesis.APIOperation[Any, Any, Any, Any]) -> bool:
    return bool(operation.body) or any(True for _ in operation.iter_parameters())


def _fuzz(schema: schemathesis.BaseSchema, mode: GenerationMode, tokens: dict[str, str]) -> str:
    """Every operation on the budget; returns the first failure of each (operation, check)."""
    found: dict[tuple[str, str], str] = {}
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the app's schema is valid OpenAPI
        operation = result.ok()
        if mode is GenerationMode.NEGATIVE and not _takes_input(operation):
            continue  # nothing to get wrong

        @seed(SEED)
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            phases=[Phase.generate],
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: schemathesis.Case[Any]) -> None:
            for role in ROLES:
                try:
                    case.call_and_validate(headers=auth(tokens[role]))
                except FailureGroup as group:
                    for failure in group.exceptions:
                        found.setdefault(
                            (case.operation.label, failure.title),
                            f"as {role}: {failure.message}\n{case.as_curl_command()}",
                        )
                except Exception as exc:  # the app raised: a 500 to a real client
                    found.setdefault(
                        (case.operation.label, f"server error: {type(exc).__name__}"),
                        f"as {role}: {exc}\n{case.as_curl_command()}",
                    )

        run()
    return "\n\n".join(f"{op} — {title}\n{text}" for (op, title), text in sorted(found.items()))


def test_schema_valid_requests_get_documented_answers_and_no_server_error(
    api_schema: schemathesis.BaseSchema, tokens: dict[str, str]
) -> None:
    assert _fuzz(api_schema, GenerationMode.POSITIVE, tokens) == ""


def test_schema_violating_requests_are_refused_as_documented_and_no_server_error(
    api_schema: schemathesis.BaseSchema, tokens: dict[str, str]
) -> None:
    assert _fuzz(api_schema, GenerationMode.NEGATIVE, tokens) == ""
