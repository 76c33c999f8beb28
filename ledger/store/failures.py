"""Which store failures can pass and which cannot: the one place that tells them apart.

A driver error reaches the ledger as one of eventsourcing's persistence errors, with the
driver's own exception as its ``__cause__``. What no retry mends (a file that is not a
database, a corrupt one, a read-only file or session, a missing directory, a full disk,
refused credentials, a closed ledger) becomes a :class:`~ledger.errors.StoreFailure` subclass
at once; everything else stays retryable (``StoreUnavailable`` once the retries are spent):
a refused connection, a timeout, a restarting server, a busy lock.

The drivers' errors are read by their codes (``sqlite_errorcode``, PostgreSQL's SQLSTATE), not
their classes, so nothing here imports psycopg for a SQLite user.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ledger.errors import (
    LedgerClosed,
    StoreAuthFailed,
    StoreCorrupt,
    StoreDirectoryMissing,
    StoreFailure,
    StoreFull,
    StoreIsStandby,
    StoreNotADatabase,
    StoreReadOnly,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["CLOSED_MARK", "STANDBY_MARK", "permanent_failure", "store_error"]

CLOSED_MARK = "is closed"
"""In the message of the ``InterfaceError`` a closed recorder or pool raises."""
STANDBY_MARK = "the server is a hot standby"
"""In the message of the error a PostgreSQL writer raises when its connection reached a standby
(``in_hot_standby`` reported by the server), before anything is sent."""

# SQLite primary result codes (the low byte of an extended code).
_SQLITE_PERMANENT: dict[int, type[StoreFailure]] = {
    8: StoreReadOnly,  # SQLITE_READONLY (and its extended codes)
    11: StoreCorrupt,  # SQLITE_CORRUPT
    13: StoreFull,  # SQLITE_FULL
    26: StoreNotADatabase,  # SQLITE_NOTADB
}
_SQLITE_CANTOPEN = 14
# PostgreSQL SQLSTATEs.
_PG_PERMANENT: dict[str, type[StoreFailure]] = {
    "28P01": StoreAuthFailed,  # invalid_password
    "28000": StoreAuthFailed,  # invalid_authorization_specification
    "53100": StoreFull,  # disk_full
    "25006": StoreReadOnly,  # read_only_sql_transaction (a standby, a read-only session)
    "XX001": StoreCorrupt,  # data_corrupted
    "XX002": StoreCorrupt,  # index_corrupted
}
# libpq reports a refused login before any SQLSTATE exists: by its message.
_PG_AUTH_MESSAGES = ("password authentication failed", "no password supplied")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from, nearest first (cycles cut)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def permanent_failure(
    exc: BaseException, store: str, operation: str, *, path: str | None = None
) -> StoreFailure | None:
    """The permanent failure ``exc`` stands for, or ``None`` if it may pass with time.

    ``path``: the SQLite file, to tell a missing directory from another cannot-open.
    """
    for error in _chain(exc):
        text = str(error).strip()
        detail = text.splitlines()[0] if text else type(error).__name__
        code = getattr(error, "sqlite_errorcode", None)
        if isinstance(code, int):  # the driver's own error: it decides
            failure = _sqlite_failure(code, path)
            return None if failure is None else failure(store, operation, detail)
        failure = _other_failure(error, detail)
        if failure is not None:
            return failure(store, operation, detail)
    return None


def _sqlite_failure(code: int, path: str | None) -> type[StoreFailure] | None:
    primary = code & 0xFF
    if primary == _SQLITE_CANTOPEN and path is not None:
        if os.path.isdir(path):  # noqa: PTH112  (a directory where the file should be)
            return StoreNotADatabase
        directory = os.path.dirname(os.path.abspath(path))  # noqa: PTH100, PTH120
        return None if os.path.isdir(directory) else StoreDirectoryMissing  # noqa: PTH112
    return _SQLITE_PERMANENT.get(primary)


def _other_failure(error: BaseException, detail: str) -> type[StoreFailure] | None:
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate in _PG_PERMANENT:
        return _PG_PERMANENT[sqlstate]
    if type(error).__module__.startswith("psycopg") and any(
        mark in detail for mark in _PG_AUTH_MESSAGES
    ):
        return StoreAuthFailed
    if type(error).__name__ == "InterfaceError" and CLOSED_MARK in detail:
        return LedgerClosed
    if STANDBY_MARK in detail:
        return StoreIsStandby
    return None


def store_error(
    exc: BaseException,
    store: str,
    operation: str,
    *,
    path: str | None = None,
    command_id: str | None = None,
) -> StoreFailure | StoreUnavailable:
    """What to raise for a store error: its permanent failure, else ``StoreUnavailable``."""
    failure = permanent_failure(exc, store, operation, path=path)
    if failure is not None:
        return failure
    return StoreUnavailable(store, operation, str(exc), command_id=command_id)
