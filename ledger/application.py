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
import logging
import random
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Self, TypeVar
from uuid import UUID

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    MapperDeserialisationError,
    Notification,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from pydantic import TypeAdapter, ValidationError

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
    apply,
    check_token,
    decide_complete,
    decide_fail,
    decide_reset,
    decide_retry,
    decide_yield,
)
from ledger.checks import check_aware, check_count, check_run_id
from ledger.errors import (
    CheckpointNotFound,
    InvalidInput,
    LedgerError,
    PayloadTooLarge,
    StoreUnavailable,
)
from ledger.events import CheckpointEvent, Created, Snapshot
from ledger.settings import LedgerSettings
from ledger.store import LedgerRecorder, open_recorder, parse_store_url
from ledger.watch import LogWatcher

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType

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


def _json_payload(
    adapter: TypeAdapter[T], value: object, field: str, limit: int, setting: str
) -> T:
    """The value, type-checked, finite, valid unicode and within its size limit."""
    checked = _validate(adapter, value, field)
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


class Ledger:
    """The checkpoint ledger: every create, yield, complete, fail, retry and reset is an event.

    Thread-safe: one ``Ledger`` may be shared by the threads of a process. Many processes may
    open the same store; they coordinate through the store alone.
    """

    def __init__(self, settings: LedgerSettings, recorder: LedgerRecorder) -> None:
        """Wrap an opened recorder; most callers want :meth:`Ledger.open`."""
        self.settings = settings
        self.recorder = recorder
        self.mapper = EventMapper()
        self._cache: OrderedDict[UUID, CheckpointState] = OrderedDict()
        self._tokens: dict[UUID, CheckpointToken] = {}
        self._cache_lock = threading.Lock()
        self._listeners: list[Callable[[Recorded], None]] = []
        self._watcher: LogWatcher | None = None
        self._watcher_lock = threading.Lock()
        self._closed = False

    # ---------------------------------------------------------------- opening and closing

    @classmethod
    def open(cls, store: str | None = None, *, settings: LedgerSettings | None = None) -> Ledger:
        """Open a ledger on ``store``, else ``$CKL_STORE``, else ``./checkpoints.db``.

        Raises:
            InvalidStoreURL: the URL names no known backend.
            InvalidInput: a ``CKL_*`` variable holds an invalid value.
            StoreUnavailable: the database cannot be reached.
        """
        if store is not None:
            parse_store_url(store)  # InvalidStoreURL for a non-string or unusable URL
        if settings is None:
            settings = LedgerSettings.from_env(store=store)
        elif store is not None:
            settings = settings.model_copy(update={"store": store})
        try:
            recorder = open_recorder(settings)
        except PersistenceError as exc:
            display = parse_store_url(settings.store).display
            raise StoreUnavailable(display, "open", str(exc)) from exc
        return cls(settings, recorder)

    @property
    def store_display(self) -> str:
        """The store URL with any password masked."""
        return self.recorder.store.display

    def close(self) -> None:
        """Stop watching the log and release the store's connections. Idempotent."""
        self._closed = True
        if self._watcher is not None:
            self._watcher.close()
        self.recorder.close()

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
        token = CheckpointToken.for_batch(run_id, batch_index)
        if self._get_cached(token.checkpoint_id) is not None:
            return token
        event = Created(
            originator_id=token.checkpoint_id,
            originator_version=1,
            timestamp=datetime.now(UTC),
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
        cursor: CursorInput,
        items_processed: int,
        accumulated_results: JSONObjectInput | None = None,
    ) -> CheckpointState:
        """Record progress on an open checkpoint; the yield is durable when this returns.

        Yields never change the checkpoint's status. Repeating the latest yield unchanged is
        a no-op. ``items_processed`` never decreases within one attempt.

        Raises:
            CheckpointNotFound: no such checkpoint.
            InvalidInput: bad cursor, items_processed or accumulated_results.
            ProgressWentBackwards: items_processed below what this attempt recorded.
            PayloadTooLarge: cursor or accumulated_results over their limits.
            InvalidTransition: the checkpoint is completed, or failed and not retried.
        """
        check_token(token)
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
            results = _json_payload(
                _object_adapter,
                accumulated_results,
                "accumulated_results",
                self.settings.max_accumulated_results_bytes,
                "CKL_MAX_ACCUMULATED_RESULTS_BYTES",
            )
        return self._command(
            token, lambda s, now: decide_yield(s, now, cur, items_processed, results)
        )

    def complete_checkpoint(self, token: CheckpointToken, result: object = None) -> CheckpointState:
        """Mark the checkpoint completed with its ``result``: the durable confirmation.

        The same result again is a no-op.

        Raises:
            ConflictingCommand: already completed with a different result.
            InvalidTransition: the checkpoint failed (retry or reset it first).
            PayloadTooLarge: result over ``max_result_bytes``.
        """
        check_token(token)
        value = _json_payload(
            _value_adapter, result, "result", self.settings.max_result_bytes, "CKL_MAX_RESULT_BYTES"
        )
        return self._command(token, lambda s, now: decide_complete(s, now, value))

    def fail_checkpoint(
        self,
        token: CheckpointToken,
        error: BaseException | str,
        transient: bool = False,
        *,
        error_type: str | None = None,
    ) -> CheckpointState:
        """Mark the current attempt failed; a transient failure may be retried.

        ``error`` is an exception (its class name becomes the error type) or a message
        (error type ``"Error"`` unless ``error_type`` is given). Messages longer than
        ``max_error_message_chars`` are truncated, never refused. The same failure again is a
        no-op.

        Raises:
            ConflictingCommand: already failed with a different error.
            InvalidTransition: the checkpoint is completed.
        """
        check_token(token)
        if isinstance(error, BaseException):
            kind = error_type or type(error).__qualname__
            message = str(error) or repr(error)
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
        message = self._truncate(_scrub(message))
        kind = _scrub(kind)
        return self._command(token, lambda s, now: decide_fail(s, now, kind, message, transient))

    def retry_checkpoint(self, token: CheckpointToken) -> CheckpointState:
        """Start the next attempt after a transient failure; it resumes from the last cursor.

        A retry already applied is a no-op.

        Raises:
            InvalidTransition: not failed, or failed permanently (reset it instead).
        """
        check_token(token)
        return self._command(token, decide_retry)

    def reset_checkpoint(self, token: CheckpointToken, reason: str) -> CheckpointState:
        """Operator action: clear cursor, progress and results; a fresh attempt starts.

        Allowed in any state. The same reset repeated with nothing in between is a no-op.

        Raises:
            InvalidInput: the reason is empty or not a str.
        """
        check_token(token)
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInput("reason", "say why the checkpoint is reset (a non-empty str)")
        if len(reason) > 4096:  # noqa: PLR2004
            raise InvalidInput("reason", "must be at most 4096 characters")
        text = _scrub(reason)
        return self._command(token, lambda s, now: decide_reset(s, now, text))

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
        notes: list[Notification] = list(
            self._store_call(
                "read_log",
                lambda: self.recorder.select_notifications(after, limit, inclusive_of_start=False),
            )
        )
        return [(n.id, self._to_event(n)) for n in notes]

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

    def _truncate(self, message: str) -> str:
        limit = self.settings.max_error_message_chars
        if len(message) <= limit:
            return message
        marker = f"… [truncated {len(message) - limit} chars]"
        return message[: max(0, limit - len(marker))] + marker

    def _command(
        self,
        token: CheckpointToken,
        decide: Callable[[CheckpointState, datetime], CheckpointEvent | None],
    ) -> CheckpointState:
        state = self._get_cached(token.checkpoint_id)
        fresh = state is None
        if state is None:
            state = self._load(token)
        conflicts = 0
        for _ in range(self.settings.conflict_retries + 1):
            # Never write a timestamp before the checkpoint's last one, whatever the clocks say.
            now = max(datetime.now(UTC), state.updated_at)
            try:
                event = decide(state, now)
            except LedgerError:
                if fresh:
                    raise
                state, fresh = self._refresh(state), True
                continue
            if event is None:
                if fresh:
                    return state
                state, fresh = self._refresh(state), True
                continue
            try:
                return self._append(state, event)
            except IntegrityError:
                # Another writer appended this version first: reload and decide again, after a
                # short random pause that grows with each loss, so that a writer needing two
                # round trips (reload, append) is not starved by one needing a single one.
                conflicts += 1
                time.sleep(random.uniform(0, min(0.05, 0.0005 * 2**conflicts)))  # noqa: S311
                state, fresh = self._refresh(state), True
        raise StoreUnavailable(
            self.store_display,
            "append",
            f"checkpoint {token} kept changing under {self.settings.conflict_retries} retries "
            "(too many writers on one checkpoint)",
        )

    def _append(self, state: CheckpointState | None, event: CheckpointEvent) -> CheckpointState:
        stored = self.mapper.to_stored_event(event)
        # The store keeps the run as a column (its archive guard reads it; states are opaque).
        run_id = (
            event.run_id if isinstance(event, Created) else state.token.run_id if state else None
        )
        ids = self._store_call(
            "append", lambda: self.recorder.insert_events([stored], run_id=run_id)
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
        """Bring a (possibly stale) state up to date with the store."""
        oid = state.token.checkpoint_id
        rows = self._store_call("load", lambda: self.recorder.select_events(oid, gt=state.version))
        for row in rows:
            state = apply(state, self._to_event(row))
        if rows:
            self._put_cached(state)
        return state

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
        delay = self.settings.store_retry_delay
        for attempt in range(self.settings.store_retries + 1):
            try:
                return call()
            except (OperationalError, InterfaceError) as exc:
                if self._closed or attempt == self.settings.store_retries:
                    raise StoreUnavailable(self.store_display, operation, str(exc)) from exc
                log.warning(
                    "store %s failed during %s (%s); retrying", self.store_display, operation, exc
                )
                time.sleep(delay)
                delay *= 2
        raise AssertionError  # pragma: no cover  (the loop always returns or raises)


def _scrub(text: str) -> str:
    """Text safe to store: lone surrogates (from odd bytes decoded leniently) replaced."""
    return text.encode("utf-8", "replace").decode("utf-8")
