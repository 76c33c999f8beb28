"""Run ids in URL paths: any run id, ``/`` and ``%`` included, as one percent-encoded segment.

A run id may hold any printable character (``etl/2026-12-01`` is a fine one), but ASGI servers
decode the path before routing, so ``/v1/runs/etl%2F2026-12-01`` would arrive as two segments.
:class:`RawSegments` re-encodes the ``/`` and ``%`` of each segment of the raw path under
``/v1/``, and routes declare ``{run_id:run_id}``, whose convertor decodes them again: the route
receives the run id exactly, whatever it holds. Clients encode a run id as a path segment
(``encodeURIComponent``, ``urllib.parse.quote(run_id, safe="")``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar
from urllib.parse import unquote

from starlette.convertors import Convertor, register_url_convertor

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["RawSegments", "RunIdConvertor"]


class RunIdConvertor(Convertor[str]):
    """``{run_id:run_id}``: one segment, its ``%2F`` and ``%25`` decoded."""

    regex: ClassVar[str] = "[^/]+"

    def convert(self, value: str) -> str:
        """The run id the segment encodes."""
        return unquote(value)

    def to_string(self, value: str) -> str:
        """The segment of a run id."""
        return value.replace("%", "%25").replace("/", "%2F")


register_url_convertor("run_id", RunIdConvertor())


class RawSegments:
    """ASGI middleware: under ``/v1/``, route on segments of the raw path (see module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Rewrite ``scope["path"]`` so an encoded ``/`` stays inside its segment."""
        raw = scope.get("raw_path") if scope["type"] in ("http", "websocket") else None
        if raw and raw.startswith(b"/v1/") and b"%" in raw:
            text = raw.split(b"?", 1)[0].decode("latin-1")
            segments = [unquote(part) for part in text.split("/")]
            path = "/".join(s.replace("%", "%25").replace("/", "%2F") for s in segments)
            scope = {**scope, "path": path}
        await self.app(scope, receive, send)
