"""Request bodies are bounded: refused with 413 before the rest of an oversized body is read.

A pure ASGI middleware (no body buffering in the framework): a ``Content-Length`` over the
limit is refused at once, without reading a byte of the body; a chunked body is counted as it
arrives and refused at the first chunk past the limit. Bodies within the limit are read into
memory here (at most the limit) and handed to the app unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ckl.server.errors import error_response
from ledger import InvalidInput, PayloadTooLarge

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DEFAULT_MAX_BODY_BYTES", "BodyLimit"]

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""1 MiB: above the ledger's own payload limits (64 KiB results) with room for JSON."""

_SETTING = "ckl serve --max-body-bytes"


class BodyLimit:
    """ASGI middleware refusing HTTP request bodies over ``limit`` bytes with 413."""

    def __init__(self, app: ASGIApp, limit: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with its body read (at most ``limit`` bytes), or refuse it."""
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        typed = await self._typed(scope, receive, send)
        if typed is None:
            return
        scope = typed
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, receive, send, declared)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(scope, receive, send, size)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _typed(scope: Scope, receive: Receive, send: Send) -> Scope | None:
        """The scope with a JSON content type; ``None`` once another type was refused (400)."""
        kind = _header(scope, b"content-type")
        if kind is None:
            # A body without a type is taken as JSON (quick scripts; note that curl -d sends
            # a form type, which is refused: use curl --json or -H 'Content-Type: …').
            return {**scope, "headers": [*scope["headers"], (b"content-type", b"application/json")]}
        if _is_json(kind):
            return scope
        refusal = InvalidInput(
            "Content-Type",
            f"{kind.decode('latin-1')!r} is not JSON: send the body as JSON with "
            "Content-Type: application/json",
        )
        await error_response(refusal)(scope, receive, send)
        return None

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: int) -> None:
        response = error_response(PayloadTooLarge("body", size, self.limit, _SETTING))
        # The connection is closed after the reply: the unread rest of the body is not ours
        # to drain (that is what refusing early saves).
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value)
    return None


def _is_json(kind: bytes) -> bool:
    media = kind.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None
