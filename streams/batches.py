"""run_batches: the Effect seed's sequence as a helper, resumable after a crash.

For each batch, strictly in order: create → process (with yields) → save (complete) → confirm
(await the durable completion) → progress. Progress is reported only after the confirmation, so
it never runs ahead of a durable checkpoint. Restarted after a crash (even SIGKILL mid-batch),
it skips completed batches and resumes the interrupted one from its last cursor. A transient
failure is recorded, retried up to ``max_attempts`` times (each attempt resuming from the last
cursor); a permanent one is recorded and stops the run: later batches are not started.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from ledger import (
    CheckpointState,
    CheckpointToken,
    Cursor,
    CursorInput,
    InvalidInput,
    JSONObject,
    JSONObjectInput,
    JSONValue,
    check_count,
    check_run_id,
    check_seconds,
    failure_of,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from streams.coordinator import Coordinator

__all__ = ["BatchContext", "BatchProgress", "RunReport", "run_batches"]

log = logging.getLogger("streams.batches")

T = TypeVar("T")


@dataclass
class BatchContext(Generic[T]):
    """What ``process`` gets: the batch, where to resume, and how to save progress.

    The accessors are the tasker seed's ``BatchWorkerContext``: ``checkpoint_cursor``,
    ``accumulated_results``, ``has_checkpoint()``, ``checkpoint_items_processed``.
    """

    run_id: str
    batch_index: int
    total_batches: int
    batch: T
    token: CheckpointToken
    state: CheckpointState
    _coordinator: Coordinator = field(repr=False)

    @property
    def attempt(self) -> int:
        """This attempt's number (1 for the first)."""
        return self.state.attempt

    @property
    def checkpoint_cursor(self) -> Cursor | None:
        """Where to resume: the last yielded cursor, or ``None`` to start from the beginning."""
        return self.state.checkpoint_cursor

    @property
    def accumulated_results(self) -> JSONObject | None:
        """What the last yield carried forward."""
        return self.state.accumulated_results

    def has_checkpoint(self) -> bool:
        """True when there is a cursor to resume from."""
        return self.state.has_checkpoint()

    @property
    def checkpoint_items_processed(self) -> int:
        """Items done as of the last yield."""
        return self.state.checkpoint_items_processed

    def checkpoint_yield(
        self,
        cursor: CursorInput,
        items_processed: int,
        accumulated_results: JSONObjectInput | None = None,
    ) -> CheckpointState:
        """Save progress; durable when it returns."""
        self.state = self._coordinator.checkpoint_yield(
            self.token, cursor, items_processed, accumulated_results
        )
        return self.state


@dataclass(frozen=True)
class BatchProgress:
    """Reported after each batch's completion is confirmed."""

    run_id: str
    batch_index: int
    completed: int
    total: int
    result: JSONValue
    resumed: bool
    """True when the batch was already completed before this call (a restart)."""


@dataclass(frozen=True)
class RunReport:
    """The outcome of :func:`run_batches`: every batch's confirmed result, in order."""

    run_id: str
    results: list[JSONValue]


def run_batches(
    coordinator: Coordinator,
    run_id: str,
    batches: Sequence[T],
    process: Callable[[BatchContext[T]], object],
    *,
    transient: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError),
    max_attempts: int = 3,
    on_progress: Callable[[BatchProgress], None] | None = None,
    confirm_timeout: float = 30.0,
) -> RunReport:
    """Process ``batches`` of ``run_id`` in order, checkpointed, resumable.

    Args:
        coordinator: the coordinator (and through it the ledger) to record with.
        run_id: the run; the same id resumes the same run.
        batches: one item per batch (whatever ``process`` needs: a range, a file name…).
        process: does one batch; may call ``ctx.checkpoint_yield`` as it goes and should
            resume from ``ctx.checkpoint_cursor``; its return value is the batch's result.
        transient: exception types that are worth retrying; any other is permanent.
        max_attempts: attempts per batch before a transient failure stops the run.
        on_progress: called after each confirmed completion.
        confirm_timeout: seconds to wait for the completion to be confirmed.

    Raises:
        CheckpointFailedError: a batch failed permanently, or transiently ``max_attempts``
            times; its error is the ``__cause__`` when it happened in this call.
        InvalidInput: bad arguments (checked before anything is written).
    """
    check_run_id(run_id)
    _check_arguments(batches, process, transient, max_attempts, on_progress, confirm_timeout)
    total = len(batches)
    results: list[JSONValue] = []
    for index, batch in enumerate(batches):
        token = coordinator.create_checkpoint(run_id, index, total_batches=total)
        state = coordinator.get_checkpoint(token)
        resumed = state.status == "completed"
        if not resumed:
            _run_one(coordinator, token, batch, process, transient, max_attempts)
        # Confirm: the durable completion, read back, before any progress is reported.
        result = coordinator.await_checkpoint(token, timeout=confirm_timeout)
        results.append(result)
        progress = BatchProgress(run_id, index, len(results), total, result, resumed)
        log.info("run %s: batch %d confirmed (%d/%d)", run_id, index, len(results), total)
        if on_progress is not None:
            on_progress(progress)
    return RunReport(run_id, results)


def _run_one(  # noqa: PLR0917
    coordinator: Coordinator,
    token: CheckpointToken,
    batch: T,
    process: Callable[[BatchContext[T]], object],
    transient: tuple[type[BaseException], ...],
    max_attempts: int,
) -> None:
    state = coordinator.get_checkpoint(token)
    while True:
        failure = failure_of(state)
        if failure is not None:
            if not _worth_retrying(state, max_attempts):
                raise failure
            state = coordinator.retry_checkpoint(token)
            log.info("%s: attempt %d resumes from %r", token, state.attempt, state.cursor)
        ctx = BatchContext(
            token.run_id,
            token.batch_index,
            state.total_batches or 0,
            batch,
            token,
            state,
            coordinator,
        )
        try:
            result = process(ctx)
        except Exception as exc:
            state = coordinator.fail_checkpoint(token, exc, isinstance(exc, transient))
            log.warning("%s: attempt %d failed: %r", token, state.attempt, exc)
            failure = failure_of(state)
            if failure is not None and not _worth_retrying(state, max_attempts):
                raise failure from exc
            continue
        coordinator.complete_checkpoint(token, result)
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


def _worth_retrying(state: CheckpointState, max_attempts: int) -> bool:
    return state.error is not None and state.error.transient and state.attempt < max_attempts
