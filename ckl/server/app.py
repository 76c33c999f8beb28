"""The ASGI app of ``ckl serve``: FastAPI over one Ledger, its Projections and one stream hub.

:func:`create_app` composes it; the routes live by concern in :mod:`ckl.server.commands`
(POST: every ledger command), :mod:`ckl.server.queries` (GET: state, timeline, audit…) and
:mod:`ckl.server.stream` (SSE); :mod:`ckl.server.errors` turns typed errors into statuses,
:mod:`ckl.server.auth` checks bearer tokens, :mod:`ckl.server.limits` bounds bodies. The web
UI is the static files of ``ckl/web/``, served at ``/``.

Why FastAPI (on Starlette, on uvicorn): the API's contract is pydantic models already (the
ledger's events and states, the projections' rows), and FastAPI derives a complete OpenAPI
document from exactly those models and the routes' declared errors, so ``/openapi.json``
cannot drift from the code. Starlette alone would need that document written by hand. The
cost is FastAPI's per-request work, measured in ``bench/`` (``docs/benchmarks.md``).

Threads: the ledger is synchronous, so command and query routes are plain ``def`` routes that
FastAPI runs in its thread pool; the stream hub and long-polls are ``async`` and never block
the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from importlib import resources
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles

from ckl.server import commands, queries, stream
from ckl.server.errors import ErrorBody, error_response
from ckl.server.limits import BodyLimit
from ckl.server.paths import RawSegments
from ckl.server.state import API_PREFIX, ServeOptions, ServerState, package_version
from ledger import InvalidInput, LedgerError
from projections import Projections

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi.routing import APIRouter

    from ledger import Ledger

__all__ = ["ERRORS", "create_app"]

log = logging.getLogger("ckl.server")

ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "InvalidInput: a bad argument; nothing written."},
    401: {"model": ErrorBody, "description": "Unauthorized: no or an unknown bearer token."},
    403: {"model": ErrorBody, "description": "OutOfScope: the token lacks the scope."},
    503: {
        "model": ErrorBody,
        "description": "StoreUnavailable (with Retry-After: repeat with the same "
        "Idempotency-Key), StoreFailure, ServiceStopping.",
    },
}
"""The errors every route may answer with (routes add their own)."""


def create_app(ledger: Ledger, options: ServeOptions | None = None) -> FastAPI:
    """The service over ``ledger`` (which the caller opens and closes).

    The stream hub follows the log from startup to shutdown (its open streams end with a final
    ``closing`` event then); the views are brought up to date by the queries that read them.
    """
    chosen = options or ServeOptions()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The views are not followed in the background: each query that reads them brings
        # them up to date first (ServerState.fresh_views), in one batch for everything since
        # the last one. A follower woken by every append would commit a views transaction per
        # command, a second fsync for each yield a worker sends.
        state = ServerState(ledger, Projections(ledger.reader), chosen)
        state.hub = stream.StreamHub(ledger.reader, asyncio.get_running_loop(), chosen)
        state.hub.start()
        app.state.ckl = state
        log.info("serving %s", ledger.store_display)
        try:
            yield
        finally:
            state.stopping.set()
            state.hub.stop()
            # Both threads end before the caller closes the ledger under them.
            await asyncio.to_thread(state.hub.join)
            await asyncio.to_thread(state.views.close)

    app = FastAPI(
        title="checkpoint-ledger",
        version=package_version(),
        summary="An event-sourced checkpoint ledger for batch workers: commands, queries, streams.",
        description=(
            "Every command is an immutable event; a worker's progress never runs ahead of a "
            "durable checkpoint. Send `Idempotency-Key` with any POST to make its retry safe "
            "(the key is the command id: a repeat returns the recorded outcome and writes "
            "nothing). Errors are JSON bodies naming the error class and its fields."
        ),
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        responses=ERRORS,
    )
    app.add_middleware(BodyLimit, limit=chosen.max_body_bytes)
    app.add_middleware(RawSegments)  # outermost: routing sees run ids whole
    _add_error_handlers(app)
    _document_400_not_422(app)
    routers: tuple[APIRouter, ...] = (commands.router, queries.router, stream.router)
    for router in routers:
        app.include_router(router, prefix=API_PREFIX)
    app.mount("/", StaticFiles(directory=str(resources.files("ckl") / "web"), html=True), "web")
    return app


def _add_error_handlers(app: FastAPI) -> None:
    async def ledger_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LedgerError)  # noqa: S101  (registered for LedgerError only)
        return error_response(exc)

    async def validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101
        return error_response(_invalid_input(exc))

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101
        names = {404: "NotFound", 405: "MethodNotAllowed"}
        body = ErrorBody(
            error=names.get(exc.status_code, "HTTPError"),
            message=str(exc.detail),
            status=exc.status_code,
            fields={},
        )
        return JSONResponse(body.model_dump(), exc.status_code, headers=exc.headers)

    app.add_exception_handler(LedgerError, ledger_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def _document_400_not_422(app: FastAPI) -> None:
    """Drop FastAPI's automatic 422 responses from the OpenAPI document.

    A request that fails validation is answered 400 ``InvalidInput`` (``ERRORS``), never with
    FastAPI's 422 ``HTTPValidationError``, so the document must not promise one; and a route
    that checks no token (health) promises no 401 or 403.
    """
    generate = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            document = generate()
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    responses = operation.get("responses", {})
                    responses.pop("422", None)
                    if "security" not in operation:  # no token is checked (health)
                        responses.pop("401", None)
                        responses.pop("403", None)
            schemas = document.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _invalid_input(exc: RequestValidationError) -> InvalidInput:
    """FastAPI's validation error as our ``InvalidInput``, naming the first field at fault."""
    errors = exc.errors()
    if not errors:  # pragma: no cover - FastAPI always lists at least one
        return InvalidInput("body", "the request is invalid")
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        return InvalidInput("body", f"malformed JSON: {first.get('msg', '')}")
    where = ".".join(location) or "body"
    if location and location[0] in ("query", "path", "header"):
        where = ".".join(location[1:]) or location[0]
    reason = str(first.get("msg", "is invalid"))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return InvalidInput(where, reason[0].lower() + reason[1:] + more)
