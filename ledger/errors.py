"""Errors raised by checkpoint-ledger.

```
LedgerError                          `except LedgerError` catches everything we raise on purpose
├── InvalidInput (ValueError)        bad argument or payload; nothing was written
│   ├── PayloadTooLarge              a JSON payload is over its configured limit
│   └── ProgressWentBackwards        items_processed lower than already recorded this attempt
├── InvalidStoreURL (ValueError)     the store URL cannot be understood
├── CheckpointNotFound (LookupError)
├── InvalidTransition                command not allowed in the checkpoint's state
│   └── ConflictingCommand           same command repeated with a different payload
├── CheckpointFailedError            what awaiters of a failed checkpoint receive
├── AwaitTimeout (TimeoutError)      the wait gave up; the checkpoint may still finish
└── StoreUnavailable                 the store failed; the driver error is __cause__
```

Every error carries its facts as attributes and is picklable, because errors cross process
boundaries (subprocess workers, multiprocessing pools).
"""

from __future__ import annotations

from typing import Self

__all__ = [
    "AwaitTimeout",
    "CheckpointFailedError",
    "CheckpointNotFound",
    "ConflictingCommand",
    "InvalidInput",
    "InvalidStoreURL",
    "InvalidTransition",
    "LedgerError",
    "PayloadTooLarge",
    "ProgressWentBackwards",
    "StoreUnavailable",
]


class LedgerError(Exception):
    """Base class of every error checkpoint-ledger raises on purpose."""


class InvalidInput(LedgerError, ValueError):
    """An argument or payload was rejected before anything was written.

    Attributes:
        field: the argument or payload field at fault (``"cursor"``, ``"metadata.source"``…).
        reason: what is wrong with it.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid {field}: {reason}; nothing was written")
        self.field, self.reason = field, reason

    def __reduce__(self) -> tuple[type[Self], tuple[str, str]]:
        return type(self), (self.field, self.reason)


class PayloadTooLarge(InvalidInput):
    """A JSON payload is larger than its configured limit.

    Attributes:
        size: the payload's size in bytes, encoded as compact JSON.
        limit: the configured limit in bytes (a ``LedgerSettings`` field).
    """

    def __init__(self, field: str, size: int, limit: int, setting: str) -> None:
        super().__init__(
            field,
            f"{size} bytes as JSON is over the {limit}-byte limit; store large data elsewhere "
            f"and keep a reference, or raise {setting}",
        )
        self.size, self.limit, self.setting = size, limit, setting

    def __reduce__(self) -> tuple[type[Self], tuple[str, int, int, str]]:  # type: ignore[override]
        return type(self), (self.field, self.size, self.limit, self.setting)


class ProgressWentBackwards(InvalidInput):
    """``items_processed`` is lower than what this attempt already recorded."""

    def __init__(self, checkpoint: str, attempt: int, recorded: int, given: int) -> None:
        super().__init__(
            "items_processed",
            f"{given} is less than {recorded} already recorded for checkpoint {checkpoint} "
            f"in attempt {attempt}; progress never goes backwards within an attempt "
            "(reset the checkpoint to start over)",
        )
        self.checkpoint, self.attempt, self.recorded, self.given = (
            checkpoint,
            attempt,
            recorded,
            given,
        )

    def __reduce__(self) -> tuple[type[Self], tuple[str, int, int, int]]:  # type: ignore[override]
        return type(self), (self.checkpoint, self.attempt, self.recorded, self.given)


class InvalidStoreURL(LedgerError, ValueError):
    """The store URL is not one of ``sqlite:///path``, ``postgresql://…`` or ``memory://``.

    The URL in the message has its password removed.
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"cannot use store {url!r}: {reason}; use sqlite:///path/to/file.db, "
            "postgresql://user@host:5432/dbname or memory://"
        )
        self.url, self.reason = url, reason

    def __reduce__(self) -> tuple[type[Self], tuple[str, str]]:
        return type(self), (self.url, self.reason)


class CheckpointNotFound(LedgerError, LookupError):
    """No checkpoint exists for the token or the (run_id, batch_index) pair."""

    def __init__(self, checkpoint: str) -> None:
        super().__init__(
            f"checkpoint {checkpoint} does not exist; create it with create_checkpoint first"
        )
        self.checkpoint = checkpoint

    def __reduce__(self) -> tuple[type[Self], tuple[str]]:
        return type(self), (self.checkpoint,)


class InvalidTransition(LedgerError):
    """The command is not allowed in the checkpoint's current state; nothing was written."""

    def __init__(self, checkpoint: str, state: str, command: str, hint: str = "") -> None:
        advice = hint or "reset it to redo it"
        super().__init__(f"checkpoint {checkpoint} is {state}; {command} is not allowed ({advice})")
        self.checkpoint, self.state, self.command, self.hint = checkpoint, state, command, hint

    def __reduce__(self) -> tuple[type[Self], tuple[str, str, str, str]]:
        return type(self), (self.checkpoint, self.state, self.command, self.hint)


class ConflictingCommand(InvalidTransition):
    """The command was already applied with a different payload; nothing was written."""

    def __init__(self, checkpoint: str, state: str, command: str, hint: str = "") -> None:
        super().__init__(
            checkpoint,
            state,
            command,
            hint or "it was already done with a different payload; reset it to redo it",
        )


class CheckpointFailedError(LedgerError):
    """The awaited checkpoint failed.

    Attributes:
        checkpoint: the checkpoint id.
        error_type: the failure's error type (an exception class name or ``"Error"``).
        message: the failure's message.
        transient: whether a retry may succeed.
        attempt: the attempt that failed.
    """

    def __init__(
        self, checkpoint: str, error_type: str, message: str, transient: bool, attempt: int
    ) -> None:
        kind = "transient" if transient else "permanent"
        what_next = "retry_checkpoint resumes it" if transient else "reset it to redo it"
        super().__init__(
            f"checkpoint {checkpoint} failed ({kind}, attempt {attempt}): "
            f"{error_type}: {message}; {what_next}"
        )
        self.checkpoint, self.error_type, self.message = checkpoint, error_type, message
        self.transient, self.attempt = transient, attempt

    def __reduce__(self) -> tuple[type[Self], tuple[str, str, str, bool, int]]:
        return type(self), (
            self.checkpoint,
            self.error_type,
            self.message,
            self.transient,
            self.attempt,
        )


class AwaitTimeout(LedgerError, TimeoutError):
    """Waiting gave up; the checkpoint may still settle later."""

    def __init__(self, checkpoint: str, timeout: float) -> None:
        super().__init__(
            f"checkpoint {checkpoint} did not settle within {timeout:g}s; it may still "
            "settle later: await it again or inspect it with get_checkpoint"
        )
        self.checkpoint, self.timeout = checkpoint, timeout

    def __reduce__(self) -> tuple[type[Self], tuple[str, float]]:
        return type(self), (self.checkpoint, self.timeout)


class StoreUnavailable(LedgerError):
    """The store could not be reached or failed; the driver's error is ``__cause__``.

    Nothing is half-written: an event is either committed or not. After this error a command
    may be repeated safely, because repeating an applied command is a no-op.
    """

    def __init__(self, store: str, operation: str, detail: str) -> None:
        super().__init__(
            f"store {store} is unavailable during {operation}: {detail}; "
            "check that the database is running and reachable, then repeat the command "
            "(repeating an applied command is safe)"
        )
        self.store, self.operation, self.detail = store, operation, detail

    def __reduce__(self) -> tuple[type[Self], tuple[str, str, str]]:
        return type(self), (self.store, self.operation, self.detail)
