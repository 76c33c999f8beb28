"""What the read models share: how times and JSON are stored, and the view protocol."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Protocol

from ledger import encode_json

__all__ = ["View", "from_json", "parse_time", "to_json", "to_time"]

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def to_time(moment: datetime) -> str:
    """Fixed-width UTC text: sorts and compares as time on both backends."""
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """The datetime of :func:`to_time` text."""
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)


def to_json(value: object) -> str | None:
    """JSON text, or NULL for ``None``."""
    return None if value is None else encode_json(value).decode()


def from_json(text: str | None) -> Any:  # noqa: ANN401  (JSON is whatever was stored)
    """The value of :func:`to_json` text."""
    return None if text is None else json.loads(text)


class View(Protocol):
    """One read model: its tables (``projections.fold`` applies the log to them)."""

    name: str
    tables: tuple[str, ...]
    ddl: tuple[str, ...]
