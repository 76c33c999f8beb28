"""psycopg at the edges: its errors as eventsourcing's, and libpq results checked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
)
from psycopg.errors import error_from_result

if TYPE_CHECKING:
    from psycopg import pq

__all__ = ["results_check", "translate"]


def translate(exc: psycopg.Error) -> PersistenceError:
    """The eventsourcing persistence error for a psycopg error (first line of its message)."""
    # Messages from psycopg never include the password, but may include host and user.
    detail = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return IntegrityError(detail)
    if isinstance(exc, psycopg.OperationalError):
        return OperationalError(detail)
    if isinstance(exc, psycopg.InterfaceError):
        return InterfaceError(detail)
    if isinstance(exc, psycopg.ProgrammingError):
        return ProgrammingError(detail)
    return PersistenceError(detail)


def results_check(
    conn: psycopg.Connection[Any], results: list[pq.abc.PGresult], expected: pq.ExecStatus
) -> pq.abc.PGresult:
    """The statement's last result, or psycopg's exception for the error a result reports."""
    if not results:
        msg = "no result from the server"
        raise psycopg.OperationalError(msg)
    for result in results:
        if result.status != expected:
            raise error_from_result(result, encoding=conn.info.encoding)
    return results[-1]
