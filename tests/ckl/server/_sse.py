"""A small Server-Sent Events client over a raw socket, for the stream tests.

A raw socket rather than httpx: a test must be able to stop reading (a slow client, with a
small receive buffer set before it connects), see exactly how a stream ends (the server's
last chunk, a plain close, or a reset after a SIGKILL), and send any ``Last-Event-ID``.
:class:`SseStream` sends one ``GET``, reads the status line and headers, then decodes the
chunked body into SSE items as the spec parses them: an :class:`SseEvent` per blank-line
dispatch, a :class:`Comment` per ``:`` line, ``retry:`` kept on the stream.
"""

from __future__ import annotations

import codecs
import json
import socket
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Comment", "SseEvent", "SseStream"]


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: its ``id:`` (an int here: a global position), ``event:``, ``data:``."""

    id: int | None
    event: str
    data: str

    def json(self) -> Any:
        """The ``data:`` as JSON."""
        return json.loads(self.data)


@dataclass(frozen=True)
class Comment:
    """A ``:`` line (the server's keep-alive)."""

    text: str


@dataclass
class SseStream:
    """One ``GET`` of an event stream on its own socket (see the module docstring)."""

    url: str
    path: str
    last_event_id: str | None = None
    rcvbuf: int | None = None
    """SO_RCVBUF, set before connecting (so the advertised window stays small)."""
    timeout: float = 15.0
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    retry: int | None = None
    ended: str = ""
    """How the body ended: ``"complete"`` (the last chunk), ``"eof"`` or ``"reset"``."""
    _sock: socket.socket | None = None
    _raw: bytes = b""
    _text: str = ""
    _lines: deque[str] = field(default_factory=deque)
    _fields: dict[str, list[str]] = field(default_factory=dict)
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=codecs.getincrementaldecoder("utf-8")
    )

    def open(self) -> Self:
        """Connect, send the request, read the status line and headers."""
        parts = urlsplit(self.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.settimeout(self.timeout)
        try:
            sock.connect((host, port))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        lines = [f"GET {self.path} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
        if self.last_event_id is not None:
            lines.append(f"Last-Event-ID: {self.last_event_id}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = self._read_until(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in header_lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        return self

    def close(self) -> None:
        """Close the socket (the server sees the client go)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Self:
        return self if self._sock is not None else self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def sock(self) -> socket.socket:
        """The connected socket."""
        assert self._sock is not None, "not open"
        return self._sock

    def body(self) -> bytes:
        """The whole body of a non-stream answer (an error: it has a Content-Length)."""
        size = int(self.headers.get("content-length", "0"))
        while len(self._raw) < size and self._recv():
            pass
        return self._raw[:size]

    def items(self) -> Iterator[SseEvent | Comment]:
        """The stream's events and comments, until its body ends (see ``ended``).

        The parse state lives on the stream, so a second call goes on where the first left.
        """
        while True:
            while self._lines:
                item = self._parse(self._lines.popleft())
                if item is not None:
                    yield item
            piece = self._next_chunk()
            if piece is None:
                return
            self._text += self._decoder.decode(piece)
            *lines, self._text = self._text.split("\n")
            self._lines.extend(lines)

    def events(self) -> Iterator[SseEvent]:
        """The stream's events only (comments skipped)."""
        for item in self.items():
            if isinstance(item, SseEvent):
                yield item

    def _parse(self, line: str) -> SseEvent | Comment | None:
        if not line:
            fields, self._fields = self._fields, {}
            if "data" not in fields and "event" not in fields:
                return None
            ident = fields.get("id", [""])[-1]
            return SseEvent(
                id=int(ident) if ident else None,
                event=fields.get("event", ["message"])[-1],
                data="\n".join(fields.get("data", [])),
            )
        if line.startswith(":"):
            return Comment(line[1:].strip())
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "retry":
            self.retry = int(value)
        else:
            self._fields.setdefault(name, []).append(value)
        return None

    # ------------------------------------------------------------- transport

    def _recv(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            self.ended = "reset"
            return False
        if not data:
            self.ended = "eof"
            return False
        self._raw += data
        return True

    def _read_until(self, mark: bytes) -> bytes:
        while mark not in self._raw:
            if not self._recv():
                raise ConnectionError(f"the server closed before {mark!r}: {self._raw!r}")
        head, _, self._raw = self._raw.partition(mark)
        return head

    def _next_chunk(self) -> bytes | None:
        """The chunked body's next piece, decoded; None at its end."""
        if self.ended:
            return None
        while b"\r\n" not in self._raw:
            if not self._recv():
                return None
        size_line, _, rest = self._raw.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        self._raw = rest
        if size == 0:
            self.ended = "complete"
            return None
        while len(self._raw) < size + 2:
            if not self._recv():
                return None
        piece, self._raw = self._raw[:size], self._raw[size + 2 :]
        return piece
