"""Store URLs: which backend a URL names, and the URL safe to show (no password).

``sqlite:///path.db`` (the embedded default), ``postgresql://user:pass@host:5432/db`` and
``memory://`` (an in-memory SQLite database, for fast unit tests). This module imports nothing
but the standard library and the error tree, so settings and the CLI may use it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from ledger.errors import InvalidStoreURL

__all__ = ["StoreKind", "StoreURL", "parse_store_url", "redact_url"]

StoreKind = Literal["sqlite", "postgres", "memory"]


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. ``display`` never contains a password."""

    kind: StoreKind
    url: str
    display: str
    sqlite_path: str = ""

    @property
    def database_file(self) -> str | None:
        """The database's file, for a store kept in one local file (SQLite); else ``None``.

        Opening such a store creates the file: a caller that must not create one checks it.
        """
        return self.sqlite_path if self.kind == "sqlite" else None


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``: safe for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable store URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def parse_store_url(url: str) -> StoreURL:  # noqa: C901  (one branch per rule it checks)
    """Check a store URL and say which backend it names.

    Raises:
        InvalidStoreURL: not a string, unknown scheme, or no path/database name.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidStoreURL(str(url)[:200], "the store URL must be a non-empty string")
    display = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidStoreURL(display, f"it is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return StoreURL("memory", url, display)
    if scheme == "sqlite":
        if parts.netloc:
            raise InvalidStoreURL(
                display, "a SQLite URL has three slashes before a relative path (sqlite:///x.db)"
            )
        path = unquote(parts.path.removeprefix("/"))
        if not path:
            raise InvalidStoreURL(display, "the SQLite URL has no file path")
        return StoreURL("sqlite", url, display, sqlite_path=path)
    if scheme in {"postgresql", "postgres", "postgresql+psycopg"}:
        if not parts.hostname and "host=" not in parts.query:
            raise InvalidStoreURL(display, "the PostgreSQL URL has no host")
        if not parts.path.strip("/"):
            raise InvalidStoreURL(display, "the PostgreSQL URL has no database name")
        try:
            _ = parts.port
        except ValueError as exc:
            raise InvalidStoreURL(display, "the port is not a number") from exc
        plain = urlunsplit(parts._replace(scheme="postgresql"))
        return StoreURL("postgres", plain, display)
    raise InvalidStoreURL(display, f"unknown scheme {parts.scheme!r}")
