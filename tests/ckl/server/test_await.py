"""`…/await`: a long-poll whose client goes away stops waiting at once."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ledger import Ledger
from tests.ckl.server.conftest import Server

if TYPE_CHECKING:
    import httpx


def _awaiting(http: httpx.Client, wanted: int) -> int:
    """/v1/health's count of waiting long-polls, once it is ``wanted`` (or after 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        count = int(http.get("/v1/health").json()["awaiting"])
        if count == wanted or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def test_a_long_poll_ends_when_its_client_leaves(sqlite_url: str) -> None:
    with Ledger.open(sqlite_url) as ledger:
        ledger.create_checkpoint("waiting", 0)
    server = Server(sqlite_url).start()
    try:
        where = urlsplit(server.url)
        assert where.hostname is not None
        assert where.port is not None
        with server.client() as http:
            assert _awaiting(http, 0) == 0
            with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
                sock.sendall(
                    b"GET /v1/runs/waiting/checkpoints/0/await?timeout=60 HTTP/1.1\r\n"
                    b"Host: ckl\r\n\r\n"
                )
                assert _awaiting(http, 1) == 1
            # The wait ends with the connection, not at its 60 s timeout.
            assert _awaiting(http, 0) == 0
    finally:
        server.stop()
