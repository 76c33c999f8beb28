"""What every route shares: the options, the server's state, its dependencies (auth)."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response

from ckl.server import paths  # noqa: F401  (registers the {run_id:run_id} convertor routes use)
from ckl.server.auth import Scope, TokenEntry, TokenTable
from ckl.server.limits import DEFAULT_MAX_BODY_BYTES

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from pydantic import BaseModel

    from ckl.server.stream import StreamHub
    from ledger import Ledger
    from projections import Projections

__all__ = [
    "API_PREFIX",
    "ServeOptions",
    "ServerState",
    "State",
    "json_response",
    "package_version",
    "require",
    "server_state",
]

API_PREFIX = "/v1"


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """What ``ckl serve``'s options set (the store comes from the usual settings)."""

    tokens: TokenTable = field(default_factory=TokenTable)
    """Accepted bearer tokens; empty: no authentication (the server must be on loopback)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest request body; larger ones get 413 before they are read."""
    max_streams: int = 16
    """Open SSE streams per client (a token's name, or the peer address without tokens)."""
    stream_buffer_bytes: int = 1024 * 1024
    """Bytes of events a slow SSE client may have waiting before it is cut off (it then
    resumes from the store with ``Last-Event-ID``)."""
    keepalive: float = 15.0
    """Seconds between SSE keep-alive comments on a quiet stream."""
    max_await: float = 300.0
    """Longest ``…/await?timeout=`` a request may ask for."""
    archive_dir: str | None = None
    """Where ``POST /v1/runs/{run_id}/archive`` writes archives (None: archiving is off)."""
    views_timeout: float = 30.0
    """How long a query waits for the views to include everything committed before it."""


class ServerState:
    """What every route needs: the ledger, its views, the stream hub and the options.

    Commands go to ``ledger``; reads, the views and the streams to ``ledger.reader`` (the same
    ledger unless ``CKL_READER_STORE`` names a standby).
    """

    def __init__(self, ledger: Ledger, views: Projections, options: ServeOptions) -> None:
        self.ledger, self.views, self.options = ledger, views, options
        self.hub: StreamHub | None = None
        self.stopping = asyncio.Event()
        self.awaiting = 0
        """Long-polls (``…/await``) waiting now (changed only on the event loop)."""

    @property
    def reader(self) -> Ledger:
        """Where reads go: the ledger's ``reader_store`` (a hot standby) if it has one."""
        return self.ledger.reader

    def fresh_views(self) -> Projections:
        """The views, caught up with everything committed before this call (read-your-writes).

        The caller's thread applies what is missing, in pages (the views' own lock and
        tracking keep that exactly once when several requests catch up at a time).
        """
        self.views.sync(timeout=self.options.views_timeout)
        return self.views


@functools.cache
def package_version() -> str:
    """The installed checkpoint-ledger version, read once.

    ``/v1/health`` answers it on every call, and each read of the installed metadata parses
    its METADATA file (a millisecond or more: most of a health check's server time).
    """
    try:
        return version("checkpoint-ledger")
    except PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        return "0+unknown"


def json_response(model: BaseModel) -> Response:
    """A model as the JSON reply of a route (serialized once, by pydantic, not re-validated)."""
    return Response(model.model_dump_json(), media_type="application/json")


async def server_state(request: Request) -> ServerState:
    """The app's :class:`ServerState` (a route dependency).

    ``async`` although it awaits nothing: FastAPI runs a plain ``def`` dependency in its
    thread pool, a hop (two thread switches) per request for a dictionary lookup.
    """
    state: ServerState = request.app.state.ckl
    return state


State = Annotated[ServerState, Depends(server_state)]

_bearer = HTTPBearer(auto_error=False, description="A token from the server's --token-file.")


def require(scope: Scope) -> Callable[..., Awaitable[TokenEntry | None]]:
    """The dependency that checks the request's bearer token holds ``scope``.

    Without a token file every request passes (the server is then bound to loopback). The
    token's name is kept on ``request.state.client`` (streams are counted per client).

    Raises:
        Unauthorized: no token, or an unknown one (401).
        OutOfScope: the token lacks ``scope`` (403).
    """

    async def check(  # async: run on the loop, not in a thread (see server_state)
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> TokenEntry | None:
        tokens: TokenTable = request.app.state.ckl.options.tokens
        if not tokens:
            client = request.client
            request.state.client = client.host if client else "local"
            return None
        entry = tokens.authenticate(None if credentials is None else credentials.credentials)
        tokens.authorize(entry, scope)
        request.state.client = entry.name
        return entry

    check.__name__ = f"require_{scope}"
    return check
