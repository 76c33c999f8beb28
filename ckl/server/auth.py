"""Bearer tokens with scopes, read from a token file; loopback-only when there is none.

The token file has one token per line, ``#`` comments and blank lines ignored::

    # name   scopes              secret: sha256:<64 hex digits of its SHA-256>, or the token
    worker-1 read,write          sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c…
    oncall   read,write,operate  sha256:…

``ckl token NAME --scopes read,write --token-file F`` makes a random token, prints it once and
appends its line with the SHA-256 only, so the file never holds a usable secret. A plain
token (at least 16 characters) is accepted too, for quick set-ups.

Scopes: ``read`` (every GET and the streams), ``write`` (the worker's commands: create, yield,
complete, fail, claim, claim-next, heartbeat, release), ``operate`` (retry, reset, cancel,
verify, archive). A token holds any set of them; a worker typically has ``read,write``.

Checking a token hashes it and compares the digest with **every** line's digest in constant
time (``hmac.compare_digest``), so neither which line matched nor how much of a secret was
right shows in the timing. Tokens are never logged, echoed in an error, or kept in memory
beyond the request.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ledger import InvalidInput, OutOfScope, Unauthorized

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "SCOPES",
    "Scope",
    "TokenEntry",
    "TokenTable",
    "new_token",
    "read_token_file",
    "token_line",
]

Scope = Literal["read", "write", "operate"]
SCOPES: tuple[Scope, ...] = ("read", "write", "operate")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}")
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
MIN_PLAIN_TOKEN = 16


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One line of the token file: a name, its scopes and the SHA-256 of its secret."""

    name: str
    scopes: frozenset[str]
    digest: bytes


class TokenTable:
    """The tokens a server accepts; empty means no authentication (loopback only)."""

    def __init__(self, entries: Iterable[TokenEntry] = ()) -> None:
        self.entries = tuple(entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def authenticate(self, presented: str | None) -> TokenEntry:
        """The entry whose secret is ``presented``.

        Raises:
            Unauthorized: no token, or none of the file's.
        """
        if not presented:
            raise Unauthorized("missing")
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found: TokenEntry | None = None
        for entry in self.entries:  # every line compared: no early exit to time
            if hmac.compare_digest(entry.digest, digest):
                found = entry
        if found is None:
            raise Unauthorized("unknown")
        return found

    @staticmethod
    def authorize(entry: TokenEntry, scope: Scope) -> None:
        """Raise unless ``entry`` holds ``scope``.

        Raises:
            OutOfScope: it does not.
        """
        if scope not in entry.scopes:
            raise OutOfScope(entry.name, scope, tuple(s for s in SCOPES if s in entry.scopes))


def read_token_file(path: str) -> TokenTable:
    """The token table of ``path``.

    Raises:
        InvalidInput: the file cannot be read, is empty, or a line is malformed (named by
            its number; the secret is never repeated).
    """
    try:
        with open(path, encoding="utf-8") as file:  # noqa: PTH123
            lines = file.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput("token_file", f"cannot read {path}: {exc}") from None
    entries: list[TokenEntry] = []
    names: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entries.append(_parse_line(path, number, line, names))
    if not entries:
        raise InvalidInput("token_file", f"{path} holds no token (see `ckl token --help`)")
    return TokenTable(entries)


def _parse_line(path: str, number: int, line: str, names: set[str]) -> TokenEntry:
    where = f"{path} line {number}"
    parts = line.split()
    if len(parts) != 3:  # noqa: PLR2004
        raise InvalidInput("token_file", f"{where}: expected `NAME SCOPES SECRET`")
    name, scope_text, secret = parts
    if not _NAME.fullmatch(name):
        raise InvalidInput("token_file", f"{where}: a name is 1 to 64 of A-Z a-z 0-9 _ . @ : -")
    if name in names:
        raise InvalidInput("token_file", f"{where}: the name {name!r} is used twice")
    names.add(name)
    scopes = frozenset(scope_text.split(","))
    unknown = sorted(scopes - set(SCOPES))
    if unknown or not scopes:
        raise InvalidInput(
            "token_file",
            f"{where}: unknown scope(s) {', '.join(unknown)}; scopes are read, write, operate",
        )
    hashed = _DIGEST.fullmatch(secret)
    if hashed:
        digest = bytes.fromhex(hashed.group(1))
    elif secret.startswith("sha256:"):
        raise InvalidInput("token_file", f"{where}: sha256: takes 64 lower-case hex digits")
    elif len(secret) < MIN_PLAIN_TOKEN:
        raise InvalidInput(
            "token_file", f"{where}: a plain token needs at least {MIN_PLAIN_TOKEN} characters"
        )
    else:
        digest = hashlib.sha256(secret.encode()).digest()
    return TokenEntry(name, scopes, digest)


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return "ckl_" + secrets.token_urlsafe(32)


def token_line(name: str, scopes: Iterable[str], token: str) -> str:
    """The token file's line for ``token``: its SHA-256 only.

    Raises:
        InvalidInput: a bad name or an unknown scope.
    """
    chosen = list(dict.fromkeys(scopes))
    if not _NAME.fullmatch(name):
        raise InvalidInput("name", "1 to 64 of A-Z a-z 0-9 _ . @ : -")
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown or not chosen:
        raise InvalidInput("scopes", f"unknown {', '.join(unknown)}; use read, write, operate")
    digest = hashlib.sha256(token.encode()).hexdigest()
    return f"{name} {','.join(chosen)} sha256:{digest}{os.linesep}"
