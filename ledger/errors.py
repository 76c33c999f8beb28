"""Errors raised by checkpoint-ledger.

```
LedgerError                          `except LedgerError` catches everything we raise on purpose
├── InvalidInput (ValueError)        bad argument or payload; nothing was written
│   ├── FileNotWritable              an archive or anchor file cannot be written
│   ├── PayloadTooLarge              a JSON payload is over its configured limit
│   ├── PayloadMismatch              a stored payload does not fit the type a worker declared
│   └── ProgressWentBackwards        items_processed lower than already recorded this attempt
├── InvalidStoreURL (ValueError)     the store URL cannot be understood
├── CheckpointNotFound (LookupError)
│   └── RunNotFound                  no checkpoint was ever created for the run
├── InvalidTransition                command not allowed in the checkpoint's state
│   ├── ConflictingCommand           same command repeated with a different payload
│   ├── StaleAttempt                 a write for an attempt a reset, retry or takeover superseded
│   │   └── LeaseLost                the writer's lease was taken over, released or reset
│   ├── CheckpointClaimed            another owner holds a live lease on the checkpoint
│   └── CheckpointCancelled          an operator cancelled the checkpoint
├── CheckpointFailedError            what awaiters of a failed checkpoint receive
├── AwaitTimeout (TimeoutError)      the wait gave up; the checkpoint may still finish
├── StoreUnavailable                 the store failed and may recover; the driver error is __cause__
├── StoreFailure                     the store failed in a way no retry mends (never retried)
│   ├── StoreNotADatabase            the file is not an SQLite database
│   ├── StoreCorrupt                 the database file is damaged: restore from a backup
│   ├── StoreReadOnly                the file, directory or session is read-only
│   │   └── StoreIsStandby           the PostgreSQL server is a hot standby: write to the primary
│   ├── StoreDirectoryMissing        the database file's directory does not exist
│   ├── StoreFull                    the disk or filesystem is full
│   ├── StoreAuthFailed              the server refused the credentials
│   └── LedgerClosed                 the Ledger was closed before the call
├── TamperDetected                   ckl verify found events altered or removed
├── ArchiveError                     archiving, export or import refused; nothing was changed
│   ├── RunNotFinished               a checkpoint of the run is still open or transiently failed
│   ├── RunArchived                  the run was archived: it cannot be written again
│   ├── ArchiveFileInvalid           an archive file is malformed or fails its hash chains
│   ├── ImportConflict               the store already holds different events for the run
│   └── PartitionNotDetachable       a partition holds unarchived events, or is still written
├── PlotUnavailable                  charts need matplotlib (the plot extra), not importable
└── ServiceError                     the HTTP service (`ckl serve`) refused a request itself
    ├── Unauthorized                 no bearer token, or one the server does not know (401)
    ├── OutOfScope                   the token lacks the scope the call needs (403)
    ├── TooManyStreams               a client holds as many event streams as it may (429)
    └── ServiceStopping              the server is shutting down; retry elsewhere or later (503)
```

Every error carries its facts as attributes and is picklable, because errors cross process
boundaries (subprocess workers, multiprocessing pools). Every exception class of every layer
is here, with two look-alikes that are not ours to raise: ``ledger.CheckpointError`` is the
failure a checkpoint's state records (a pydantic model, what :class:`CheckpointFailedError` is
built from), and ``ckl.demo.SimulatedOutage`` is the demo's stand-in for a driver's
``ConnectionError``.
"""

from __future__ import annotations

from typing import Self

__all__ = [
    "ArchiveError",
    "ArchiveFileInvalid",
    "AwaitTimeout",
    "CheckpointCancelled",
    "CheckpointClaimed",
    "CheckpointFailedError",
    "CheckpointNotFound",
    "ConflictingCommand",
    "FileNotWritable",
    "ImportConflict",
    "InvalidInput",
    "InvalidStoreURL",
    "InvalidTransition",
    "LeaseLost",
    "LedgerClosed",
    "LedgerError",
    "OutOfScope",
    "PartitionNotDetachable",
    "PayloadMismatch",
    "PayloadTooLarge",
    "PlotUnavailable",
    "ProgressWentBackwards",
    "RunArchived",
    "RunNotFinished",
    "RunNotFound",
    "ServiceError",
    "ServiceStopping",
    "StaleAttempt",
    "StoreAuthFailed",
    "StoreCorrupt",
    "StoreDirectoryMissing",
    "StoreFailure",
    "StoreFull",
    "StoreIsStandby",
    "StoreNotADatabase",
    "StoreReadOnly",
    "StoreSchemaMismatch",
    "StoreUnavailable",
    "TamperDetected",
    "TooManyStreams",
    "Unauthorized",
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


class FileNotWritable(InvalidInput):
    """A file (an archive, an anchor) could not be written; its partial copy was removed.

    Attributes:
        path: the file.
        cause: the operating system's reason (``Permission denied``, ``No space left``…).
    """

    def __init__(self, field: str, path: str, cause: str) -> None:
        super().__init__(field, f"cannot write {path!r}: {cause}")
        self.path, self.cause = path, cause

    def __reduce__(self) -> tuple[type[Self], tuple[str, str, str]]:  # type: ignore[override]
        return type(self), (self.field, self.path, self.cause)


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


class PayloadMismatch(InvalidInput):
    """A stored cursor, results or result does not fit the type the worker declared for it.

    Raised when a typed view (``cursor_as``, ``BatchContext`` with ``cursor_type=``…) reads a
    value written under another shape: the value is never returned half-converted.

    Attributes:
        expected: the declared type's name.
        problem: pydantic's account of the first mismatch, with its path inside the value.
    """

    def __init__(self, field: str, expected: str, problem: str) -> None:
        super().__init__(
            field,
            f"the stored value does not fit {expected} ({problem}); it was written under another "
            "shape: read it as JSON (the untyped accessors), or reset the checkpoint to start over",
        )
        self.expected, self.problem = expected, problem

    def __reduce__(self) -> tuple[type[Self], tuple[str, str, str]]:  # type: ignore[override]
        return type(self), (self.field, self.expected, self.problem)


class ProgressWentBackwards(InvalidInput):
    """``items_processed`` is lower than what this attempt already recorded."""

    def __init__(self, checkpoint: str, attempt: int, recorded: int, given: int) -> None:
        super().__init__(
            "items_processed",
            f"{given} is less than {recorded} already recorded for checkpoint {checkpoint} "
            f"in attempt {attempt}; progress never goes backwards within an attempt "
            "(resume from checkpoint_cursor and checkpoint_items_processed; reset the "
            "checkpoint only to start over)",
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


class StaleAttempt(InvalidTransition):
    """A write for an attempt that a reset, retry or takeover superseded; nothing was written.

    The worker that gets it must stop working on the batch: another attempt owns it now.

    Attributes:
        checkpoint: the checkpoint id.
        attempt: the attempt the write was issued under.
        current: the checkpoint's attempt now.
    """

    def __init__(self, checkpoint: str, attempt: int, current: int, hint: str = "") -> None:
        super().__init__(
            checkpoint,
            f"at attempt {current}",
            f"a write for attempt {attempt}",
            hint or "that attempt was superseded by a reset, retry or takeover; stop working on it",
        )
        self.attempt, self.current = attempt, current

    def __reduce__(self) -> tuple[type[Self], tuple[str, int, int, str]]:  # type: ignore[override]
        return type(self), (self.checkpoint, self.attempt, self.current, self.hint)


class LeaseLost(StaleAttempt):
    """The writer's lease is no longer the checkpoint's: taken over, released, reset or retried.

    Attributes:
        checkpoint: the checkpoint id.
        owner: the owner the lost lease was given to.
        current_owner: who holds the checkpoint's lease now (``None``: nobody).
        attempt: the lease's attempt.
        current: the checkpoint's attempt now.
    """

    def __init__(
        self, checkpoint: str, owner: str, current_owner: str | None, attempt: int, current: int
    ) -> None:
        holder = f"now held by {current_owner!r}" if current_owner else "no longer held"
        super().__init__(
            checkpoint,
            attempt,
            current,
            f"the lease of {owner!r} was lost ({holder}); stop working on the batch",
        )
        self.owner, self.current_owner = owner, current_owner

    def __reduce__(  # type: ignore[override]
        self,
    ) -> tuple[type[Self], tuple[str, str, str | None, int, int]]:
        return type(self), (
            self.checkpoint,
            self.owner,
            self.current_owner,
            self.attempt,
            self.current,
        )


class CheckpointClaimed(InvalidTransition):
    """Another owner holds a live lease on the checkpoint; nothing was written.

    Attributes:
        checkpoint: the checkpoint id.
        owner: the lease's owner.
        expires_at: when the lease expires unless renewed (ISO 8601, the ledger's clock).
    """

    def __init__(self, checkpoint: str, owner: str, expires_at: str) -> None:
        super().__init__(
            checkpoint,
            f"claimed by {owner!r} until {expires_at}",
            "this command",
            "wait for the lease to be released or to expire, or claim another batch",
        )
        self.owner, self.expires_at = owner, expires_at

    def __reduce__(self) -> tuple[type[Self], tuple[str, str, str]]:  # type: ignore[override]
        return type(self), (self.checkpoint, self.owner, self.expires_at)


class CheckpointCancelled(InvalidTransition):
    """An operator cancelled the checkpoint; no more work is recorded for it.

    Attributes:
        checkpoint: the checkpoint id.
        reason: the operator's reason.
    """

    def __init__(self, checkpoint: str, reason: str) -> None:
        super().__init__(
            checkpoint,
            f"cancelled ({reason})",
            "this command",
            "stop working on the batch; an operator may reset it to redo it",
        )
        self.reason = reason

    def __reduce__(self) -> tuple[type[Self], tuple[str, str]]:  # type: ignore[override]
        return type(self), (self.checkpoint, self.reason)


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
    """Waiting gave up; the checkpoint may still complete or fail later."""

    def __init__(self, checkpoint: str, timeout: float) -> None:
        super().__init__(
            f"checkpoint {checkpoint} did not complete or fail within {timeout:g}s; it may "
            "still do so later: await it again or inspect it with get_checkpoint"
        )
        self.checkpoint, self.timeout = checkpoint, timeout

    def __reduce__(self) -> tuple[type[Self], tuple[str, float]]:
        return type(self), (self.checkpoint, self.timeout)


class StoreUnavailable(LedgerError):
    """The store could not be reached or failed; the driver's error is ``__cause__``.

    Nothing is half-written: an event is either committed or not, and when the failure came
    during a command it is not known which. Repeat the command with the same ``command_id``
    (this error's attribute): if its event was committed, the repeat returns that outcome
    and writes nothing; if not, it applies the command once.

    Attributes:
        store: the store URL, password masked.
        operation: what the ledger was doing.
        detail: the driver's message.
        command_id: the id of the command whose outcome is unknown (``None`` for a read).
    """

    def __init__(
        self, store: str, operation: str, detail: str, command_id: str | None = None
    ) -> None:
        repeat = (
            f"repeat the command with command_id={command_id!r} (it then applies at most once)"
            if command_id
            else "repeat the command (repeating an applied command is safe)"
        )
        super().__init__(
            f"store {store} is unavailable during {operation}: {detail}; "
            f"check that the database is running and reachable, then {repeat}"
        )
        self.store, self.operation, self.detail = store, operation, detail
        self.command_id = command_id

    def __reduce__(self) -> tuple[type[Self], tuple[str, str, str, str | None]]:
        return type(self), (self.store, self.operation, self.detail, self.command_id)


class StoreFailure(LedgerError):
    """The store failed in a way that waiting does not mend: raised at once, never retried.

    Each subclass says what happened and what to do (``advice``). Nothing was written by the
    failed call. What can pass by itself (a refused connection, a timeout, a restarting
    server, a busy lock) is ``StoreUnavailable`` instead, after the ledger's retries.

    Attributes:
        store: the store URL, password masked.
        operation: what the ledger was doing.
        detail: the driver's message.
    """

    what = "failed"
    advice = "see the detail above"

    def __init__(self, store: str, operation: str, detail: str) -> None:
        super().__init__(f"store {store} {self.what} (during {operation}: {detail}); {self.advice}")
        self.store, self.operation, self.detail = store, operation, detail

    def __reduce__(self) -> tuple[type[Self], tuple[str, str, str]]:
        return type(self), (self.store, self.operation, self.detail)


class StoreNotADatabase(StoreFailure):
    """The store's path holds something that is not an SQLite database (a file, a directory)."""

    what = "is not a database"
    advice = (
        "check the path (--store / CKL_STORE): it names a file that is not a "
        "checkpoint-ledger store"
    )


class StoreCorrupt(StoreFailure):
    """The database file is damaged (truncated, overwritten, a disk error)."""

    what = "is corrupt"
    advice = (
        'restore it from a backup (docs/operations.md, "Backups"); `ckl verify` on the '
        "restored copy checks its hash chains"
    )


class StoreReadOnly(StoreFailure):
    """A write was refused: the file, its directory or mount, or the session is read-only."""

    what = "is read-only"
    advice = (
        "read commands work on it as it is; to write, use a writable copy or fix the "
        "permissions of the file and its directory"
    )


class StoreIsStandby(StoreReadOnly):
    """A writer reached a PostgreSQL hot standby (a replica in recovery), which takes no writes.

    Readers may use a standby (``reader_store``, ``read_only``); writers need the primary.
    """

    what = "is a hot standby (a replica in recovery) and cannot take writes"
    advice = (
        "write to the primary: a multi-host URL with target_session_attrs=read-write "
        "(postgresql://u@h1:5432,h2:5432/db?target_session_attrs=read-write) finds it, also "
        "after a failover; open a standby for reading with reader_store= / CKL_READER_STORE "
        "or read_only"
    )


class StoreDirectoryMissing(StoreFailure):
    """The SQLite file's directory does not exist, so the file cannot be created or opened."""

    what = "cannot be opened: its directory does not exist"
    advice = "check the path, or create the directory first"


class StoreFull(StoreFailure):
    """The disk or filesystem holding the store is full; the command was not written."""

    what = "is out of space"
    advice = (
        "free space on its disk (or archive finished runs: `ckl archive`), then repeat the command"
    )


class StoreAuthFailed(StoreFailure):
    """The database server refused the credentials of the store URL."""

    what = "refused the credentials"
    advice = (
        "check the user and password in the store URL (or PGPASSWORD / ~/.pgpass) and "
        "the server's pg_hba.conf"
    )


class LedgerClosed(StoreFailure):
    """The ``Ledger`` (or what uses it) was closed before this call."""

    what = "is closed in this process"
    advice = "open a new Ledger: a closed one releases its connections for good"


class StoreSchemaMismatch(LedgerError):
    """A store opened read-only has no ledger schema, or an older or newer one than the code.

    Attributes:
        store: the store URL, password masked.
        found: the store's schema version (0: no ledger schema).
        expected: the version this checkpoint-ledger keeps.
        standby: the store is a PostgreSQL hot standby (the schema may not have replicated).
    """

    def __init__(self, store: str, found: int, expected: int, standby: bool = False) -> None:
        if found == 0 and standby:
            what = f"store {store} is a hot standby with no checkpoint-ledger schema yet"
            advice = (
                "the schema reaches a standby by replication: open a writer on the primary "
                "(or run `ckl migrate` there), wait for the standby to replay it, then retry"
            )
        elif found == 0:
            what = f"store {store} has no checkpoint-ledger schema (an empty or foreign database)"
            advice = "check the store URL; a writer or `ckl migrate` creates the schema"
        elif found < expected:
            what = f"store {store} has schema version {found}, older than this code's {expected}"
            advice = f"upgrade it with `ckl migrate --store {store}` (stop older writers first)"
        else:
            what = f"store {store} has schema version {found}, newer than this code's {expected}"
            advice = "upgrade checkpoint-ledger to read it"
        super().__init__(f"{what}: {advice}")
        self.store, self.found, self.expected = store, found, expected
        self.standby = standby

    def __reduce__(self) -> tuple[type[Self], tuple[str, int, int, bool]]:
        return type(self), (self.store, self.found, self.expected, self.standby)


class TamperDetected(LedgerError):
    """Verification found events altered, removed or out of their chains (``ckl verify``).

    Attributes:
        scope: what was verified (``run 'r'`` or ``the store``).
        problems: how many problems were found.
    """

    def __init__(self, scope: str, problems: int) -> None:
        super().__init__(
            f"{problems} problem(s) in the hash chains of {scope}: events were altered or "
            "removed outside the ledger; restore them from a backup or an archive"
        )
        self.scope, self.problems = scope, problems

    def __reduce__(self) -> tuple[type[Self], tuple[str, int]]:
        return type(self), (self.scope, self.problems)


class ArchiveError(LedgerError):
    """Archiving, export or import was refused; the store and the file were left unchanged."""


class RunNotFinished(ArchiveError):
    """Only a finished run (every checkpoint completed or permanently failed) may be archived.

    Attributes:
        run_id: the run.
        unfinished: how many of its checkpoints are open or transiently failed.
    """

    def __init__(self, run_id: str, unfinished: int) -> None:
        super().__init__(
            f"run {run_id!r} is not finished: {unfinished} checkpoint(s) still open or "
            "transiently failed; complete, retry, cancel or fail them permanently first "
            "(nothing was archived)"
        )
        self.run_id, self.unfinished = run_id, unfinished

    def __reduce__(self) -> tuple[type[Self], tuple[str, int]]:
        return type(self), (self.run_id, self.unfinished)


class RunArchived(ArchiveError):
    """The run was archived and purged from this store; it cannot be written again.

    Attributes:
        run_id: the run.
    """

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"run {run_id!r} was archived from this store; its checkpoints cannot be created or "
            "written again (import its archive with --restore to bring it back)"
        )
        self.run_id = run_id

    def __reduce__(self) -> tuple[type[Self], tuple[str]]:
        return type(self), (self.run_id,)


class ArchiveFileInvalid(ArchiveError):
    """An archive file is malformed, truncated, or its events fail their hash chains.

    Attributes:
        path: the file.
        line: the 1-based line at fault (0 for the file as a whole).
        reason: what is wrong.
    """

    def __init__(self, path: str, line: int, reason: str) -> None:
        where = f"{path}, line {line}" if line else path
        super().__init__(f"archive {where} is invalid: {reason}; nothing was written")
        self.path, self.line, self.reason = path, line, reason

    def __reduce__(self) -> tuple[type[Self], tuple[str, int, str]]:
        return type(self), (self.path, self.line, self.reason)


class ImportConflict(ArchiveError):
    """The store already holds events of the run that differ from the archive's.

    Attributes:
        run_id: the run.
        checkpoint: the checkpoint id whose events differ.
        reason: how they differ.
    """

    def __init__(self, run_id: str, checkpoint: str, reason: str) -> None:
        super().__init__(
            f"cannot import run {run_id!r}: checkpoint {checkpoint} {reason}; nothing was written"
        )
        self.run_id, self.checkpoint, self.reason = run_id, checkpoint, reason

    def __reduce__(self) -> tuple[type[Self], tuple[str, str, str]]:
        return type(self), (self.run_id, self.checkpoint, self.reason)


class PartitionNotDetachable(ArchiveError):
    """A partition of the event log cannot be detached (yet); nothing was changed.

    Attributes:
        partition: the partition's table name.
        reason: why, and what to do first.
    """

    def __init__(self, partition: str, reason: str) -> None:
        super().__init__(f"partition {partition} cannot be detached: {reason}; nothing was changed")
        self.partition, self.reason = partition, reason

    def __reduce__(self) -> tuple[type[Self], tuple[str, str]]:
        return type(self), (self.partition, self.reason)


class RunNotFound(CheckpointNotFound):
    """No checkpoint was ever created for the run (a typo, or the wrong ``--store``).

    Attributes:
        run_id: the run.
    """

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        message = (
            f"run {run_id!r} does not exist in this store (no checkpoint was created for it); "
            "check the run id and --store"
        )
        self.args = (message,)
        self.run_id = run_id

    def __reduce__(self) -> tuple[type[Self], tuple[str]]:
        return type(self), (self.run_id,)


class PlotUnavailable(LedgerError):
    """matplotlib, which draws the charts, cannot be imported.

    Attributes:
        detail: the import error's message.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"charts need matplotlib, which cannot be imported ({detail}); "
            "install the plot extra: pip install 'checkpoint-ledger[plot]'"
        )
        self.detail = detail

    def __reduce__(self) -> tuple[type[Self], tuple[str]]:
        return type(self), (self.detail,)


class ServiceError(LedgerError):
    """The HTTP service refused a request before any ledger call: nothing was read or written."""


class Unauthorized(ServiceError):
    """The request has no bearer token, or one the server's token file does not hold.

    The token itself is never part of the error (nor of any log line).

    Attributes:
        reason: ``"missing"`` (no ``Authorization: Bearer`` header) or ``"unknown"``.
    """

    def __init__(self, reason: str) -> None:
        what = (
            "has no bearer token" if reason == "missing" else "has a token the server does not know"
        )
        super().__init__(
            f"the request {what}; send `Authorization: Bearer <token>` with a token from "
            "the server's --token-file"
        )
        self.reason = reason

    def __reduce__(self) -> tuple[type[Self], tuple[str]]:
        return type(self), (self.reason,)


class OutOfScope(ServiceError):
    """The token is known but lacks the scope this call needs.

    Attributes:
        token_name: the name the token file gives the token (never the token).
        needed: the scope the call needs (``read``, ``write`` or ``operate``).
        granted: the token's scopes.
    """

    def __init__(self, token_name: str, needed: str, granted: tuple[str, ...]) -> None:
        super().__init__(
            f"token {token_name!r} has scope(s) {', '.join(granted) or 'none'}; this call needs "
            f"{needed!r} (add it to the token's line in the token file)"
        )
        self.token_name, self.needed, self.granted = token_name, needed, tuple(granted)

    def __reduce__(self) -> tuple[type[Self], tuple[str, str, tuple[str, ...]]]:
        return type(self), (self.token_name, self.needed, self.granted)


class TooManyStreams(ServiceError):
    """A client already holds as many open event streams as the server allows it.

    Attributes:
        client: who the server counted (a token's name, or the peer address without tokens).
        limit: the streams allowed per client (``ckl serve --max-streams``).
    """

    def __init__(self, client: str, limit: int) -> None:
        super().__init__(
            f"client {client} already holds {limit} open event stream(s), the most allowed; "
            "close one (or raise ckl serve --max-streams) and reconnect"
        )
        self.client, self.limit = client, limit

    def __reduce__(self) -> tuple[type[Self], tuple[str, int]]:
        return type(self), (self.client, self.limit)


class ServiceStopping(ServiceError):
    """The server is shutting down: the call was not taken (nothing was written).

    Attributes:
        operation: what the request asked for.
    """

    def __init__(self, operation: str) -> None:
        super().__init__(
            f"the server is shutting down and did not take {operation}; nothing was written: "
            "repeat the request (with the same Idempotency-Key) when it is back"
        )
        self.operation = operation

    def __reduce__(self) -> tuple[type[Self], tuple[str]]:
        return type(self), (self.operation,)
