"""completion: one checkpoint's outcome as an Observable, and blocking/asyncio awaits over it.

The order is the guarantee: **subscribe first, then read the current state**. The watcher is
registered before the first read, so a completion that happened before the subscription, in
another process, or while a connection was down is seen by the read, and one that happens after
it wakes the awaiter. Awaiting a checkpoint already completed or failed returns at once.

A failure (transient or permanent) ends the wait with :class:`~ledger.CheckpointFailedError`,
carrying the error type, message, transient flag and attempt: a caller that retries the
checkpoint awaits it again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING

import reactivex
from reactivex.disposable import Disposable

from ledger import (
    AwaitTimeout,
    Backoff,
    CheckpointCancelled,
    CheckpointNotFound,
    CheckpointState,
    CheckpointToken,
    JSONValue,
    LedgerError,
    Recorded,
    StoreUnavailable,
    check_seconds,
    check_token,
    failure_of,
)

if TYPE_CHECKING:
    from reactivex import Observable, abc

    from ledger import Ledger

__all__ = ["await_checkpoint", "await_checkpoint_async", "completion"]

log = logging.getLogger("streams")


class _CheckpointWatch:
    """Subscribe first (ledger listener and log watcher), then read: no outcome goes unseen.

    Same-process appends hand over the new state (no query); other wake-ups read the store.
    """

    def __init__(self, ledger: Ledger, token: CheckpointToken) -> None:
        self.ledger, self.token = ledger, token
        self.wake = threading.Event()
        self._handed: list[CheckpointState] = []
        self._retry = Backoff()
        oid = token.checkpoint_id

        def on_recorded(recorded: Recorded) -> None:
            if recorded.state.token.checkpoint_id == oid:
                self._handed.append(recorded.state)
                self.wake.set()

        self._remove = ledger.add_listener(on_recorded)  # this process's own appends
        self._unwatch = ledger.reader.watch(self.wake.set)

    def ended(self) -> CheckpointState | None:
        """The state if completed or failed (transiently too), else None.

        Store outages are waited out: None after a pause.

        Raises:
            LedgerError: anything but the store being unavailable (e.g. CheckpointNotFound).
        """
        self.wake.clear()
        # The newest state handed over wins; anything appended after this copy also sets
        # `wake`, and an empty list falls back to reading the store.
        handed, self._handed[:] = self._handed[-1:], []
        try:
            state = handed[0] if handed else self._read()
            if state is None:
                return None
        except StoreUnavailable as exc:
            log.warning("await paused, store unavailable (%s)", exc)
            self.wake.wait(self._retry.next())
            return None
        self._retry.reset()
        return None if state.status == "open" else state

    def _read(self) -> CheckpointState | None:
        """The state on the reader; ``None`` while a checkpoint the primary has is not there yet.

        A checkpoint created on the primary reaches a standby a replication lag later: until
        then it is awaited, not reported missing (the primary says whether it exists).
        """
        reader = self.ledger.reader
        try:
            return reader.get_checkpoint(self.token)
        except CheckpointNotFound:
            if reader is self.ledger:
                raise
            self.ledger.get_checkpoint(self.token)  # CheckpointNotFound if it never existed
            return None

    def wait(self, timeout: float | None = None) -> None:
        """Sleep until woken, at most a poll interval (and at most ``timeout``)."""
        interval = self.ledger.settings.poll_interval
        self.wake.wait(interval if timeout is None else min(timeout, interval))

    def close(self) -> None:
        """Unsubscribe."""
        self.wake.set()
        self._remove()
        self._unwatch()


def completion(ledger: Ledger, token: CheckpointToken) -> Observable[JSONValue]:
    """Emits the checkpoint's result once and completes, or errors with its failure.

    Errors:
        CheckpointFailedError: the checkpoint failed (or had failed before the subscription).
        CheckpointNotFound: the checkpoint does not exist.

    Raises:
        InvalidInput: ``token`` is not a ``CheckpointToken`` (at once, not through the stream).
    """
    check_token(token)

    def subscribe(
        observer: abc.ObserverBase[JSONValue], _scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        stop = threading.Event()
        watch = _CheckpointWatch(ledger, token)

        def run() -> None:
            while not stop.is_set():
                try:
                    state = watch.ended()
                except LedgerError as exc:
                    observer.on_error(exc)
                    return
                if state is not None:
                    failure = _ending_error(state)
                    if failure is not None:
                        observer.on_error(failure)
                    else:
                        observer.on_next(state.result)
                        observer.on_completed()
                    return
                watch.wait()

        thread = threading.Thread(target=run, name=f"ckl-await-{token}", daemon=True)
        thread.start()

        def dispose() -> None:
            stop.set()
            watch.close()

        return Disposable(dispose)

    return reactivex.create(subscribe)


def _ending_error(state: CheckpointState) -> LedgerError | None:
    """The error an awaiter gets: its failure, ``CheckpointCancelled``, or ``None`` (completed)."""
    if state.status == "cancelled":
        return CheckpointCancelled(str(state.token), state.cancel_reason or "cancelled")
    return failure_of(state)


def _check_timeout(timeout: float | None) -> None:
    # No timeout, or any number of seconds ≥ 0: infinity waits as long as None does.
    if timeout is not None:
        check_seconds(timeout, "timeout", finite=False)


def _outcome_now(ledger: Ledger, token: CheckpointToken) -> tuple[bool, JSONValue]:
    """(True, result) if already completed; raises if already failed; else (False, None)."""
    state = ledger.get_checkpoint(token)
    failure = _ending_error(state)
    if failure is not None:
        raise failure
    if state.status == "completed":
        return True, state.result
    return False, None


def await_checkpoint(
    ledger: Ledger, token: CheckpointToken, timeout: float | None = None
) -> JSONValue:
    """Block until the checkpoint completes; its result.

    The same subscribe-then-read watch as :func:`completion`, run in the caller's own thread:
    a same-process completion wakes the caller directly, with no thread in between. A checkpoint
    already completed or failed returns (or raises) at once, even with ``timeout=0``.

    Raises:
        CheckpointFailedError: it failed.
        CheckpointCancelled: an operator cancelled it (there is no result to wait for).
        AwaitTimeout: neither completed nor failed within ``timeout`` seconds (it may still
            do so later).
        CheckpointNotFound: no such checkpoint.
    """
    _check_timeout(timeout)
    done, result = _outcome_now(ledger, token)  # ended already: no need to watch at all
    if done:
        return result
    deadline = None if timeout is None else time.monotonic() + timeout
    watch = _CheckpointWatch(ledger, token)
    try:
        while True:
            state = watch.ended()
            if state is not None:
                failure = _ending_error(state)
                if failure is not None:
                    raise failure
                return state.result
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise AwaitTimeout(str(token), timeout or 0.0)
            watch.wait(remaining)
    finally:
        watch.close()


async def await_checkpoint_async(
    ledger: Ledger,
    token: CheckpointToken,
    timeout: float | None = None,  # noqa: ASYNC109  (the seed's API: one call, one deadline)
) -> JSONValue:
    """Asyncio twin of :func:`await_checkpoint`, over the same observable.

    Raises:
        CheckpointFailedError: it failed.
        AwaitTimeout: neither completed nor failed within ``timeout`` seconds.
        CheckpointNotFound: no such checkpoint.
    """
    _check_timeout(timeout)
    # An ended attempt answers at once, even with timeout=0 (read off the event loop).
    done, result = await asyncio.to_thread(_outcome_now, ledger, token)
    if done:
        return result
    loop = asyncio.get_running_loop()
    future: asyncio.Future[JSONValue] = loop.create_future()

    def resolve(value: JSONValue) -> None:
        if not future.done():
            future.set_result(value)

    def reject(exc: Exception) -> None:
        if not future.done():
            future.set_exception(exc)

    # The observable emits on its own thread: hand results to the loop thread-safely.
    def on_next(value: JSONValue) -> None:
        loop.call_soon_threadsafe(resolve, value)

    def on_error(exc: Exception) -> None:
        loop.call_soon_threadsafe(reject, exc)

    subscription = completion(ledger, token).subscribe(on_next=on_next, on_error=on_error)
    try:
        return await asyncio.wait_for(future, timeout)
    except TimeoutError:
        raise AwaitTimeout(str(token), timeout or 0.0) from None
    finally:
        subscription.dispose()
