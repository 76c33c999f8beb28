"""completion: one checkpoint's outcome as an Observable, and blocking/asyncio awaits over it.

The order is the guarantee: **subscribe first, then read the current state**. The watcher is
registered before the first read, so a completion that happened before the subscription, in
another process, or while a connection was down is seen by the read, and one that happens after
it wakes the awaiter. Awaiting an already settled checkpoint returns at once.

A failure (transient or permanent) ends the wait with :class:`~ledger.CheckpointFailedError`,
carrying the error type, message, transient flag and attempt: a caller that retries the
checkpoint awaits it again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING

import reactivex
from reactivex.disposable import Disposable

from ledger import (
    AwaitTimeout,
    CheckpointFailedError,
    CheckpointState,
    InvalidInput,
    JSONValue,
    LedgerError,
    Recorded,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from reactivex import Observable, abc

    from ledger import CheckpointToken, Ledger

__all__ = ["await_checkpoint", "await_checkpoint_async", "completion"]

log = logging.getLogger("streams")


def _settled(state: CheckpointState, observer: abc.ObserverBase[JSONValue]) -> bool:
    if state.status == "completed":
        observer.on_next(state.result)
        observer.on_completed()
        return True
    if state.status == "failed" and state.error is not None:
        observer.on_error(
            CheckpointFailedError(
                str(state.token),
                state.error.type,
                state.error.message,
                state.error.transient,
                state.attempt,
            )
        )
        return True
    return False


def completion(ledger: Ledger, token: CheckpointToken) -> Observable[JSONValue]:
    """Emits the checkpoint's result once and completes, or errors with its failure.

    Errors:
        CheckpointFailedError: the checkpoint failed (or had failed before the subscription).
        CheckpointNotFound: the checkpoint does not exist.
    """
    oid = token.checkpoint_id

    def subscribe(
        observer: abc.ObserverBase[JSONValue], _scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        stop, wake = threading.Event(), threading.Event()
        latest: list[CheckpointState] = []

        def on_recorded(recorded: Recorded) -> None:
            # Same-process appends hand us the new state: no query needed to see it.
            if recorded.state.token.checkpoint_id == oid:
                latest.append(recorded.state)
                wake.set()

        remove = ledger.add_listener(on_recorded)
        unwatch = ledger.watch(wake.set)  # first subscribe…

        def run() -> None:
            delay = 0.1
            while not stop.is_set():
                wake.clear()
                try:
                    # …then read, so nothing settles unseen between the two.
                    # The newest state handed over wins; anything appended after this copy also
                    # set `wake`, and an empty list falls back to reading the store.
                    handed, latest[:] = latest[-1:], []
                    state = handed[0] if handed else ledger.get_checkpoint(token)
                    delay = 0.1
                except StoreUnavailable as exc:
                    log.warning("await paused, store unavailable (%s)", exc)
                    stop.wait(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                except LedgerError as exc:
                    observer.on_error(exc)
                    return
                if _settled(state, observer):
                    return
                wake.wait(ledger.settings.poll_interval)

        thread = threading.Thread(target=run, name=f"ckl-await-{token}", daemon=True)
        thread.start()

        def dispose() -> None:
            stop.set()
            wake.set()
            remove()
            unwatch()

        return Disposable(dispose)

    return reactivex.create(subscribe)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (isinstance(timeout, bool) or not timeout >= 0):
        raise InvalidInput("timeout", f"must be seconds ≥ 0 or None, got {timeout!r}")


def _settled_now(ledger: Ledger, token: CheckpointToken) -> tuple[bool, JSONValue]:
    """(True, result) if already completed; raises if already failed; else (False, None)."""
    state = ledger.get_checkpoint(token)
    if state.status == "completed":
        return True, state.result
    if state.status == "failed" and state.error is not None:
        raise CheckpointFailedError(
            str(state.token),
            state.error.type,
            state.error.message,
            state.error.transient,
            state.attempt,
        )
    return False, None


def await_checkpoint(
    ledger: Ledger, token: CheckpointToken, timeout: float | None = None
) -> JSONValue:
    """Block until the checkpoint completes; its result.

    A settled checkpoint returns (or raises) at once, even with ``timeout=0``. The wait is one
    ``threading.Event`` over the :func:`completion` observable: no timer threads are left
    behind when it returns.

    Raises:
        CheckpointFailedError: it failed.
        AwaitTimeout: not settled within ``timeout`` seconds (it may still settle later).
        CheckpointNotFound: no such checkpoint.
    """
    _check_timeout(timeout)
    done, result = _settled_now(ledger, token)
    if done:
        return result
    finished = threading.Event()
    outcome: list[JSONValue] = []
    failure: list[Exception] = []

    def on_error(exc: Exception) -> None:
        failure.append(exc)
        finished.set()

    subscription = completion(ledger, token).subscribe(
        on_next=outcome.append, on_error=on_error, on_completed=finished.set
    )
    try:
        if not finished.wait(timeout):
            raise AwaitTimeout(str(token), timeout or 0.0)
    finally:
        subscription.dispose()
    if failure:
        raise failure[0]
    return outcome[0]


async def await_checkpoint_async(
    ledger: Ledger,
    token: CheckpointToken,
    timeout: float | None = None,  # noqa: ASYNC109  (the seed's API: one call, one deadline)
) -> JSONValue:
    """Asyncio twin of :func:`await_checkpoint`, over the same observable.

    Raises:
        CheckpointFailedError: it failed.
        AwaitTimeout: not settled within ``timeout`` seconds.
        CheckpointNotFound: no such checkpoint.
    """
    _check_timeout(timeout)
    # A settled checkpoint answers at once, even with timeout=0 (read off the event loop).
    done, result = await asyncio.to_thread(_settled_now, ledger, token)
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
