"""run_batches: the Effect seed's sequence as a helper, resumable, for one worker or many.

Two modes, one contract for each batch: process (with yields) → save (complete) → confirm (await
the durable completion) → progress. Progress is reported only after the confirmation, so it
never runs ahead of a durable checkpoint.

**Sequential** (the default, no ``owner``): one process does the batches strictly in order:
create → process → complete → confirm → progress, then the next batch. Restarted after a crash
(even SIGKILL mid-batch), it skips completed batches and resumes the interrupted one from its last
cursor. A permanent failure is recorded and stops the run: later batches are not started.

**Shared** (``owner="host:pid"``, the same call in N processes on N machines): every process
creates all the checkpoints (idempotent), then claims the next batch that needs a worker
(``claim_next``: unclaimed, lease expired, or transiently failed and past its back-off) and
processes it under its lease. Each yield renews the lease; a heartbeat thread renews it every
``lease_ttl / 3`` seconds while ``process`` runs, so a slow batch that rarely yields keeps it, and
stops when the batch ends. A worker that dies stops renewing: once its lease expires another
worker takes the batch over (a new attempt, resuming from the last cursor) and the dead
worker's writes are refused from then on. When no batch can be claimed the process waits (woken
by the log, and at the nearest lease expiry or retry time) and claims again; it returns once
every batch of the run is settled, and a permanent failure anywhere stops its claims and is
raised.

Fencing, in both modes: every write is issued under the attempt it started with (``attempt=``,
or ``lease=`` in shared mode). When a write is refused because that attempt is over —
``StaleAttempt`` (an operator's reset or retry), ``LeaseLost`` (a takeover), or
``CheckpointCancelled`` — ``run_batches`` abandons the attempt, records nothing of it, and never
fails the checkpoint for it. Then in sequential mode it reads the checkpoint again and goes on
from what it finds: a reset is the operator's word, so the batch is processed again from the
reset state (no cursor, a new attempt); a cancelled batch is skipped. In shared mode it simply
claims again: whoever holds the batch now finishes it.

Retries count what matters: ``max_attempts`` counts attempts in a row that made no progress
(``CheckpointState.stalled_attempts``), so a long batch that keeps moving between transient
failures is never stopped. When a transient failure ends the ``max_attempts``-th attempt without
progress, the batch is recorded as failed permanently (its error type kept, the message saying
it gave up). Attempts are spaced by exponential back-off with jitter (``retry_delay`` doubling
up to ``max_retry_delay``, see :func:`ledger.retry_due_at`): sequential mode sleeps until the
retry is due, shared mode lets ``claim_next`` wait for it.

Progress and the report: ``on_progress`` is called once per completed batch, after its durable
completion was read back. In shared mode that includes batches other workers completed (read
from the store, ``BatchProgress.completed_here`` False), so every process can show the whole
run's progress; they are reported in the order this process confirms them. A cancelled batch
is settled but has no result: ``RunReport.results`` holds ``None`` at its index and
``RunReport.cancelled`` lists it; no progress is reported for it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, cast

from typing_extensions import TypeVar

from ledger import (
    CheckpointCancelled,
    CheckpointState,
    CheckpointToken,
    Cursor,
    CursorInput,
    InvalidInput,
    JSONObject,
    JSONObjectInput,
    JSONValue,
    Lease,
    LedgerError,
    StaleAttempt,
    StoreUnavailable,
    check_count,
    check_name,
    check_run_id,
    check_seconds,
    failure_of,
    retry_due_at,
    run_is_settled,
)
from ledger.typed import check_type, read_as, to_json

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from ledger import Ledger
    from streams.coordinator import Coordinator

__all__ = ["BatchContext", "BatchProgress", "RunReport", "run_batches"]

log = logging.getLogger("streams.batches")

T = TypeVar("T")
C = TypeVar("C", default=Cursor)
"""The cursor type a worker declares (``cursor_type=``); JSON (``Cursor``) when it declares none."""
R = TypeVar("R", default=JSONObject)
"""The accumulated results type (``results_type=``); a JSON object when none is declared."""
Out = TypeVar("Out", default=JSONValue)
"""A batch's result type (``result_type=``), as the report and the progress carry it."""

Outcome = Literal["completed", "failed", "abandoned"]
"""How one attempt ended: completed, failed transiently (recorded), or fenced off (nothing)."""

_RECHECK_FLOOR = 0.1
"""Seconds a waiting shared worker leaves between two reads of the run, however often the log
wakes it (other workers' yields do, many times a second)."""


@dataclass
class BatchContext(Generic[T, C, R]):
    """What ``process`` gets: the batch, where to resume, and how to save progress.

    ``BatchContext[T, C, R]``: ``T`` the batch, ``C`` the cursor and ``R`` the accumulated
    results, as declared with ``run_batches(..., cursor_type=C, results_type=R)`` and
    validated on the way out (a stored value that does not fit raises ``PayloadMismatch``);
    undeclared, they are the ledger's JSON types. ``checkpoint_yield`` takes them back as they
    are (a pydantic model is dumped to JSON and checked like any payload).

    The accessors are the tasker seed's ``BatchWorkerContext``: ``checkpoint_cursor``,
    ``accumulated_results``, ``has_checkpoint()``, ``checkpoint_items_processed``. Its writes are
    fenced by the attempt it started under (``lease`` in shared mode): once that attempt is
    superseded, ``checkpoint_yield`` raises ``StaleAttempt`` (or ``LeaseLost``), and
    ``process`` should let it propagate: ``run_batches`` abandons the attempt.
    """

    run_id: str
    batch_index: int
    total_batches: int
    batch: T
    token: CheckpointToken
    state: CheckpointState
    _coordinator: Coordinator = field(repr=False)
    lease: Lease | None = None
    """The lease this attempt holds (shared mode), ``None`` in sequential mode."""
    _renewed: float = field(default_factory=time.monotonic, repr=False)
    """When the lease was last renewed (``time.monotonic``), for the heartbeat."""
    cursor_type: type[C] | None = None
    """The declared cursor type (``None``: the stored JSON as it is)."""
    results_type: type[R] | None = None
    """The declared accumulated results type (``None``: the stored JSON object)."""

    @property
    def attempt(self) -> int:
        """This attempt's number (1 for the first)."""
        return self.state.attempt

    @property
    def checkpoint_cursor(self) -> C | None:
        """Where to resume: the last yielded cursor, or ``None`` to start from the beginning.

        Raises:
            PayloadMismatch: the stored cursor does not fit the declared ``cursor_type``.
        """
        if self.cursor_type is None:
            return cast("C | None", self.state.checkpoint_cursor)  # C is the JSON Cursor here
        return self.state.cursor_as(self.cursor_type)

    @property
    def accumulated_results(self) -> R | None:
        """What the last yield carried forward.

        Raises:
            PayloadMismatch: the stored results do not fit the declared ``results_type``.
        """
        if self.results_type is None:
            return cast("R | None", self.state.accumulated_results)  # R is JSONObject here
        return self.state.results_as(self.results_type)

    def has_checkpoint(self) -> bool:
        """True when there is a cursor to resume from."""
        return self.state.has_checkpoint()

    @property
    def checkpoint_items_processed(self) -> int:
        """Items done as of the last yield."""
        return self.state.checkpoint_items_processed

    def checkpoint_yield(
        self,
        cursor: C | CursorInput,
        items_processed: int,
        accumulated_results: R | JSONObjectInput | None = None,
    ) -> CheckpointState:
        """Save progress; durable when it returns. Under a lease it renews the lease.

        Raises:
            StaleAttempt: this attempt was superseded (``LeaseLost``: its lease was taken).
            CheckpointCancelled: an operator cancelled the checkpoint.
            InvalidInput: a cursor or results the ledger refuses (as for a plain yield).
        """
        # A declared type's value (a model) goes in as JSON, checked as any payload is.
        cur, results = to_json(cursor), to_json(accumulated_results)
        if self.lease is not None:
            self.state = self._coordinator.checkpoint_yield(
                self.token, cur, items_processed, results, lease=self.lease
            )
            self._renewed = time.monotonic()
        else:
            self.state = self._coordinator.checkpoint_yield(
                self.token, cur, items_processed, results, attempt=self.attempt
            )
        return self.state

    @property
    def _fence_attempt(self) -> int | None:
        """The ``attempt=`` of this attempt's writes (``None`` under a lease, which implies it)."""
        return None if self.lease is not None else self.attempt


@dataclass(frozen=True)
class BatchProgress(Generic[Out]):
    """Reported after each batch's completion is confirmed (read back from the store).

    ``result`` is of the declared ``result_type`` (JSON when none was declared).
    """

    run_id: str
    batch_index: int
    completed: int
    """Batches confirmed so far, this one included (as this process has seen them)."""
    total: int
    result: Out
    resumed: bool
    """True when the batch was already completed before this call (a restart)."""
    completed_here: bool = True
    """True when this process completed it; False in shared mode for another worker's batch."""


@dataclass(frozen=True)
class RunReport(Generic[Out]):
    """The outcome of :func:`run_batches`: every batch's confirmed result, in batch order."""

    run_id: str
    results: list[Out | None]
    """One per batch, in batch order; ``None`` for a cancelled batch."""
    cancelled: tuple[int, ...] = ()
    """Indexes of the batches an operator cancelled (settled, without a result)."""
    completed_here: tuple[int, ...] = ()
    """Indexes of the batches this call completed (the others were done before or elsewhere)."""


def run_batches(
    coordinator: Coordinator,
    run_id: str,
    batches: Sequence[T],
    process: Callable[[BatchContext[T, C, R]], object],
    *,
    cursor_type: type[C] | None = None,
    results_type: type[R] | None = None,
    result_type: type[Out] | None = None,
    owner: str | None = None,
    lease_ttl: float = 30.0,
    transient: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError),
    max_attempts: int = 3,
    retry_delay: float = 1.0,
    max_retry_delay: float = 60.0,
    on_progress: Callable[[BatchProgress[Out]], None] | None = None,
    confirm_timeout: float = 30.0,
) -> RunReport[Out]:
    """Process ``batches`` of ``run_id``, checkpointed, resumable, alone or shared.

    Args:
        coordinator: the coordinator (and through it the ledger) to record with.
        run_id: the run; the same id resumes the same run.
        batches: one item per batch (whatever ``process`` needs: a range, a file name…);
            in shared mode every process passes the same batches.
        process: does one batch; may call ``ctx.checkpoint_yield`` as it goes and should
            resume from ``ctx.checkpoint_cursor``; its return value is the batch's result.
        cursor_type: the type ``ctx.checkpoint_cursor`` is read as (a pydantic model, a
            TypedDict, ``int``…); ``None``: the stored JSON.
        results_type: the type ``ctx.accumulated_results`` is read as; ``None``: JSON.
        result_type: the type of ``process``'s return value: checked before the completion
            is written (a mismatch fails the batch permanently), and the type of
            ``RunReport.results`` and ``BatchProgress.result``; ``None``: JSON.
        owner: ``None`` for the sequential mode; a name unique to this worker process (e.g.
            ``f"{socket.gethostname()}:{os.getpid()}"``) to share the run with other workers.
        lease_ttl: seconds a shared worker's lease lasts unless renewed (by a yield or the
            heartbeat, every ``lease_ttl / 3``): how long a dead worker's batch waits.
        transient: exception types that are worth retrying; any other is permanent.
        max_attempts: attempts in a row without progress before a transient failure is
            recorded as permanent.
        retry_delay: seconds before the first retry; doubles with each attempt without
            progress, with jitter.
        max_retry_delay: the longest back-off.
        on_progress: called after each confirmed completion (see the module docstring).
        confirm_timeout: seconds to wait for a completion to be confirmed.

    Returns:
        The run's report, once every batch is completed or cancelled.

    Raises:
        CheckpointFailedError: a batch failed permanently (or gave up after ``max_attempts``
            attempts without progress); its error is the ``__cause__`` when it happened in
            this call.
        InvalidInput: bad arguments, or (shared mode) a run of another number of batches;
            checked before anything is written.
        CheckpointClaimed: sequential mode met a batch leased by a shared worker.
        PayloadMismatch: a stored result does not fit ``result_type`` (a batch completed
            before under another shape); inside ``process``, a cursor or results that do not
            fit theirs (recorded as the batch's permanent failure).
    """
    check_run_id(run_id)
    _check_arguments(batches, process, transient, max_attempts, on_progress, confirm_timeout)
    for kind, name in (
        (cursor_type, "cursor_type"),
        (results_type, "results_type"),
        (result_type, "result_type"),
    ):
        if kind is not None:
            check_type(kind, name)
    if owner is not None:
        check_name(owner, "owner")
    ttl = check_seconds(lease_ttl, "lease_ttl")
    if ttl <= 0:
        raise InvalidInput("lease_ttl", "a lease must last more than 0 seconds")
    job = _Job(
        coordinator,
        run_id,
        batches,
        process,
        transient,
        max_attempts,
        check_seconds(retry_delay, "retry_delay"),
        check_seconds(max_retry_delay, "max_retry_delay"),
        on_progress,
        confirm_timeout,
        cursor_type,
        results_type,
        result_type,
    )
    if owner is None:
        return job.run_sequential()
    return job.run_shared(owner, float(ttl))


@dataclass(frozen=True)
class _Job(Generic[T, C, R, Out]):
    """One ``run_batches`` call: its arguments, and the two ways of running them."""

    coordinator: Coordinator
    run_id: str
    batches: Sequence[T]
    process: Callable[[BatchContext[T, C, R]], object]
    transient: tuple[type[BaseException], ...]
    max_attempts: int
    retry_delay: float
    max_retry_delay: float
    on_progress: Callable[[BatchProgress[Out]], None] | None
    confirm_timeout: float
    cursor_type: type[C] | None
    results_type: type[R] | None
    result_type: type[Out] | None

    @property
    def ledger(self) -> Ledger:
        return self.coordinator.ledger

    # ------------------------------------------------------------------ sequential

    def _typed(self, result: JSONValue) -> Out:
        """A stored result as the declared ``result_type`` (as it is when none was declared).

        Raises:
            PayloadMismatch: it does not fit.
        """
        if self.result_type is None:
            return cast("Out", result)  # Out is JSONValue here
        return read_as(self.result_type, result, "result")

    def _checked(self, returned: object) -> object:
        """What ``process`` returned, as the JSON to complete with, checked against its type.

        Raises:
            PayloadMismatch: it does not fit ``result_type`` (nothing is written).
        """
        value = to_json(returned)
        if self.result_type is not None:
            read_as(self.result_type, value, "result")
        return value

    def run_sequential(self) -> RunReport[Out]:
        total = len(self.batches)
        results: list[Out | None] = []
        cancelled: list[int] = []
        here: list[int] = []
        confirmed = 0
        for index, batch in enumerate(self.batches):
            token = self.coordinator.create_checkpoint(self.run_id, index, total_batches=total)
            state = self.coordinator.get_checkpoint(token)
            resumed = state.status == "completed"
            if not resumed:
                state = self._finish_here(token, batch, state)
            if state.status == "cancelled":
                log.warning("%s: cancelled (%s); skipped", token, state.cancel_reason)
                results.append(None)
                cancelled.append(index)
                continue
            # Confirm: the durable completion, read back, before any progress is reported.
            result = self._typed(
                self.coordinator.await_checkpoint(token, timeout=self.confirm_timeout)
            )
            results.append(result)
            confirmed += 1
            if not resumed:
                here.append(index)
            self._progress(index, confirmed, result, resumed=resumed, here=not resumed)
        return RunReport(self.run_id, results, tuple(cancelled), tuple(here))

    def _finish_here(
        self, token: CheckpointToken, batch: T, state: CheckpointState
    ) -> CheckpointState:
        """Run attempts of one batch until it is completed or cancelled; its final state.

        Raises:
            CheckpointFailedError: it failed permanently (now or before).
        """
        while state.status not in {"completed", "cancelled"}:
            if state.status == "failed":
                failure = failure_of(state)
                if failure is not None and not failure.transient:
                    raise failure
                self._sleep_until_due(state)
                state = self.coordinator.retry_checkpoint(token)
                log.info("%s: attempt %d resumes from %r", token, state.attempt, state.cursor)
            ctx = self._context(token, batch, state, None)
            if self._attempt(ctx) == "abandoned":
                # The attempt was superseded (an operator's reset) or cancelled: go on from
                # what the store says now.
                state = self.coordinator.get_checkpoint(token)
                log.warning(
                    "%s: going on from the current state: %s, attempt %d, cursor %r",
                    token,
                    state.status,
                    state.attempt,
                    state.cursor,
                )
            else:
                state = self.coordinator.get_checkpoint(token)
        return state

    def _sleep_until_due(self, state: CheckpointState) -> None:
        due = retry_due_at(state, self.retry_delay, self.max_retry_delay)
        pause = (due - self.ledger.now()).total_seconds()
        if pause > 0:
            log.info("%s: next attempt in %.2fs", state.token, pause)
            time.sleep(pause)

    # ------------------------------------------------------------------ shared

    def run_shared(self, owner: str, ttl: float) -> RunReport[Out]:
        total = len(self.batches)
        self._check_run_size(total)
        for index in range(total):
            self.coordinator.create_checkpoint(self.run_id, index, total_batches=total)
        reported: set[int] = set()
        here: list[int] = []
        done_before: set[int] | None = None
        wake = threading.Event()
        unwatch = self.ledger.watch(wake.set)
        try:
            while True:
                wake.clear()  # before the read: anything appended after it wakes the wait
                states = self.coordinator.run_states(self.run_id)
                if done_before is None:
                    done_before = {i for i, s in states.items() if s.status == "completed"}
                self._report_others(states, reported, done_before)
                self._raise_permanent_failure(states)
                if run_is_settled(states):
                    break
                lease = self.coordinator.claim_next(
                    self.run_id,
                    owner,
                    ttl,
                    retry_delay=self.retry_delay,
                    max_retry_delay=self.max_retry_delay,
                )
                if lease is None:
                    _wait(wake, self._pause(states, ttl))
                    continue
                index = lease.token.batch_index
                if self._run_leased(lease) == "completed":
                    result = self._typed(
                        self.coordinator.await_checkpoint(lease.token, timeout=self.confirm_timeout)
                    )
                    reported.add(index)
                    here.append(index)
                    self._progress(index, len(reported), result, resumed=False, here=True)
        finally:
            unwatch()
        results = [
            self._typed(states[i].result) if states[i].status == "completed" else None
            for i in range(total)
        ]
        cancelled = tuple(i for i in range(total) if states[i].status == "cancelled")
        return RunReport(self.run_id, results, cancelled, tuple(sorted(here)))

    def _check_run_size(self, total: int) -> None:
        """Refuse, before writing, to share a run that was created with other batches."""
        for state in self.coordinator.run_states(self.run_id).values():
            if state.total_batches != total or state.token.batch_index >= total:
                raise InvalidInput(
                    "batches",
                    f"run {self.run_id!r} has {state.total_batches} batches, got {total}; "
                    "every worker of a shared run must pass the same batches",
                )

    def _run_leased(self, lease: Lease) -> Outcome:
        index = lease.token.batch_index
        state = self.coordinator.get_checkpoint(lease.token)
        if lease.taken_over:
            log.warning(
                "%s: %s took it over from %r (attempt %d, resuming from %r)",
                lease.token,
                lease.owner,
                lease.previous_owner,
                lease.attempt,
                state.cursor,
            )
        else:
            log.info("%s: claimed by %s (attempt %d)", lease.token, lease.owner, lease.attempt)
        ctx = self._context(lease.token, self.batches[index], state, lease)
        try:
            return self._attempt(ctx)
        except BaseException:
            # Interrupted (KeyboardInterrupt, SystemExit, a permanent failure raised): give the
            # lease back so that nobody waits for it to expire. A lease the attempt already
            # ended (complete, fail) or lost makes the release a no-op or a LeaseLost.
            with contextlib.suppress(LedgerError):
                self.coordinator.release(ctx.lease or lease)
            raise

    def _report_others(
        self, states: dict[int, CheckpointState], reported: set[int], done_before: set[int]
    ) -> None:
        """Progress for the batches found completed in the store that were not reported yet."""
        for index in sorted(states):
            state = states[index]
            if state.status == "completed" and index not in reported:
                reported.add(index)
                self._progress(
                    index,
                    len(reported),
                    self._typed(state.result),
                    resumed=index in done_before,
                    here=False,
                )

    @staticmethod
    def _raise_permanent_failure(states: dict[int, CheckpointState]) -> None:
        for index in sorted(states):
            failure = failure_of(states[index])
            if failure is not None and not failure.transient:
                log.error("%s: failed permanently; no more claims", states[index].token)
                raise failure

    def _pause(self, states: dict[int, CheckpointState], ttl: float) -> float:
        """Seconds until something may be claimable: a lease expiring, a retry falling due."""
        now = self.ledger.now()
        waits = [ttl]
        for state in states.values():
            if state.status == "open":
                if state.lease_is_live(now) and state.lease_expires_at is not None:
                    waits.append((state.lease_expires_at - now).total_seconds())
                elif not state.lease_is_live(now):
                    waits.append(0.0)  # claimable, and another worker won it: look again
            elif state.status == "failed" and not state.is_settled:
                due = retry_due_at(state, self.retry_delay, self.max_retry_delay)
                waits.append((due - now).total_seconds())
        return max(_RECHECK_FLOOR, min(waits))

    # ------------------------------------------------------------------ one attempt

    def _context(
        self, token: CheckpointToken, batch: T, state: CheckpointState, lease: Lease | None
    ) -> BatchContext[T, C, R]:
        return BatchContext(
            token.run_id,
            token.batch_index,
            state.total_batches or 0,
            batch,
            token,
            state,
            self.coordinator,
            lease,
            cursor_type=self.cursor_type,
            results_type=self.results_type,
        )

    def _attempt(self, ctx: BatchContext[T, C, R]) -> Outcome:
        """Run ``process`` once under the context's fence, and record how it ended.

        Raises:
            CheckpointFailedError: it failed permanently (recorded), with its error as cause.
        """
        try:
            with _Heartbeat(ctx) if ctx.lease is not None else contextlib.nullcontext():
                # A result that does not fit result_type fails the batch before it is written.
                result = self._checked(self.process(ctx))
        except (StaleAttempt, CheckpointCancelled) as exc:
            _abandon(ctx, exc)
            return "abandoned"
        except Exception as exc:  # noqa: BLE001  (process's own error is recorded, not lost)
            return self._record_failure(ctx, exc)
        try:
            self.coordinator.complete_checkpoint(
                ctx.token,
                result,
                attempt=ctx._fence_attempt,  # noqa: SLF001
                lease=ctx.lease,
            )
        except (StaleAttempt, CheckpointCancelled) as exc:
            _abandon(ctx, exc)
            return "abandoned"
        return "completed"

    def _record_failure(self, ctx: BatchContext[T, C, R], exc: Exception) -> Outcome:
        transient = isinstance(exc, self.transient)
        state = self.coordinator.get_checkpoint(ctx.token)
        error: BaseException = exc
        progressed = state.items_processed > state.attempt_started_items
        if transient and not progressed and state.stalled_attempts >= self.max_attempts:
            transient, error = False, _gave_up(exc, state.stalled_attempts)
        try:
            state = self.coordinator.fail_checkpoint(
                ctx.token,
                error,
                transient,
                error_type=type(exc).__qualname__,
                attempt=ctx._fence_attempt,  # noqa: SLF001
                lease=ctx.lease,
            )
        except (StaleAttempt, CheckpointCancelled) as fenced:
            _abandon(ctx, fenced)
            return "abandoned"
        log.warning(
            "%s: attempt %d failed (%s): %r",
            ctx.token,
            ctx.attempt,
            "transient" if transient else "permanent",
            exc,
        )
        failure = failure_of(state)
        if failure is not None and not transient:
            raise failure from exc
        return "failed"

    def _progress(
        self, index: int, completed: int, result: Out, *, resumed: bool, here: bool
    ) -> None:
        total = len(self.batches)
        log.info("run %s: batch %d confirmed (%d/%d)", self.run_id, index, completed, total)
        if self.on_progress is not None:
            self.on_progress(
                BatchProgress(self.run_id, index, completed, total, result, resumed, here)
            )


class _GaveUp(Exception):
    """The error recorded when a batch runs out of attempts without progress."""


def _gave_up(exc: Exception, attempts: int) -> _GaveUp:
    """The error to record instead of ``exc`` when the batch gives up."""
    msg = f"gave up after {attempts} attempts without progress; last error: {exc}"
    # With the last error's traceback: where the batch failed, the last time.
    return _GaveUp(msg).with_traceback(exc.__traceback__)


def _abandon(ctx: BatchContext[Any, Any, Any], exc: LedgerError) -> None:
    log.warning(
        "%s: attempt %d abandoned, nothing more of it is recorded: %s", ctx.token, ctx.attempt, exc
    )


def _wait(wake: threading.Event, timeout: float) -> None:
    """Wait for ``wake`` or ``timeout``, but at least ``_RECHECK_FLOOR`` seconds."""
    started = time.monotonic()
    wake.wait(timeout)
    spent = time.monotonic() - started
    if spent < _RECHECK_FLOOR:
        time.sleep(_RECHECK_FLOOR - spent)


class _Heartbeat:
    """Renews a context's lease while ``process`` runs, unless its yields already did.

    It wakes ``ttl / 3`` after the last renewal (a yield or its own heartbeat). A lost lease
    ends it: the attempt learns at its next write, which is refused.
    """

    def __init__(self, ctx: BatchContext[Any, Any, Any]) -> None:
        self.ctx = ctx
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"ckl-heartbeat-{ctx.token}", daemon=True
        )

    def __enter__(self) -> None:
        self.thread.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        ctx = self.ctx
        assert ctx.lease is not None  # noqa: S101  (only started for a leased attempt)
        interval = ctx.lease.ttl / 3
        while True:
            pause = ctx._renewed + interval - time.monotonic()  # noqa: SLF001
            if pause > 0:
                if self.stop.wait(pause):
                    return
                continue
            try:
                ctx.lease = ctx._coordinator.heartbeat(ctx.lease)  # noqa: SLF001
                ctx._renewed = time.monotonic()  # noqa: SLF001
            except (StaleAttempt, CheckpointCancelled) as exc:
                log.warning("%s: heartbeat stopped: %s", ctx.token, exc)
                return
            except StoreUnavailable as exc:
                log.warning("%s: heartbeat failed (%s); trying again", ctx.token, exc)
                if self.stop.wait(min(interval, 1.0)):
                    return
            except Exception:  # a dying heartbeat only lets the lease expire: the attempt is fenced
                log.exception("%s: heartbeat stopped", ctx.token)
                return


def _check_arguments(  # noqa: PLR0917
    batches: object,
    process: object,
    transient: object,
    max_attempts: object,
    on_progress: object,
    confirm_timeout: object,
) -> None:
    """Refuse bad arguments before anything is written."""
    if not isinstance(batches, Sequence) or isinstance(batches, str | bytes):
        raise InvalidInput("batches", f"expected a sequence, got {type(batches).__name__}")
    if not callable(process):
        raise InvalidInput("process", f"expected a callable, got {type(process).__name__}")
    if not isinstance(transient, tuple) or not all(
        isinstance(t, type) and issubclass(t, BaseException) for t in transient
    ):
        raise InvalidInput("transient", "expected a tuple of exception classes")
    check_count(max_attempts, "max_attempts", minimum=1)
    if on_progress is not None and not callable(on_progress):
        raise InvalidInput("on_progress", "expected a callable or None")
    check_seconds(confirm_timeout, "confirm_timeout")
