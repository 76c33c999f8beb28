"""The Ledger: commands in, one immutable event appended, plain state out.

A command loads the checkpoint (from the in-process cache, else the latest snapshot plus the
events after it), decides the one event it implies, and appends it. The append is optimistic:
if another process appended to the same checkpoint first, the store refuses the duplicate
version, and the command reloads and decides again. A cached state is trusted only where the
store can refute it (an append); a rejection or a no-op decided from the cache is re-checked
against the store first, so a stale cache never causes a wrong answer.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import socket
import threading
import time
import traceback
from collections import OrderedDict
from datetime import datetime
from typing import TYPE_CHECKING, Self, TypeVar, cast
from uuid import UUID, uuid4

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    MapperDeserialisationError,
    Notification,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from pydantic import BaseModel, TypeAdapter, ValidationError

from ledger._json import (
    Cursor,
    CursorInput,
    JSONObject,
    JSONObjectInput,
    JSONValue,
    encode_json,
)
from ledger._mapper import EventMapper
from ledger.checkpoint import (
    CheckpointState,
    CheckpointToken,
    Fence,
    Lease,
    apply,
    check_token,
    decide_cancel,
    decide_claim,
    decide_complete,
    decide_fail,
    decide_heartbeat,
    decide_release,
    decide_reset,
    decide_retry,
    decide_yield,
    retry_due_at,
)
from ledger.checks import (
    check_aware,
    check_count,
    check_name,
    check_run_id,
    check_seconds,
    check_text,
)
from ledger.errors import (
    CheckpointNotFound,
    ConflictingCommand,
    InvalidInput,
    InvalidTransition,
    LeaseLost,
    LedgerClosed,
    LedgerError,
    PayloadTooLarge,
    RunArchived,
    RunNotFound,
    StoreSchemaMismatch,
    StoreUnavailable,
)
from ledger.events import (
    Cancelled,
    CheckpointEvent,
    Claimed,
    Completed,
    Created,
    Failed,
    LeaseRenewed,
    Released,
    Reset,
    Retried,
    Snapshot,
    Yielded,
)
from ledger.follow import Seen
from ledger.follow import seen as follow_seen
from ledger.settings import LedgerSettings
from ledger.store import (
    CommandAlreadyRecorded,
    LedgerRecorder,
    open_recorder,
    parse_store_url,
)
from ledger.store.failures import permanent_failure, store_error
from ledger.typed import to_json
from ledger.watch import LogWatcher

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from types import TracebackType

    Decide = Callable[[CheckpointState, datetime, str], CheckpointEvent | None]

__all__ = ["Ledger", "Recorded"]

log = logging.getLogger("ledger")

T = TypeVar("T")

# Types are checked by pydantic (in Rust); NaN, infinity and lone surrogates are caught by the
# JSON encoding that measures the size anyway, so a payload is walked once in C, not in Python.
_cursor_adapter: TypeAdapter[Cursor] = TypeAdapter(Cursor)
_object_adapter: TypeAdapter[JSONObject] = TypeAdapter(JSONObject)
_value_adapter: TypeAdapter[JSONValue] = TypeAdapter(JSONValue)


class Recorded:
    """An event that was just appended, with its global position (for in-process listeners)."""

    __slots__ = ("event", "position", "state")

    def __init__(self, event: CheckpointEvent, position: int, state: CheckpointState) -> None:
        self.event, self.position, self.state = event, position, state


_UNION_TAGS = ("int", "str", "bool", "float", "list[", "dict[", "none", "function-")


def _validate(adapter: TypeAdapter[T], value: object, field: str) -> T:
    try:
        return adapter.validate_python(value, strict=True)
    except ValidationError as exc:
        # Report the deepest problem, with pydantic's union-member tags taken out of the path.
        worst = max(exc.errors(), key=lambda e: len(e["loc"]))
        path = "".join(
            f"[{p!r}]" for p in worst["loc"] if isinstance(p, int) or not p.startswith(_UNION_TAGS)
        )
        raise InvalidInput(field + path, worst["msg"].removeprefix("Value error, ")) from exc


_SCALARS = frozenset({int, str, float, bool, type(None)})


def _flat_object(value: object) -> JSONObject | None:
    """A copy of a flat JSON object (str keys, scalar values), or ``None`` for any other.

    The common payload (counters and totals), checked without pydantic: the exact types are
    JSON already, and ``encode_json`` then refuses NaN, infinity and lone surrogates. A copy,
    as pydantic makes one: the caller's dict may change after the command returns.
    """
    if type(value) is not dict:
        return None
    for key, item in value.items():
        if type(key) is not str or type(item) not in _SCALARS:
            return None
    return dict(value)


def _new_command_id() -> str:
    """A fresh command id: 128 random bits in hex, as ``uuid4().hex`` but a tenth of its cost."""
    return os.urandom(16).hex()


def _json_payload(
    adapter: TypeAdapter[T], value: object, field: str, limit: int, setting: str
) -> T:
    """The value, type-checked, finite, valid unicode and within its size limit."""
    flat = _flat_object(value) if adapter is _object_adapter else None
    checked = cast("T", flat) if flat is not None else _validate(adapter, value, field)
    try:
        size = len(encode_json(checked))
    except ValueError as exc:  # NaN or infinity somewhere inside
        raise InvalidInput(
            field, "NaN and infinity are not JSON numbers (use null or a string)"
        ) from exc
    except UnicodeEncodeError as exc:
        raise InvalidInput(field, "strings must be valid unicode (no lone surrogates)") from exc
    except RecursionError as exc:
        raise InvalidInput(field, "nested too deeply") from exc
    if size > limit:
        raise PayloadTooLarge(field, size, limit, setting)
    return checked


def _opened(settings: LedgerSettings) -> tuple[LedgerSettings, LedgerRecorder]:
    """``settings`` and the recorder opened on its store (its failure as a ledger error)."""
    try:
        return settings, open_recorder(settings)
    except PersistenceError as exc:
        url = parse_store_url(settings.store)
        raise store_error(exc, url.display, "open", path=url.database_file) from exc


def _opened_reader(settings: LedgerSettings) -> tuple[LedgerSettings, LedgerRecorder]:
    """The read-only settings and recorder of ``settings.reader_store``, after the writer's.

    A writer that just created the schema on the primary waits, up to ``connect_timeout``,
    for a standby to replay it, rather than failing on a schema it is about to have.
    """
    reader = settings.model_copy(
        update={"store": settings.reader_store, "read_only": True, "reader_store": None}
    )
    deadline = time.monotonic() + settings.connect_timeout
    while True:
        try:
            return _opened(reader)
        except StoreSchemaMismatch as exc:
            if not exc.standby or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


class Ledger:
    """The checkpoint ledger: every create, yield, complete, fail, retry and reset is an event.

    Thread-safe: one ``Ledger`` may be shared by the threads of a process. Many processes may
    open the same store; they coordinate through the store alone.
    """

    def __init__(
        self,
        settings: LedgerSettings,
        recorder: LedgerRecorder,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Wrap an opened recorder; most callers want :meth:`Ledger.open`."""
        self.settings = settings
        self.recorder = recorder
        self._clock = recorder.database_now if clock is None else clock
        self.mapper = EventMapper()
        self._cache: OrderedDict[UUID, CheckpointState] = OrderedDict()
        self._tokens: dict[UUID, CheckpointToken] = {}
        self._cache_lock = threading.Lock()
        self._listeners: list[Callable[[Recorded], None]] = []
        self._watcher: LogWatcher | None = None
        self._watcher_lock = threading.Lock()
        self._runs: OrderedDict[str, _RunView] = OrderedDict()
        self._runs_lock = threading.Lock()
        self._closed = False
        self._reader: Ledger | None = None
        # Transient store failures met so far (each one retried or raised): a log read that
        # met one may have been answered by another server than the one before it (read_log).
        self._store_failures = 0
        self._returned = _Returned()

    # ---------------------------------------------------------------- opening and closing

    @classmethod
    def open(
        cls,
        store: str | None = None,
        *,
        settings: LedgerSettings | None = None,
        clock: Callable[[], datetime] | None = None,
        read_only: bool | None = None,
        reader_store: str | None = None,
    ) -> Ledger:
        """Open a ledger on ``store``, else ``$CKL_STORE``, else ``./checkpoints.db``.

        ``reader_store`` (default ``settings.reader_store``, ``$CKL_READER_STORE``): a second
        store to read the log from, typically a PostgreSQL hot standby of ``store``, opened
        read-only as :attr:`reader`. Streams, awaiters, tails, replay, audit, verify, export and
        the service's reads use it; commands are decided and written on ``store``.

        ``clock`` replaces the ledger's clock (see :meth:`now`), for tests and simulations
        that need time under control: it must return timezone-aware datetimes.

        ``read_only`` (default ``settings.read_only``, ``$CKL_READ_ONLY``): open the store
        read-only (SQLite ``mode=ro``, PostgreSQL read-only sessions). Nothing is created,
        upgraded or written; every write raises :class:`StoreReadOnly` before anything is
        sent. A writer (the default) creates the schema, or upgrades an older one.

        Raises:
            InvalidStoreURL: the URL names no known backend.
            InvalidInput: a ``CKL_*`` variable holds an invalid value.
            StoreUnavailable: the database cannot be reached (read-only: or the file is
                missing).
            StoreSchemaMismatch: (read-only) the store has no ledger schema, or an older
                (run ``ckl migrate``) or newer (upgrade checkpoint-ledger) one.
        """
        if store is not None:
            parse_store_url(store)  # InvalidStoreURL for a non-string or unusable URL
        if reader_store is not None:
            parse_store_url(reader_store)
        if settings is None:
            settings = LedgerSettings.from_env(
                store=store, read_only=read_only, reader_store=reader_store
            )
        else:
            update: dict[str, object] = {} if store is None else {"store": store}
            if read_only is not None:
                update["read_only"] = read_only
            if reader_store is not None:
                update["reader_store"] = reader_store
            settings = settings.model_copy(update=update)
        if settings.reader_store is not None:
            parse_store_url(settings.reader_store)
        opened = cls(*_opened(settings), clock=clock)
        if settings.reader_store is not None:
            try:
                opened._reader = cls(*_opened_reader(settings), clock=clock)
            except BaseException:
                opened.close()
                raise
        return opened

    @property
    def store_display(self) -> str:
        """The store URL with any password masked."""
        return self.recorder.store.display

    @property
    def reader(self) -> Ledger:
        """The ledger to read the log from: the read-only ``reader_store`` one, else this one.

        On a hot standby an event is read once every position below it is final there (the
        visible horizon holds on a standby: ``docs/architecture.md``), a replication lag
        behind the primary. A checkpoint written here appears there after that lag, so
        read-your-writes across the two means waiting (``completion`` does).
        """
        return self if self._reader is None else self._reader

    def resume_position(self, position: int, seen: Sequence[Seen] = ()) -> int:
        """Where a log reader that handled up to ``position`` resumes (read on the reader).

        ``position`` itself while its event is in the store; else the newest position below it
        that is: after a purge, or a failover that lost the last commits
        (:meth:`LedgerRecorder.resume_position` says why that reads nothing twice and misses
        nothing). ``seen``: the last events the reader handled, oldest first
        (``ledger.follow.seen``; ``LogFollower.remember`` keeps them). The newest of them the
        store still holds *as the same event* is where it resumes: a promoted server hands
        the lost transactions' ids out again, so a new event may sit at a position the reader
        saw, and the position alone would take it for one both servers hold. Only when none
        of ``seen`` is left, by position from below the oldest of them.
        """
        check_count(position, "position")
        if self._reader is not None:
            return self._reader.resume_position(position, seen)
        return self._resume(position, seen)

    def _resume(self, position: int, seen: Sequence[Seen]) -> int:
        """:meth:`resume_position` on this ledger's own store."""
        if seen:
            kept = [item for item in seen if item[0] <= position]
            notes = self._store_call(
                "resume", lambda: self.recorder.notifications_at([item[0] for item in kept])
            )
            held = {n.id: follow_seen(n.id, self._to_event(n)) for n in notes}
            for item in reversed(kept):
                if held.get(item[0]) == item:
                    return item[0]
            if kept:
                position = kept[0][0] - 1  # everything it remembers is gone: go on before it
        return self._store_call("resume", lambda: self.recorder.resume_position(position))

    @property
    def store_failures(self) -> int:
        """Transient store failures this ledger met so far (each retried, or raised).

        A log reader that sees it change may be reading another server than before (a
        connection made again through a multi-host URL after a failover): it checks where it
        stands (``LogFollower`` calls ``resume_position``).
        """
        return self._store_failures

    def close(self) -> None:
        """Stop watching the log and release the store's connections. Idempotent."""
        self._closed = True
        if self._watcher is not None:
            self._watcher.close()
        self.recorder.close()
        if self._reader is not None:
            self._reader.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({self.store_display!r})"

    # ---------------------------------------------------------------- listeners

    def add_listener(self, listener: Callable[[Recorded], None]) -> Callable[[], None]:
        """Call ``listener`` in the writing thread after each append; returns its remover.

        This is how same-process readers (projections, streams) wake up at once. A listener
        must be quick and must not raise; one that raises is logged and skipped.
        """
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever the log may have advanced, whoever wrote; returns its remover.

        Appends through this ledger wake at once; other processes' appends wake through
        PostgreSQL LISTEN/NOTIFY, or within ``poll_interval`` seconds. See ``ledger.watch``.
        """
        with self._watcher_lock:
            if self._watcher is None:
                self._watcher = LogWatcher(self.recorder, self.settings.poll_interval)
        return self._watcher.subscribe(callback)

    # ---------------------------------------------------------------- commands

    def create_checkpoint(
        self,
        run_id: str,
        batch_index: int,
        *,
        total_batches: int | None = None,
        metadata: JSONObjectInput | None = None,
        command_id: str | None = None,
    ) -> CheckpointToken:
        """Create the checkpoint of ``(run_id, batch_index)`` and return its token.

        Idempotent: if it exists, its token is returned and nothing is written (the first
        create's ``total_batches`` and ``metadata`` stay).

        Raises:
            InvalidInput: bad run_id, batch_index, total_batches or metadata.
            PayloadTooLarge: metadata over ``max_metadata_bytes``.
        """
        check_run_id(run_id)
        check_count(batch_index, "batch_index")
        if total_batches is not None:
            check_count(total_batches, "total_batches", minimum=1)
            if batch_index >= total_batches:
                raise InvalidInput(
                    "batch_index", f"{batch_index} is not below total_batches {total_batches}"
                )
        meta = _json_payload(
            _object_adapter,
            {} if metadata is None else metadata,
            "metadata",
            self.settings.max_metadata_bytes,
            "CKL_MAX_METADATA_BYTES",
        )
        cid = _new_command_id() if command_id is None else check_name(command_id, "command_id")
        token = CheckpointToken.for_batch(run_id, batch_index)
        if self._get_cached(token.checkpoint_id) is not None:
            return token
        event = Created(
            originator_id=token.checkpoint_id,
            originator_version=1,
            timestamp=self.now(),
            command_id=cid,
            run_id=run_id,
            batch_index=batch_index,
            total_batches=total_batches,
            metadata=meta,
        )
        with contextlib.suppress(IntegrityError):  # created before, here or elsewhere
            self._append(None, event)
        return token

    def checkpoint_yield(
        self,
        token: CheckpointToken,
        cursor: CursorInput | BaseModel,
        items_processed: int,
        accumulated_results: JSONObjectInput | BaseModel | None = None,
        *,
        attempt: int | None = None,
        lease: Lease | None = None,
        command_id: str | None = None,
    ) -> CheckpointState:
        """Record progress on an open checkpoint; the yield is durable when this returns.

        Yields never change the checkpoint's status. Repeating the latest yield unchanged is
        a no-op, and so is re-sending a command whose ``command_id`` is already stored.
        ``items_processed`` never decreases within one attempt. Under a ``lease`` the yield
        renews it, in the same append.

        Args:
            token: the checkpoint.
            cursor: where to resume (an int offset, a str key, a JSON object/array, or a
                pydantic model or dataclass, stored as its JSON).
            items_processed: items done so far in this attempt.
            accumulated_results: what to carry forward to a resumed attempt.
            attempt: the attempt the write is issued under (fencing); ``None``: the current.
            lease: the lease from ``claim_checkpoint``/``claim_next``; implies its attempt.
            command_id: the command's id (generated when ``None``): re-sending the same id
                after a lost acknowledgement returns the recorded outcome.

        Raises:
            CheckpointNotFound: no such checkpoint.
            InvalidInput: bad cursor, items_processed, accumulated_results, attempt, lease or
                command_id.
            ProgressWentBackwards: items_processed below what this attempt recorded.
            PayloadTooLarge: cursor or accumulated_results over their limits.
            StaleAttempt: ``attempt`` was superseded (``LeaseLost``: the lease was).
            CheckpointClaimed: another owner holds a live lease and no lease was given.
            CheckpointCancelled: an operator cancelled the checkpoint.
            InvalidTransition: the checkpoint is completed, or failed and not retried.
        """
        check_token(token)
        if not isinstance(cursor, int | str | dict | list):
            cursor = to_json(cursor)  # a pydantic model or a dataclass, as JSON types
        if isinstance(cursor, bool) or not isinstance(cursor, int | str | dict | list):
            raise InvalidInput(
                "cursor",
                f"expected an int, a str or a JSON object/array, got {type(cursor).__name__}",
            )
        if type(cursor) is int:
            cur: Cursor = cursor  # the common case: nothing inside to check
        else:
            cur = _json_payload(
                _cursor_adapter,
                cursor,
                "cursor",
                self.settings.max_cursor_bytes,
                "CKL_MAX_CURSOR_BYTES",
            )
        check_count(items_processed, "items_processed")
        results = None
        if accumulated_results is not None:
            if not isinstance(accumulated_results, dict):
                accumulated_results = to_json(accumulated_results)
            results = _json_payload(
                _object_adapter,
                accumulated_results,
                "accumulated_results",
                self.settings.max_accumulated_results_bytes,
                "CKL_MAX_ACCUMULATED_RESULTS_BYTES",
            )
        fence = _fence(token, attempt, lease)
        return self._command(
            token,
            lambda s, now, cid: decide_yield(
                s, now, cur, items_processed, results, command_id=cid, fence=fence
            ),
            command_id,
            "checkpoint_yield",
        )

    def complete_checkpoint(
        self,
        token: CheckpointToken,
        result: object = None,
        *,
        attempt: int | None = None,
        lease: Lease | None = None,
        command_id: str | None = None,
    ) -> CheckpointState:
        """Mark the checkpoint completed with its ``result``: the durable confirmation.

        The same result again is a no-op. A completion under a lease ends the lease.
        ``attempt``, ``lease`` and ``command_id`` as for :meth:`checkpoint_yield`.

        Raises:
            ConflictingCommand: already completed with a different result.
            InvalidTransition: the checkpoint failed (retry or reset it first).
            StaleAttempt, LeaseLost, CheckpointClaimed, CheckpointCancelled: as for
                :meth:`checkpoint_yield`.
            PayloadTooLarge: result over ``max_result_bytes``.
        """
        check_token(token)
        value = _json_payload(
            _value_adapter,
            to_json(result),
            "result",
            self.settings.max_result_bytes,
            "CKL_MAX_RESULT_BYTES",
        )
        fence = _fence(token, attempt, lease)
        return self._command(
            token,
            lambda s, now, cid: decide_complete(s, now, value, command_id=cid, fence=fence),
            command_id,
            "complete_checkpoint",
        )

    def fail_checkpoint(
        self,
        token: CheckpointToken,
        error: BaseException | str,
        transient: bool = False,
        *,
        error_type: str | None = None,
        attempt: int | None = None,
        lease: Lease | None = None,
        command_id: str | None = None,
        traceback_text: str | None = None,
        host: str | None = None,
        pid: int | None = None,
    ) -> CheckpointState:
        """Mark the current attempt failed; a transient failure may be retried.

        ``error`` is an exception (its class name becomes the error type, its traceback is
        kept) or a message (error type ``"Error"`` unless ``error_type`` is given). Messages
        and tracebacks longer than ``max_error_message_chars`` are truncated, never refused.
        The host and process id are recorded with the failure: this process's, unless
        ``host`` and ``pid`` name the worker's (a worker that reports through ``ckl serve``),
        as ``traceback_text`` gives a traceback for a message. The same failure again is a
        no-op. A failure under a lease ends the lease. ``attempt``, ``lease`` and
        ``command_id`` as for :meth:`checkpoint_yield`.

        Raises:
            ConflictingCommand: already failed with a different error.
            InvalidTransition: the checkpoint is completed.
            StaleAttempt, LeaseLost, CheckpointClaimed, CheckpointCancelled: as for
                :meth:`checkpoint_yield`.
        """
        check_token(token)
        trace: str | None = None
        if isinstance(error, BaseException):
            kind = error_type or type(error).__qualname__
            message = str(error) or repr(error)
            if error.__traceback__ is not None:
                trace = self._truncate(
                    _scrub("".join(traceback.format_exception(error))), keep_end=True
                )
        elif isinstance(error, str):
            kind, message = error_type or "Error", error
        else:
            raise InvalidInput(
                "error", f"expected an exception or a str, got {type(error).__name__}"
            )
        if not isinstance(transient, bool):
            raise InvalidInput("transient", f"expected a bool, got {type(transient).__name__}")
        if not isinstance(kind, str) or not 1 <= len(kind) <= 200:  # noqa: PLR2004
            raise InvalidInput("error_type", "must be a str of 1 to 200 characters")
        if traceback_text is not None:
            check_text(traceback_text, "traceback_text")
            trace = self._truncate(_scrub(traceback_text), keep_end=True)
        if host is not None:
            check_text(host, "host")
            if not 1 <= len(host) <= 255:  # noqa: PLR2004
                raise InvalidInput("host", "must be a str of 1 to 255 characters")
        if pid is not None:
            check_count(pid, "pid")
        message = self._truncate(_scrub(message))
        kind = _scrub(kind)
        fence = _fence(token, attempt, lease)
        context = {
            "traceback": trace,
            "host": _HOST if host is None else _scrub(host),
            "pid": os.getpid() if pid is None else pid,
        }
        return self._command(
            token,
            lambda s, now, cid: decide_fail(
                s, now, kind, message, transient, context, command_id=cid, fence=fence
            ),
            command_id,
            "fail_checkpoint",
        )

    def retry_checkpoint(
        self, token: CheckpointToken, *, command_id: str | None = None
    ) -> CheckpointState:
        """Start the next attempt after a transient failure; it resumes from the last cursor.

        A retry already applied is a no-op. The retried attempt's writes are fenced: a worker
        still writing under the failed attempt gets ``StaleAttempt``.

        Raises:
            InvalidTransition: not failed, or failed permanently (reset it instead).
        """
        check_token(token)
        return self._command(
            token,
            lambda s, now, cid: decide_retry(s, now, command_id=cid),
            command_id,
            "retry_checkpoint",
        )

    def reset_checkpoint(
        self, token: CheckpointToken, reason: str, *, command_id: str | None = None
    ) -> CheckpointState:
        """Operator action: clear cursor, progress and results; a fresh attempt starts.

        Allowed in any state. The same reset repeated with nothing in between is a no-op. The
        worker of the superseded attempt is fenced: its next write gets ``StaleAttempt`` (or
        ``LeaseLost`` under a lease), so it cannot record pre-reset results.

        Raises:
            InvalidInput: the reason is empty or not a str.
        """
        check_token(token)
        text = _reason(reason, "reset")
        return self._command(
            token,
            lambda s, now, cid: decide_reset(s, now, text, command_id=cid),
            command_id,
            "reset_checkpoint",
        )

    def cancel_checkpoint(
        self, token: CheckpointToken, reason: str, *, command_id: str | None = None
    ) -> CheckpointState:
        """Operator action: stop the checkpoint for good (a reset can still reopen it).

        Allowed while open or failed. The worker learns it at its next write, which raises
        ``CheckpointCancelled``; a cancelled checkpoint counts as settled. The same cancel
        again is a no-op.

        Raises:
            InvalidInput: the reason is empty or not a str.
            InvalidTransition: the checkpoint is completed.
            ConflictingCommand: already cancelled for another reason.
        """
        check_token(token)
        text = _reason(reason, "cancelled")
        return self._command(
            token,
            lambda s, now, cid: decide_cancel(s, now, text, command_id=cid),
            command_id,
            "cancel_checkpoint",
        )

    # ---------------------------------------------------------------- leases

    def claim_checkpoint(
        self, token: CheckpointToken, owner: str, ttl: float, *, command_id: str | None = None
    ) -> Lease:
        """Take the checkpoint's lease for ``ttl`` seconds, on the ledger's clock.

        An open, unowned checkpoint is claimed and its attempt goes on. A transiently failed
        one is retried by the claim (next attempt, from the last cursor). One whose lease
        expired is taken over: the takeover is an event naming the previous owner, a new
        attempt resumes from the last cursor, and the previous owner's writes are refused
        from then on (``LeaseLost``). Re-claiming one's own lease renews it.

        Args:
            token: the checkpoint.
            owner: who claims (1 to 200 printable characters; unique per worker process, e.g.
                ``f"{socket.gethostname()}:{os.getpid()}"``).
            ttl: seconds the lease lasts unless renewed by a write or a heartbeat.
            command_id: the command's id (see :meth:`checkpoint_yield`).

        Raises:
            CheckpointClaimed: another owner's lease is live (its owner and expiry attached).
            CheckpointCancelled: the checkpoint was cancelled.
            InvalidTransition: completed, or failed permanently.
            InvalidInput: bad owner or ttl.
        """
        check_token(token)
        name = check_name(owner, "owner")
        seconds = _ttl(ttl)
        lease_id = uuid4().hex
        state = self._command(
            token,
            lambda s, now, cid: decide_claim(s, now, name, seconds, lease_id, command_id=cid),
            command_id,
            "claim_checkpoint",
        )
        if state.owner != name or state.lease_id is None:
            # The claim was applied before (a re-sent command id), and lost since.
            raise LeaseLost(str(token), name, state.owner, state.attempt, state.attempt)
        return Lease.of(state)

    def heartbeat(self, lease: Lease, *, command_id: str | None = None) -> Lease:
        """Renew ``lease`` without recording progress; returns it with its new expiry.

        Raises:
            LeaseLost: the lease was taken over, released, reset, retried or ended.
            CheckpointCancelled: the checkpoint was cancelled.
        """
        held = _check_lease(lease)
        state = self._command(
            held.token,
            lambda s, now, cid: decide_heartbeat(s, now, held, command_id=cid),
            command_id,
            "heartbeat",
        )
        if state.lease_id != held.lease_id:
            # The heartbeat was applied before (a re-sent command id), and the lease lost since.
            raise LeaseLost(str(held.token), held.owner, state.owner, held.attempt, state.attempt)
        return Lease.of(state)

    def release(self, lease: Lease, *, command_id: str | None = None) -> CheckpointState:
        """Give ``lease`` up: the checkpoint stays as it is and another worker may claim it.

        Releasing twice, or after a complete or fail under the lease, is a no-op.

        Raises:
            LeaseLost: the lease had been taken over, reset or retried.
            CheckpointCancelled: the checkpoint was cancelled.
        """
        held = _check_lease(lease)
        return self._command(
            held.token,
            lambda s, now, cid: decide_release(s, now, held, command_id=cid),
            command_id,
            "release",
        )

    def claim_next(
        self,
        run_id: str,
        owner: str,
        ttl: float,
        *,
        retry_delay: float = 1.0,
        max_retry_delay: float = 60.0,
        command_id: str | None = None,
    ) -> Lease | None:
        """Claim the run's next batch that needs a worker, or return ``None`` if none does now.

        In batch order, the first checkpoint that is open and unclaimed, open with an expired
        lease (a takeover), or transiently failed and past its back-off (``retry_delay``
        doubling with each attempt in a row that made no progress, up to ``max_retry_delay``,
        with jitter). ``None`` also while the remaining batches are leased to others, back
        off, or settled: check :func:`run_is_settled` to tell which. Reads the run's states
        through :meth:`run_states`: after the first call, only what the log gained since.

        Raises:
            RunNotFound: the run has no checkpoints (create them first).
            InvalidInput: bad run id, owner, ttl or delays.
        """
        check_run_id(run_id)
        name = check_name(owner, "owner")
        seconds = _ttl(ttl)
        check_seconds(retry_delay, "retry_delay")
        check_seconds(max_retry_delay, "max_retry_delay")
        cid = None if command_id is None else check_name(command_id, "command_id")
        states = self.run_states(run_id)
        if not states:
            raise RunNotFound(run_id)
        if cid is not None:
            for state in states.values():
                if cid in state.recent_commands and state.owner == name:
                    return Lease.of(state)  # this claim was applied before
        now = self.now()
        for index in sorted(states):
            state = states[index]
            if not _claimable(state, now, retry_delay, max_retry_delay):
                continue
            try:
                return self.claim_checkpoint(state.token, name, seconds, command_id=cid)
            except InvalidTransition:
                continue  # claimed, settled or cancelled meanwhile: try the next one
        return None

    def run_states(self, run_id: str) -> dict[int, CheckpointState]:
        """The current state of every checkpoint of ``run_id``, by batch index, from the store.

        The first call for a run reads each of its checkpoints; later ones read only the log
        after the position the last one reached (every run's events since then, in pages), so
        a worker asking before each claim pays for what changed, not for the run's size. The
        last ``RUN_VIEWS_KEPT`` runs asked about are kept.
        """
        check_run_id(run_id)
        with self._runs_lock:
            view = self._runs.get(run_id)
            if view is not None:
                self._runs.move_to_end(run_id)
        if view is None:
            view = self._store_call("read run", lambda: self._read_run(run_id))
            with self._runs_lock:
                self._runs[run_id] = view
                while len(self._runs) > RUN_VIEWS_KEPT:
                    self._runs.popitem(last=False)
        else:
            with view.lock:
                self._store_call("read run", lambda: self._advance_run(view))
        with view.lock:
            return {state.token.batch_index: state for state in view.states.values()}

    def _read_run(self, run_id: str) -> _RunView:
        # The readable head first: everything at or below it is in the states read next, and
        # the log after it is what the next call reads (on PostgreSQL no position below the
        # head can still appear later: the readable head is below every transaction in flight).
        head = self.recorder.log_head().readable or 0
        with self.recorder.transaction(readonly=True) as tx:
            ids = tx.run_checkpoint_ids(run_id)
        view = _RunView(run_id, head)
        for oid in ids:
            cached = self._get_cached(oid)
            state = self._refresh(cached) if cached is not None else self._load_from_store(oid)
            if state is None:
                continue  # purged meanwhile
            self._put_cached(state)
            view.states[oid] = state
        return view

    def _advance_run(self, view: _RunView) -> None:
        """Apply the log after ``view.position`` to the run's states (held under ``view.lock``)."""
        while True:
            notes = self.recorder.select_notifications(
                view.position, RUN_VIEW_PAGE, inclusive_of_start=False
            )
            for note in notes:
                raw = note.originator_id
                oid = raw if isinstance(raw, UUID) else UUID(str(raw))
                state = view.states.get(oid)
                if state is None:
                    if note.topic != Created.topic:
                        continue  # another run's
                    event = self._to_event(note)
                    if not (isinstance(event, Created) and event.run_id == view.run_id):
                        continue
                    state = apply(None, event)
                elif note.originator_version == state.version + 1:
                    state = apply(state, self._to_event(note))
                elif note.originator_version > state.version:
                    # A version this view never saw (read before it was visible): reload.
                    state = self._refresh(state)
                else:
                    continue  # already in the state read at the start
                view.states[oid] = state
                self._put_cached(state)
            if notes:
                view.position = notes[-1].id
            if len(notes) < RUN_VIEW_PAGE:
                return

    def now(self) -> datetime:
        """The ledger's clock: the database server's on PostgreSQL, this machine's on SQLite.

        Every event time and lease expiry comes from it, so workers whose clocks are skewed
        agree on who holds a lease and on the order of events.
        """
        return self._clock()

    # ---------------------------------------------------------------- queries

    def find_checkpoint(self, run_id: str, batch_index: int) -> CheckpointToken | None:
        """The token of ``(run_id, batch_index)`` if that checkpoint exists (a key lookup)."""
        check_run_id(run_id)
        check_count(batch_index, "batch_index")
        token = CheckpointToken.for_batch(run_id, batch_index)
        if self._get_cached(token.checkpoint_id) is not None:
            return token
        rows = self._store_call(
            "find_checkpoint",
            lambda: self.recorder.select_events(token.checkpoint_id, limit=1),
        )
        return token if rows else None

    def get_checkpoint(
        self, token: CheckpointToken, as_of: int | datetime | None = None
    ) -> CheckpointState:
        """The checkpoint's current state, or its state as of a version or a moment.

        Raises:
            CheckpointNotFound: no such checkpoint, or it did not exist yet at ``as_of``.
            InvalidInput: ``as_of`` is not a positive int or a timezone-aware datetime.
        """
        check_token(token)
        if as_of is None:
            return self._refresh(self._load(token))
        if isinstance(as_of, datetime):
            check_aware(as_of, "as_of")
            state: CheckpointState | None = None
            for event in self.checkpoint_events(token):
                if event.timestamp > as_of:
                    break
                state = apply(state, event)
            if state is None:
                raise CheckpointNotFound(f"{token} as of {as_of.isoformat()}")
            return state
        version = check_count(as_of, "as_of", minimum=1)
        state = self._load_from_store(token.checkpoint_id, lte=version)
        if state is None:
            raise CheckpointNotFound(str(token))
        return state

    def checkpoint_events(self, token: CheckpointToken) -> list[CheckpointEvent]:
        """The checkpoint's immutable events, oldest first.

        Raises:
            CheckpointNotFound: no such checkpoint.
        """
        check_token(token)
        rows = self._store_call(
            "checkpoint_events", lambda: self.recorder.select_events(token.checkpoint_id)
        )
        if not rows:
            raise CheckpointNotFound(str(token))
        return [self._to_event(row) for row in rows]

    def read_log(self, after: int = 0, limit: int = 1000) -> list[tuple[int, CheckpointEvent]]:
        """Events of all checkpoints in global order, after position ``after``.

        Raises:
            InvalidInput: ``after`` is not an int ≥ 0, or ``limit`` not an int ≥ 1.
        """
        check_count(after, "after")
        check_count(limit, "limit", minimum=1)
        failures = self._store_failures
        notes: list[Notification] = list(
            self._store_call(
                "read_log",
                lambda: self.recorder.select_notifications(after, limit, inclusive_of_start=False),
            )
        )
        if after and self._store_failures != failures:
            self._check_still_there(after)
        events = [(n.id, self._to_event(n)) for n in notes]
        if events:
            self._returned.remember(events[-1])
        return events

    def _check_still_there(self, after: int) -> None:
        """After a read that had to reconnect: the event at ``after`` must still be stored.

        A connection lost and made again through a multi-host URL may reach another server:
        a promoted standby that lost the last commits. Its new events may then take positions
        below ``after`` (the lost transactions' ids are used again): reading on after
        ``after`` would skip them. The reader is told instead (``StoreUnavailable``), as after
        any outage; a follower then resumes from ``resume_position`` (``LogFollower``).

        The event itself is checked when this ledger returned it (as the last of a read:
        where a follower's next read starts), since a new event may take its very position.

        Raises:
            StoreUnavailable: the event at ``after`` is not in the store.
        """
        last = self._returned.get(after)
        found = self._resume(after, () if last is None else [last])
        if found != after:
            raise StoreUnavailable(
                self.store_display,
                "read_log",
                f"the event at position {after} is no longer in the store (lost in a failover, "
                f"or purged): read on after position {found}, the newest one it still holds",
            )

    def iter_log(
        self, after: int = 0, page_size: int = 1000
    ) -> Iterator[tuple[int, CheckpointEvent]]:
        """Every event after position ``after`` in global order, read ``page_size`` at a time.

        Keyset by position (each page starts past the last one's last event), so memory stays
        flat and an event committed while reading is read once, in its place.

        Raises:
            InvalidInput: ``after`` is not an int ≥ 0, or ``page_size`` not an int ≥ 1 (raised
                by the call, before anything is read).
        """
        check_count(after, "after")
        check_count(page_size, "page_size", minimum=1)

        def pages(position: int) -> Iterator[tuple[int, CheckpointEvent]]:
            while True:
                page = self.read_log(position, page_size)
                yield from page
                if len(page) < page_size:
                    return
                position = page[-1][0]

        return pages(after)

    def iter_checkpoint_events(
        self, token: CheckpointToken, after_version: int = 0, page_size: int = 1000
    ) -> Iterator[CheckpointEvent]:
        """The checkpoint's events after ``after_version``, oldest first, a page at a time.

        Raises:
            InvalidInput: a bad token, version or page size (raised by the call).
            CheckpointNotFound: no such checkpoint (raised by the call).
        """
        check_token(token)
        check_count(after_version, "after_version")
        check_count(page_size, "page_size", minimum=1)
        if self.find_checkpoint(token.run_id, token.batch_index) is None:
            raise CheckpointNotFound(str(token))
        oid = token.checkpoint_id

        def pages(version: int) -> Iterator[CheckpointEvent]:
            while True:
                rows = self._store_call(
                    "checkpoint_events",
                    functools.partial(
                        self.recorder.select_events, oid, gt=version, limit=page_size
                    ),
                )
                for row in rows:
                    yield self._to_event(row)
                if len(rows) < page_size:
                    return
                version = rows[-1].originator_version

        return pages(after_version)

    def token_for(self, checkpoint_id: UUID) -> CheckpointToken | None:
        """The token of a checkpoint id (read from its ``Created`` event), or ``None``.

        Raises:
            InvalidInput: ``checkpoint_id`` is not a UUID.
        """
        if not isinstance(checkpoint_id, UUID):
            raise InvalidInput(
                "checkpoint_id", f"expected a uuid.UUID, got {type(checkpoint_id).__name__}"
            )
        cached = self._get_cached(checkpoint_id)
        if cached is not None:
            return cached.token
        with self._cache_lock:
            token = self._tokens.get(checkpoint_id)
        if token is not None:
            return token
        rows = self._store_call(
            "token_for", lambda: self.recorder.select_events(checkpoint_id, limit=1)
        )
        if not rows:
            return None
        created = self._to_event(rows[0])
        if not isinstance(created, Created):
            raise StoreUnavailable(
                self.store_display,
                "read",
                f"checkpoint {checkpoint_id} does not start with Created",
            )
        token = CheckpointToken(
            run_id=created.run_id, batch_index=created.batch_index, checkpoint_id=checkpoint_id
        )
        with self._cache_lock:
            if len(self._tokens) >= 65536:  # noqa: PLR2004  (tokens are small; bound them anyway)
                self._tokens.clear()
            self._tokens[checkpoint_id] = token
        return token

    def count_events(self, token: CheckpointToken | None = None) -> int:
        """How many events the store holds, for one checkpoint or in all."""
        oid = None if token is None else check_token(token).checkpoint_id
        return self._store_call("count_events", lambda: self.recorder.count_events(oid))

    def forget_checkpoints(self, checkpoint_ids: Iterable[UUID]) -> None:
        """Drop checkpoints from this ledger's cache (after ``ledger.archive`` purged them)."""
        with self._cache_lock:
            for oid in checkpoint_ids:
                self._cache.pop(oid, None)
                self._tokens.pop(oid, None)

    # ---------------------------------------------------------------- internals

    def _truncate(self, message: str, *, keep_end: bool = False) -> str:
        limit = self.settings.max_error_message_chars
        if len(message) <= limit:
            return message
        marker = f"… [truncated {len(message) - limit} chars]"
        room = max(0, limit - len(marker))
        if keep_end:  # a traceback's last frames are where it failed
            return marker + "\n" + message[len(message) - room + 1 :]
        return message[:room] + marker

    def _command(  # noqa: C901  (the write path's one loop, kept whole to be read as one)
        self, token: CheckpointToken, decide: Decide, command_id: str | None, name: str
    ) -> CheckpointState:
        """Decide and append one command, exactly once whatever is lost on the wire.

        ``command_id`` given by the caller may have been sent before; a generated one may be
        re-sent by the append's own retry after a lost acknowledgement. Either way the
        command is found (in the state's recent ids, else by the store's unique index) and
        its outcome returned instead of deciding it again. An id found with an event of
        another kind than ``name`` appends was given to another command: ``ConflictingCommand``.
        """
        resent = command_id is not None
        cid = _new_command_id() if command_id is None else check_name(command_id, "command_id")
        oid = token.checkpoint_id
        state = self._get_cached(oid)
        fresh = state is None
        if state is None:
            state = self._load(token)
        conflicts = 0
        for _ in range(self.settings.conflict_retries + 1):
            # A freshly generated id cannot be stored yet: look only once it may have been sent.
            topic = state.command_topic(cid) if resent else None
            if topic is not None:  # applied before: nothing written, the state as it is now
                if fresh:
                    return _same_command(state, cid, topic, name)
                # From the cache: look again on the store's state, which may have lost it.
                state, fresh = self._refresh(state), True
                continue
            # Never write a timestamp before the checkpoint's last one, whatever the clocks say.
            now = max(self.now(), state.updated_at)
            try:
                event = decide(state, now, cid)
            except LedgerError:
                if not fresh:
                    state, fresh = self._refresh(state), True
                    continue
                found = self._command_stored(oid, cid) if resent else None
                if found is not None:
                    return _same_command(self._refresh(state), cid, found, name)
                raise
            if event is None:
                if fresh:
                    return state
                state, fresh = self._refresh(state), True
                continue
            try:
                return self._append(state, event)
            except CommandAlreadyRecorded:
                # Stored long ago, past the recent ids: the index refused it a second time.
                found = self._command_stored(oid, cid) or ""
                return _same_command(self._refresh(state), cid, found, name)
            except IntegrityError:
                # Another writer appended this version first, or our own append landed and
                # its acknowledgement was lost (the retry then meets its own row): reload and
                # look again, after a short random pause that grows with each loss, so that a
                # writer needing two round trips (reload, append) is not starved.
                resent = True
                conflicts += 1
                time.sleep(random.uniform(0, min(0.05, 0.0005 * 2**conflicts)))  # noqa: S311
                state, fresh = self._refresh(state), True
            except StoreUnavailable as exc:
                raise StoreUnavailable(
                    exc.store, exc.operation, exc.detail, command_id=cid
                ) from exc.__cause__
        raise StoreUnavailable(
            self.store_display,
            "append",
            f"checkpoint {token} kept changing under {self.settings.conflict_retries} retries "
            "(too many writers on one checkpoint)",
            command_id=cid,
        )

    def _command_stored(self, oid: UUID, command_id: str) -> str | None:
        """The topic of the event the store holds for this command, if any (an index lookup)."""
        found = self._store_call(
            "find command", lambda: self.recorder.find_command(oid, command_id)
        )
        return None if found is None else found[1]

    def _append(self, state: CheckpointState | None, event: CheckpointEvent) -> CheckpointState:
        stored = self.mapper.to_stored_event(event)
        # The store keeps the run as a column (its archive guard reads it; states are opaque),
        # and the command id, whose unique index makes a command's second append impossible.
        run_id = (
            event.run_id if isinstance(event, Created) else state.token.run_id if state else None
        )
        ids = self._store_call(
            "append",
            lambda: self.recorder.insert_events(
                [stored], run_id=run_id, command_ids=[event.command_id]
            ),
        )
        new_state = apply(state, event)
        self._put_cached(new_state)
        if new_state.version % self.settings.snapshot_interval == 0:
            self._snapshot(new_state)
        if self._watcher is not None:
            self._watcher.notify()
        if self._listeners:
            recorded = Recorded(event, ids[0] if ids else 0, new_state)
            for listener in list(self._listeners):
                try:
                    listener(recorded)
                except Exception:
                    log.exception("ledger listener %r failed; it was skipped", listener)
        return new_state

    def _snapshot(self, state: CheckpointState) -> None:
        snap = Snapshot(
            originator_id=state.token.checkpoint_id,
            originator_version=state.version,
            timestamp=state.updated_at,
            state=state.model_dump(mode="json"),
        )
        try:
            self.recorder.insert_snapshot(self.mapper.to_stored_event(snap))
        except PersistenceError:
            # The event is committed; a missing snapshot only makes a later load longer.
            log.warning("snapshot of %s v%d not written", state.token, state.version, exc_info=True)

    def _load(self, token: CheckpointToken) -> CheckpointState:
        state = self._get_cached(token.checkpoint_id)
        if state is not None:
            return state
        state = self._load_from_store(token.checkpoint_id)
        if state is None:
            raise CheckpointNotFound(str(token))
        self._put_cached(state)
        return state

    def _load_from_store(self, oid: UUID, lte: int | None = None) -> CheckpointState | None:
        snap_row = self._store_call("load", lambda: self.recorder.select_snapshot(oid, lte=lte))
        state: CheckpointState | None = None
        after = None
        if snap_row is not None:
            snap = self._to_event(snap_row)
            if isinstance(snap, Snapshot):
                state = CheckpointState.model_validate(snap.state)
                after = state.version
        rows = self._store_call("load", lambda: self.recorder.select_events(oid, gt=after, lte=lte))
        for row in rows:
            state = apply(state, self._to_event(row))
        return state

    def _refresh(self, state: CheckpointState) -> CheckpointState:
        """Bring a (possibly stale) state up to date with the store, or back to it.

        Read from the state's own version: if the store no longer holds that event as this
        process saw it, the store lost acknowledged commits (:meth:`_recover_lost`).
        """
        oid = state.token.checkpoint_id
        rows = self._store_call(
            "load", lambda: self.recorder.select_events(oid, gt=state.version - 1)
        )
        if not rows or rows[0].originator_version != state.version:
            return self._recover_lost(state)
        if self._diverged(state, rows[0]):
            return self._recover_lost(state)
        for row in rows[1:]:
            state = apply(state, self._to_event(row))
        if len(rows) > 1:
            self._put_cached(state)
        return state

    def _run_archived(self, state: CheckpointState) -> bool:
        with self.recorder.transaction(readonly=True) as tx:
            return tx.run_is_archived(state.token.run_id)

    def _diverged(self, state: CheckpointState, row: StoredEvent) -> bool:
        """The store's event at ``state.version`` is another command's than the one seen here."""
        if not state.recent_commands:
            return False
        command_id = self._to_event(row).command_id
        return command_id is not None and command_id != state.recent_commands[-1]

    def _recover_lost(self, state: CheckpointState) -> CheckpointState:
        """The store is behind what this process saw of a checkpoint: reload it, and say so.

        Acknowledged events vanish from a store when it fails over to an asynchronous standby
        that had not received them yet (or is restored from a backup). The cached state, and
        the head remembered for chaining, are then ahead of the store, and every append
        would meet the version-gap guard: both are dropped and the checkpoint reloaded. The
        work done after the reloaded cursor must be done again; commands repeated with their
        ids apply once (the lost ones are not in the store's command index any more).

        Raises:
            CheckpointNotFound: the store lost even the checkpoint's creation.
        """
        oid = state.token.checkpoint_id
        self.recorder.forget_head(oid)
        with self._cache_lock:
            self._cache.pop(oid, None)
        with self._runs_lock:
            self._runs.clear()
        stored = self._load_from_store(oid)
        if stored is None and self._store_call("load", lambda: self._run_archived(state)):
            raise RunArchived(state.token.run_id)  # purged by `ckl archive`: nothing was lost
        if stored is None:
            log.warning(
                "checkpoint %s: the store %s no longer holds it (this process saw version %d): "
                "its acknowledged events were lost, e.g. in a failover to a standby that had "
                "not received them",
                state.token,
                self.store_display,
                state.version,
            )
            raise CheckpointNotFound(str(state.token))
        log.warning(
            "checkpoint %s: this process saw version %d (%s, cursor %r, %d items), but the store "
            "%s holds version %d (%s, cursor %r, %d items): the events after version %d were "
            "acknowledged and then lost, e.g. in a failover to a standby that had not received "
            "them. Reloaded from the store: the work after its cursor must be done again.",
            state.token,
            state.version,
            state.status,
            state.cursor,
            state.items_processed,
            self.store_display,
            stored.version,
            stored.status,
            stored.cursor,
            stored.items_processed,
            stored.version,
        )
        self._put_cached(stored)
        return stored

    def _get_cached(self, oid: UUID) -> CheckpointState | None:
        if not self.settings.cache_size:
            return None
        with self._cache_lock:
            state = self._cache.get(oid)
            if state is not None:
                self._cache.move_to_end(oid)
            return state

    def _put_cached(self, state: CheckpointState) -> None:
        if not self.settings.cache_size:
            return
        oid = state.token.checkpoint_id
        with self._cache_lock:
            current = self._cache.get(oid)
            if current is not None and current.version > state.version:
                return
            self._cache[oid] = state
            self._cache.move_to_end(oid)
            while len(self._cache) > self.settings.cache_size:
                self._cache.popitem(last=False)

    def _to_event(self, row: StoredEvent) -> CheckpointEvent:
        try:
            return self.mapper.to_event(row)
        except MapperDeserialisationError as exc:
            raise StoreUnavailable(self.store_display, "read", str(exc)) from exc

    def _store_call(self, operation: str, call: Callable[[], T]) -> T:
        """``call()``, retried while its failure may pass; a permanent one is raised at once.

        Raises:
            StoreFailure: a failure no retry mends (``ledger.store.failures``), at once.
            LedgerClosed: this ledger was closed.
            StoreUnavailable: still failing after ``store_retries`` retries.
        """
        if self._closed:
            raise LedgerClosed(self.store_display, operation, "close() was called")
        delay = self.settings.store_retry_delay
        path = self.recorder.store.database_file
        for attempt in range(self.settings.store_retries + 1):
            try:
                return call()
            except IntegrityError:
                raise  # a version or command taken: the caller's to handle
            except (OperationalError, InterfaceError, PersistenceError) as exc:
                failure = permanent_failure(exc, self.store_display, operation, path=path)
                if failure is not None:
                    raise failure from exc
                if not isinstance(exc, (OperationalError, InterfaceError)):
                    raise  # a programming or data error: no retry mends it
                self._store_failures += 1
                if self._closed:
                    raise LedgerClosed(self.store_display, operation, str(exc)) from exc
                if attempt == self.settings.store_retries:
                    raise StoreUnavailable(self.store_display, operation, str(exc)) from exc
                log.warning(
                    "store %s failed during %s (%s); retrying", self.store_display, operation, exc
                )
                time.sleep(delay)
                delay *= 2
        raise AssertionError  # pragma: no cover  (the loop always returns or raises)


class _Returned:
    """The last events ``read_log`` returned last in a read: where followers read on from."""

    KEPT = 1024

    def __init__(self) -> None:
        self._items: OrderedDict[int, Seen] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, item: tuple[int, CheckpointEvent]) -> None:
        position, event = item
        with self._lock:
            self._items[position] = follow_seen(position, event)
            if len(self._items) > self.KEPT:
                self._items.popitem(last=False)

    def get(self, position: int) -> Seen | None:
        with self._lock:
            return self._items.get(position)


RUN_VIEWS_KEPT = 8
"""Runs whose checkpoint states ``Ledger.run_states`` keeps between calls."""
RUN_VIEW_PAGE = 1000
"""Log events read per query when ``run_states`` catches up."""


class _RunView:
    """One run's checkpoint states as of a log position (``Ledger.run_states``)."""

    __slots__ = ("lock", "position", "run_id", "states")

    def __init__(self, run_id: str, position: int) -> None:
        self.run_id = run_id
        self.position = position
        self.states: dict[UUID, CheckpointState] = {}
        self.lock = threading.Lock()


def _scrub(text: str) -> str:
    """Text safe to store: lone surrogates (from odd bytes decoded leniently) replaced."""
    return text.encode("utf-8", "replace").decode("utf-8")


_HOST = socket.gethostname()


def _fence(token: CheckpointToken, attempt: object, lease: object) -> Fence | None:
    """The fence of a write's ``attempt=`` and ``lease=``, checked before anything is written."""
    if attempt is not None:
        check_count(attempt, "attempt", minimum=1)
    if lease is not None:
        held = _check_lease(lease)
        if held.token != token:
            raise InvalidInput("lease", f"the lease is for {held.token}, not {token}")
        if attempt is not None and attempt != held.attempt:
            raise InvalidInput(
                "attempt", f"{attempt} is not the lease's attempt {held.attempt}; give one of them"
            )
        return Fence.of(None, held)
    return Fence.of(attempt if isinstance(attempt, int) else None, None)


def _check_lease(lease: object) -> Lease:
    if not isinstance(lease, Lease):
        raise InvalidInput(
            "lease",
            f"expected a Lease (from claim_checkpoint or claim_next), got {type(lease).__name__}",
        )
    check_token(lease.token)
    return lease


def _ttl(ttl: object) -> float:
    seconds = check_seconds(ttl, "ttl")
    if seconds <= 0:
        raise InvalidInput("ttl", "a lease must last more than 0 seconds")
    return float(seconds)


def _reason(reason: object, action: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("reason", f"say why the checkpoint is {action} (a non-empty str)")
    if len(reason) > 4096:  # noqa: PLR2004
        raise InvalidInput("reason", "must be at most 4096 characters")
    return _scrub(reason)


def _claimable(state: CheckpointState, now: datetime, delay: float, max_delay: float) -> bool:
    """True when ``claim_next`` should try the checkpoint now."""
    if state.status == "open":
        return not state.lease_is_live(now)
    if state.status == "failed" and state.error is not None and state.error.transient:
        return retry_due_at(state, delay, max_delay) <= now
    return False


# The events each command may append: a command id found with another kind of event was
# given to another command.
_TOPICS: dict[str, frozenset[str]] = {
    "checkpoint_yield": frozenset({Yielded.topic}),
    "complete_checkpoint": frozenset({Completed.topic}),
    "fail_checkpoint": frozenset({Failed.topic}),
    "retry_checkpoint": frozenset({Retried.topic}),
    "reset_checkpoint": frozenset({Reset.topic}),
    "cancel_checkpoint": frozenset({Cancelled.topic}),
    "claim_checkpoint": frozenset({Claimed.topic, LeaseRenewed.topic}),
    "heartbeat": frozenset({LeaseRenewed.topic}),
    "release": frozenset({Released.topic}),
}


def _same_command(
    state: CheckpointState, command_id: str, topic: str, name: str
) -> CheckpointState:
    """The state, when ``command_id`` found with a ``topic`` event is this ``name`` command."""
    if topic and topic not in _TOPICS[name]:
        raise ConflictingCommand(
            str(state.token),
            state.status,
            name,
            f"command id {command_id!r} was already used for a {topic.removeprefix('checkpoint.')}"
            " event on this checkpoint; give a new command a new id",
        )
    return state
