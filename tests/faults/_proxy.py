"""A loopback TCP proxy in front of PostgreSQL that can lose the reply to one INSERT.

The fault it makes is a lost acknowledgement: the client's bytes reach the server, the server
runs the INSERT and commits it, and the reply never reaches the client, whose connection is
closed instead. The client (psycopg) sees a broken connection and cannot tell whether its
command was applied, which is what a network cut after the commit looks like.

Only the server-to-client stream is parsed, and only as far as the wire protocol's framing
(a type byte and a 4-byte length, both big-endian, on every message after start-up): the proxy
watches for the ``CommandComplete`` message (``C``) whose tag starts with ``INSERT``, holds it
and whatever follows, and at the next ``ReadyForQuery`` (``Z``), which the server sends only
after the statement's implicit transaction committed, drops them all and closes both sides.
Start-up must be plain (``sslmode=disable&gssencmode=disable`` in the URL, see :meth:`url`): an
encrypted stream cannot be framed, and the one-byte answer to an SSL request has no framing.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import TYPE_CHECKING, Self
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

__all__ = ["LostReply", "PostgresProxy"]

_HEADER = 5  # type byte + int32 length (which counts itself but not the type byte)
_CHUNK = 65536


class LostReply:
    """One armed loss: which reply was lost, and when.

    Attributes:
        happened: set once a reply was dropped, the hook run and the client's side closed.
        tag: the dropped ``CommandComplete`` tag (e.g. ``"INSERT 0 1"``), once it happened.
        error: what the hook raised, if it raised (the connection is closed all the same).
    """

    def __init__(self, then: Callable[[], None] | None) -> None:
        self.then = then
        self.happened = threading.Event()
        self.tag: str | None = None
        self.error: BaseException | None = None

    def wait(self, timeout: float) -> None:
        """Wait until the reply was lost; re-raise the hook's error, if any.

        Raises:
            AssertionError: no INSERT reply was lost within ``timeout`` seconds.
        """
        assert self.happened.wait(timeout), "no INSERT reply went through the proxy"
        if self.error is not None:
            raise self.error


class PostgresProxy:
    """Listens on 127.0.0.1 (a free port) and forwards each connection to the server.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, server_host: str, server_port: int) -> None:
        """Start listening and accepting; connections are forwarded to the server's address."""
        self._target = (server_host, server_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed: LostReply | None = None
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self.connections = 0
        self._acceptor = threading.Thread(target=self._accept, name="pg-proxy", daemon=True)
        self._acceptor.start()

    @classmethod
    def in_front_of(cls, url: str) -> PostgresProxy:
        """A proxy for the server a ``postgresql://`` URL names."""
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 5432)

    def url(self, url: str) -> str:
        """``url`` rewritten to go through the proxy, with a plain (unencrypted) start-up."""
        parts = urlsplit(url)
        user = f"{parts.username}@" if parts.username else ""
        query = "sslmode=disable&gssencmode=disable"
        query = f"{parts.query}&{query}" if parts.query else query
        return parts._replace(netloc=f"{user}127.0.0.1:{self.port}", query=query).geturl()

    def lose_next_insert_reply(self, then: Callable[[], None] | None = None) -> LostReply:
        """Arm the fault: the next INSERT's reply, on any connection, is lost.

        ``then`` runs after the server committed and before the client's side is closed, while
        the client still waits for its reply: what happens there happens between the commit
        and anything the client does next (its retry). Only one loss is armed at a time.
        """
        lost = LostReply(then)
        with self._lock:
            assert self._armed is None, "a lost reply is already armed"
            self._armed = lost
        return lost

    def disarm(self) -> None:
        """Forget an armed loss that did not happen."""
        with self._lock:
            self._armed = None

    def close(self) -> None:
        """Stop accepting and cut every forwarded connection."""
        self._closed = True
        # shutdown() first: close() alone leaves a thread blocked in accept() accepting
        # (and forwarding) new connections on Linux.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _cut(sock)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ forwarding

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self._target, timeout=10)
            except OSError:
                _cut(client)
                continue
            server.settimeout(None)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets |= {client, server}
                self.connections += 1
            threading.Thread(target=self._upstream, args=(client, server), daemon=True).start()
            threading.Thread(target=self._downstream, args=(client, server), daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        """Client to server: bytes as they come (the fault is on the way back)."""
        try:
            while chunk := client.recv(_CHUNK):
                server.sendall(chunk)
        except OSError:
            pass
        finally:
            self._end(client, server)

    def _downstream(self, client: socket.socket, server: socket.socket) -> None:
        """Server to client, message by message, dropping an armed INSERT's reply."""
        buffer = bytearray()
        held: LostReply | None = None  # an INSERT's CommandComplete seen: hold until 'Z'
        try:
            while chunk := server.recv(_CHUNK):
                buffer += chunk
                out = bytearray()
                while len(buffer) >= _HEADER:
                    size = 1 + int.from_bytes(buffer[1:_HEADER], "big")
                    if len(buffer) < size:
                        break
                    message, buffer = bytes(buffer[:size]), buffer[size:]
                    kind = message[:1]
                    if held is None and kind == b"C" and message[_HEADER:].startswith(b"INSERT"):
                        held = self._take_armed()
                        if held is not None:
                            held.tag = message[_HEADER:].rstrip(b"\0").decode()
                            client.sendall(out)  # what came before the INSERT's result
                            out.clear()
                            continue
                    if held is not None:
                        if kind == b"Z":  # committed: the transaction is over
                            self._lose(held, client, server)
                            return
                        continue
                    out += message
                if out:
                    client.sendall(out)
        except OSError:
            pass
        finally:
            self._end(client, server)

    def _take_armed(self) -> LostReply | None:
        with self._lock:
            armed, self._armed = self._armed, None
        return armed

    def _lose(self, lost: LostReply, client: socket.socket, server: socket.socket) -> None:
        try:
            if lost.then is not None:
                lost.then()
        except BaseException as exc:  # handed to the test through LostReply.wait
            lost.error = exc
        finally:
            self._end(client, server)
            lost.happened.set()

    def _end(self, client: socket.socket, server: socket.socket) -> None:
        for sock in (client, server):
            _cut(sock)
        with self._lock:
            self._sockets -= {client, server}


def _cut(sock: socket.socket) -> None:
    """Close a socket now, waking any thread blocked on it."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
