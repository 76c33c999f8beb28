"""Store URLs: which backend a URL names, and the URL safe to show (no password).

``sqlite:///path.db`` (the embedded default), ``postgresql://user:pass@host:5432/db`` and
``memory://`` (an in-memory SQLite database, for fast unit tests). This module imports nothing
but the standard library and the error tree, so settings and the CLI may use it at start-up.

A PostgreSQL URL may name several servers, in either of libpq's two forms: in the netloc
(``postgresql://u@h1:5432,h2:5433/db``) or in the query (``?host=h1,h2&port=5432,5433``), with
``target_session_attrs`` saying which one to use (``read-write``: the primary, so writers follow
a failover; ``prefer-standby``: a replica for readers). The URL is handed to libpq as it is;
here each host's port is checked, which ``urlsplit`` alone cannot do for a multi-host netloc.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from ledger.errors import InvalidStoreURL

__all__ = ["StoreKind", "StoreURL", "parse_store_url", "postgres_hosts", "redact_url"]

StoreKind = Literal["sqlite", "postgres", "memory"]
_TARGET_SESSION_ATTRS = frozenset(
    {"any", "read-write", "read-only", "primary", "standby", "prefer-standby"}
)
_MAX_PORT = 65535
_SECRET_KEYS = frozenset({"password", "sslpassword"})
"""Query keys whose values ``display`` masks (libpq's: the password, the client key's)."""


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
    # From the raw netloc: with several hosts (``h1:1,h2:2``) ``parts.password`` still works,
    # but the hosts must be kept as written.
    userinfo, at, hosts = parts.netloc.rpartition("@")
    query = parts.query
    if "=" in query:
        query = "&".join(_redact_pair(pair) for pair in query.split("&"))
    if not at or ":" not in userinfo:
        return url if query == parts.query else urlunsplit(parts._replace(query=query))
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}", query=query))


def _redact_pair(pair: str) -> str:
    """One ``key=value`` of a query, its value masked if the key names a secret.

    libpq percent-decodes keys as well as values, so ``pass%77ord=`` is a password too.
    """
    key, eq, _ = pair.partition("=")
    if eq and unquote(key).strip().lower() in _SECRET_KEYS:
        return f"{key}=***"
    return pair


def postgres_hosts(url: str) -> list[tuple[str, int | None]]:
    """The ``(host, port)`` pairs a PostgreSQL URL names, netloc and query forms alike.

    A port left out is ``None`` (libpq's default, 5432). The query's ``host=`` wins over the
    netloc, as in libpq.

    Raises:
        InvalidStoreURL: the URL cannot be parsed, a port is not a number in 1…65535, or the
            ports do not match the hosts (one port for all, or one per host).
    """
    display = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise InvalidStoreURL(display, f"it is not a valid URL ({exc})") from exc
    query = parse_qs(parts.query)
    hosts: list[str]
    ports: list[str]
    if "host" in query:
        hosts = ",".join(query["host"]).split(",")
        ports = ",".join(query.get("port", [""])).split(",")
    else:
        netloc = parts.netloc.rpartition("@")[2]
        hosts, ports = [], []
        for item in netloc.split(",") if netloc else []:
            host, port = _split_host_port(display, item)
            hosts.append(host)
            ports.append(port)
        if "port" in query:
            ports = ",".join(query["port"]).split(",")
    if len(ports) == 1 and len(hosts) > 1:
        ports = ports * len(hosts)
    if len(ports) != len(hosts):
        raise InvalidStoreURL(
            display, f"{len(hosts)} hosts but {len(ports)} ports (give one port, or one per host)"
        )
    return [(unquote(h), _port(display, p)) for h, p in zip(hosts, ports, strict=True)]


def _split_host_port(display: str, item: str) -> tuple[str, str]:
    """``host[:port]`` or ``[v6]:port`` of one netloc entry."""
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise InvalidStoreURL(display, f"{item!r} is not a host: an IPv6 address needs ']'")
        return host, rest[1:]
    host, _, port = item.partition(":")
    return host, port


def _port(display: str, text: str) -> int | None:
    if not text:
        return None
    # ASCII digits only: str.isdigit() is true of "²" (which int() refuses) and of "٣" (which
    # int() reads as 3, and libpq refuses).
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= _MAX_PORT:
        raise InvalidStoreURL(display, f"the port {text!r} is not a number from 1 to 65535")
    return int(text)


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
        if not parts.path.strip("/"):
            raise InvalidStoreURL(display, "the PostgreSQL URL has no database name")
        hosts = postgres_hosts(url)
        if not hosts or not all(host for host, _ in hosts):
            raise InvalidStoreURL(display, "the PostgreSQL URL has no host (or an empty one)")
        attrs = parse_qs(parts.query).get("target_session_attrs", [])
        if attrs and attrs[-1] not in _TARGET_SESSION_ATTRS:
            raise InvalidStoreURL(
                display,
                f"target_session_attrs={attrs[-1]!r} is not one of libpq's: "
                + ", ".join(sorted(_TARGET_SESSION_ATTRS)),
            )
        plain = urlunsplit(parts._replace(scheme="postgresql"))
        return StoreURL("postgres", plain, display)
    raise InvalidStoreURL(display, f"unknown scheme {parts.scheme!r}")
