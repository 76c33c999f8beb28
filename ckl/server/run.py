"""Run the service on uvicorn: ``ckl serve``'s engine, with a clean shutdown.

On SIGTERM or Ctrl-C uvicorn stops accepting connections and waits for open ones to finish;
an SSE stream never finishes by itself, so the shutdown first tells every stream and
long-poll to end (each stream's last event is a ``closing`` one naming the reason), while
commands in flight run to their end: every one is either committed or not, never half.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import sys
from typing import TYPE_CHECKING

import uvicorn

from ckl.server.app import create_app
from ledger import InvalidInput

if TYPE_CHECKING:
    import socket
    from collections.abc import Iterator

    from fastapi import FastAPI

    from ckl.server.state import ServeOptions
    from ledger import Ledger

__all__ = ["GRACEFUL_SECONDS", "check_host", "serve"]

log = logging.getLogger("ckl.server")

GRACEFUL_SECONDS = 10
"""How long a shutdown waits for requests in flight before closing their connections."""


def check_host(host: str, *, tokens: bool) -> None:
    """Refuse a non-loopback address when there are no tokens to check.

    Raises:
        InvalidInput: ``host`` is not loopback and no token file was given.
    """
    if tokens:
        return
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InvalidInput(
            "host",
            f"{host!r} is not a loopback address: without --token-file the server accepts "
            "any request, so it listens on 127.0.0.1, ::1 or localhost only (give a token "
            "file to serve other machines)",
        )


class _Server(uvicorn.Server):
    """uvicorn's server, ending the app's streams first when it shuts down."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                # The one line scripts wait for (with the port a --port 0 was given).
                print(  # noqa: T201
                    f"ckl serve: listening on http://{shown}:{port}/", file=sys.stderr, flush=True
                )

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # uvicorn raises a SIGTERM again once its graceful shutdown is done, and the default
            # action kills the process there: exit status -15, and the caller never closes the
            # ledger. The stop was asked for and done, so serve() returns (exit 0). SIGINT is
            # left to uvicorn: it becomes KeyboardInterrupt, which the CLI reports.
            self._captured_signals = [
                sig for sig in self._captured_signals if sig != signal.SIGTERM
            ]

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Stop listening first, so no new stream starts only to be closed at once; then end
        # the streams and long-polls, and let uvicorn wait for what is in flight.
        for server in self.servers:
            server.close()
        state = getattr(self._app.state, "ckl", None)
        if state is not None:
            state.stopping.set()
            if state.hub is not None:
                state.hub.stop()
        await super().shutdown(sockets)


def serve(
    ledger: Ledger,
    options: ServeOptions,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve ``ledger`` until SIGTERM or Ctrl-C (the caller closes the ledger afterwards).

    Raises:
        InvalidInput: a non-loopback ``host`` without tokens, or a bad port.
    """
    check_host(host, tokens=bool(options.tokens))
    if not isinstance(port, int) or not 0 <= port <= 65535:  # noqa: PLR2004
        raise InvalidInput("port", "must be an int from 0 to 65535 (0: any free port)")
    app = create_app(ledger, options)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        server_header=False,
    )
    server = _Server(config, app)
    server.run()
    if not server.started:
        # uvicorn logs why (a port in use, say) and returns; say it as our own error.
        sys.exit(1)
