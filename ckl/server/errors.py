"""Typed errors as HTTP statuses: one table, one JSON body shape, one place.

Every error the service answers with has the body ``{"error", "message", "status", "fields"}``:
``error`` names the class (``StaleAttempt``), ``fields`` holds its attributes (the same facts
the Python exception carries: ``checkpoint``, ``attempt``…). A client may branch on ``error``
exactly as a Python caller catches the class. Nothing is written by a request that errors.

- 413 ``PayloadTooLarge``: refused before the whole body was read.
- 400 ``InvalidInput`` (malformed JSON, a wrong type, a bad argument), ``InvalidStoreURL``.
- 404 ``CheckpointNotFound``, ``RunNotFound``.
- 410 ``RunArchived``: the run was archived and is never written again.
- 409 ``InvalidTransition`` and its subclasses (``ConflictingCommand``, ``StaleAttempt``,
  ``LeaseLost``, ``CheckpointClaimed``, ``CheckpointCancelled``), other ``ArchiveError``.
- 408 ``AwaitTimeout``: the long-poll expired; the checkpoint is still open.
- 401 ``Unauthorized`` (with ``WWW-Authenticate: Bearer``), 403 ``OutOfScope``.
- 429 ``TooManyStreams``.
- 503 ``StoreUnavailable`` and ``ServiceStopping`` with ``Retry-After`` (repeat with the same
  ``Idempotency-Key``); ``StoreFailure``, ``StoreSchemaMismatch`` without (an operator acts).
- 500 any other ``LedgerError``.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from ledger import (
    ArchiveError,
    AwaitTimeout,
    CheckpointNotFound,
    InvalidInput,
    InvalidStoreURL,
    InvalidTransition,
    LedgerError,
    OutOfScope,
    PayloadTooLarge,
    RunArchived,
    ServiceStopping,
    StoreFailure,
    StoreSchemaMismatch,
    StoreUnavailable,
    TooManyStreams,
    Unauthorized,
)

if TYPE_CHECKING:
    from starlette.responses import Response

__all__ = ["RETRY_AFTER_SECONDS", "ErrorBody", "error_fields", "error_response", "status_of"]

RETRY_AFTER_SECONDS = 1
"""What ``Retry-After`` tells a client after ``StoreUnavailable`` or ``ServiceStopping``."""

_STATUSES: tuple[tuple[type[LedgerError], int], ...] = (
    # Most specific first: PayloadTooLarge is an InvalidInput, RunArchived an ArchiveError.
    (PayloadTooLarge, 413),
    (InvalidInput, 400),
    (InvalidStoreURL, 400),
    (CheckpointNotFound, 404),
    (RunArchived, 410),
    (InvalidTransition, 409),
    (ArchiveError, 409),
    (AwaitTimeout, 408),
    (Unauthorized, 401),
    (OutOfScope, 403),
    (TooManyStreams, 429),
    (StoreUnavailable, 503),
    (ServiceStopping, 503),
    (StoreFailure, 503),
    (StoreSchemaMismatch, 503),
)


class ErrorBody(BaseModel):
    """The body of every error response."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    error: str = Field(description="The error's class name (`StaleAttempt`, `InvalidInput`…).")
    message: str = Field(description="What happened and what to do next.")
    status: int = Field(description="The HTTP status, repeated for clients that lose it.")
    fields: dict[str, object] = Field(
        description="The error's attributes, as the Python exception carries them."
    )


def status_of(exc: LedgerError) -> int:
    """The HTTP status of a ledger error (500 for one not in the table)."""
    for kind, status in _STATUSES:
        if isinstance(exc, kind):
            return status
    return 500


def error_fields(exc: LedgerError) -> dict[str, object]:
    """The error's attributes by name: its constructor's parameters, read back from it.

    Every ledger error is picklable through ``__reduce__`` with its constructor's arguments,
    so the parameter names of ``__init__`` name the facts it carries.
    """
    try:
        params = [
            name
            for name in inspect.signature(type(exc).__init__).parameters
            if name not in ("self", "args", "kwargs")
        ]
    except (TypeError, ValueError):  # pragma: no cover - every ledger error has a signature
        return {}
    fields: dict[str, object] = {}
    for name in params:
        value = getattr(exc, name, None)
        if isinstance(value, tuple):
            value = list(value)
        if value is None or isinstance(value, str | int | float | bool | list):
            fields[name] = value
        else:
            fields[name] = str(value)
    return fields


def error_response(exc: LedgerError) -> Response:
    """The JSON response for ``exc``, with its status and the headers its status calls for."""
    from starlette.responses import JSONResponse  # noqa: PLC0415  (web stack loads on serve)

    status = status_of(exc)
    body = ErrorBody(error=type(exc).__name__, message=str(exc), status=status, fields={})
    headers: dict[str, str] = {}
    if isinstance(exc, StoreUnavailable | ServiceStopping):
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="ckl"'
    content = body.model_dump()
    content["fields"] = error_fields(exc)
    return JSONResponse(content, status_code=status, headers=headers)
