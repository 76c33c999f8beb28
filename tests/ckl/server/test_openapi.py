"""The OpenAPI document: committed as docs/openapi.json, served as /openapi.json, complete.

Every route of the app is in it, and every operation documents the errors it can answer with
(the shared 400/401/403/503 and its own), each with the ErrorBody schema.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.routing import APIRoute

from ckl.server import commands, queries, stream
from ckl.server.openapi import REGENERATE, document, render
from ckl.server.state import API_PREFIX
from tests.ckl.server.conftest import ROOT, Server

if TYPE_CHECKING:
    from collections.abc import Iterator

COMMITTED = ROOT / "docs" / "openapi.json"
ERROR_REF = "#/components/schemas/ErrorBody"
SHARED = {"400", "401", "403", "503"}
COMMANDS = frozenset({"404", "409", "410", "413"})
# Each operation's own errors, beyond the shared ones.
OWN: dict[str, frozenset[str]] = {
    **dict.fromkeys(
        (
            "create_checkpoint",
            "checkpoint_yield",
            "complete_checkpoint",
            "fail_checkpoint",
            "retry_checkpoint",
            "reset_checkpoint",
            "cancel_checkpoint",
            "claim_checkpoint",
            "heartbeat",
            "release",
            "claim_next",
        ),
        COMMANDS,
    ),
    **dict.fromkeys(
        (
            "get_checkpoint",
            "checkpoint_events",
            "history",
            "get_run",
            "timeline",
            "pending",
            "stuck_in_run",
        ),
        frozenset({"404"}),
    ),
    "await_checkpoint": frozenset({"404", "408"}),
    "archive_run": frozenset({"404", "409", "410"}),
    "export_run": frozenset({"404", "409"}),
    "stream": frozenset({"429"}),
    "run_stream": frozenset({"429"}),
    **dict.fromkeys(("health", "list_runs", "stuck", "failures", "verify"), frozenset()),
}


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(COMMITTED.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = f"sqlite:///{tmp_path_factory.mktemp('openapi')}/ledger.db"
    server = Server(store).start()
    try:
        yield server
    finally:
        server.stop()
        if server.process is not None and server.process.stdout is not None:
            server.process.stdout.close()


def test_the_committed_document_is_the_generated_one(committed: dict[str, Any]) -> None:
    text = COMMITTED.read_text(encoding="utf-8")
    assert text == render(), f"docs/openapi.json is out of date: run `{REGENERATE}`"
    assert committed == document()


def test_the_served_document_is_the_committed_one(
    served: Server, committed: dict[str, Any]
) -> None:
    with served.client() as http:
        response = http.get("/openapi.json")
        assert response.status_code == 200
        assert response.json() == committed, f"the served document differs: run `{REGENERATE}`"
        docs = http.get("/docs")
        assert docs.status_code == 200
        assert "/openapi.json" in docs.text


def test_every_route_is_documented_with_its_errors(committed: dict[str, Any]) -> None:
    # The routers create_app includes, under API_PREFIX (FastAPI keeps included routers
    # nested, so the app's own route list does not name them).
    routes = [
        route
        for router in (commands.router, queries.router, stream.router)
        for route in router.routes
        if isinstance(route, APIRoute) and route.include_in_schema
    ]
    documented = {
        (path, method.upper()) for path, ops in committed["paths"].items() for method in ops
    }
    assert {(API_PREFIX + r.path_format, m) for r in routes for m in r.methods or ()} == documented
    assert {r.operation_id for r in routes} == set(OWN)

    for path, operations in committed["paths"].items():
        for method, operation in operations.items():
            name = operation["operationId"]
            responses: dict[str, Any] = operation["responses"]
            errors = {code for code in responses if code[0] in "45"}
            # A route without a token check (health) cannot answer 401 or 403.
            shared = SHARED if "security" in operation else SHARED - {"401", "403"}
            assert errors == shared | OWN[name], (method, path, sorted(errors))
            assert "422" not in responses  # validation errors are 400 InvalidInput
            for code in errors:
                schema = responses[code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": ERROR_REF}, (name, code, schema)
                assert responses[code]["description"], (name, code)
            assert "200" in responses, name
    schemas = committed["components"]["schemas"]
    assert set(schemas["ErrorBody"]["required"]) == {"error", "message", "status", "fields"}
    assert "HTTPValidationError" not in schemas
    assert committed["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
