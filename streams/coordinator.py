"""Coordinator: the Effect seed's ``CheckpointCoordinator``, in Python, over the ledger.

One object for a worker: the seed's create / complete / fail / await / find / pending, plus the
ledger's yield, retry, reset and cancel, and its leases (claim, heartbeat, release, claim_next)
for workers that share a run. Each command passes the ledger's keywords through unchanged:
``attempt=`` and ``lease=`` (fencing) on the writes, ``command_id=`` on every command. Typed
payloads: a cursor, results or result may be a pydantic model (dumped to JSON, then checked as
any payload), and ``await_checkpoint(..., result_type=T)`` returns the result as a ``T``. Unlike the
seed's in-memory ``Deferred``, every signal is a durable event, so an awaiter in another process,
or one that starts after the fact, still gets the outcome.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self, TypeVar, overload

from ledger.typed import read_as, to_json
from projections import Projections
from streams.completion import await_checkpoint, await_checkpoint_async

if TYPE_CHECKING:
    from types import TracebackType

    from pydantic import BaseModel

    from ledger import (
        CheckpointState,
        CheckpointToken,
        CursorInput,
        JSONObjectInput,
        JSONValue,
        Lease,
        Ledger,
    )

__all__ = ["Coordinator"]

T = TypeVar("T")


class Coordinator:
    """Create, signal and await checkpoints; see the ``Ledger`` methods for each contract."""

    def __init__(self, ledger: Ledger, projections: Projections | None = None) -> None:
        """Coordinate over ``ledger``; pending tokens come from ``projections`` (made if None)."""
        self.ledger = ledger
        self._own_projections = projections is None
        self.projections = projections if projections is not None else Projections(ledger)

    def create_checkpoint(
        self,
        run_id: str,
        batch_index: int,
        *,
        total_batches: int | None = None,
        metadata: JSONObjectInput | None = None,
        command_id: str | None = None,
    ) -> CheckpointToken:
        """The seed's ``createCheckpoint``: idempotent, returns the token."""
        return self.ledger.create_checkpoint(
            run_id,
            batch_index,
            total_batches=total_batches,
            metadata=metadata,
            command_id=command_id,
        )

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
        """Save progress on an open checkpoint (durable when it returns), fenced if asked."""
        return self.ledger.checkpoint_yield(
            token,
            to_json(cursor),
            items_processed,
            to_json(accumulated_results),
            attempt=attempt,
            lease=lease,
            command_id=command_id,
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
        """The seed's ``completeCheckpoint``: the durable signal awaiters receive."""
        return self.ledger.complete_checkpoint(
            token, to_json(result), attempt=attempt, lease=lease, command_id=command_id
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
        """The seed's ``failCheckpoint``: awaiters receive a ``CheckpointFailedError``."""
        return self.ledger.fail_checkpoint(
            token,
            error,
            transient,
            error_type=error_type,
            attempt=attempt,
            lease=lease,
            command_id=command_id,
            traceback_text=traceback_text,
            host=host,
            pid=pid,
        )

    def retry_checkpoint(
        self, token: CheckpointToken, *, command_id: str | None = None
    ) -> CheckpointState:
        """Next attempt after a transient failure, resuming from the last cursor."""
        return self.ledger.retry_checkpoint(token, command_id=command_id)

    def reset_checkpoint(
        self, token: CheckpointToken, reason: str, *, command_id: str | None = None
    ) -> CheckpointState:
        """Operator reset: cursor and results cleared, a fresh attempt."""
        return self.ledger.reset_checkpoint(token, reason, command_id=command_id)

    def cancel_checkpoint(
        self, token: CheckpointToken, reason: str, *, command_id: str | None = None
    ) -> CheckpointState:
        """Operator cancel: terminal; the worker learns it at its next write."""
        return self.ledger.cancel_checkpoint(token, reason, command_id=command_id)

    def claim_checkpoint(
        self, token: CheckpointToken, owner: str, ttl: float, *, command_id: str | None = None
    ) -> Lease:
        """Take the checkpoint's lease for ``ttl`` seconds (or take an expired one over)."""
        return self.ledger.claim_checkpoint(token, owner, ttl, command_id=command_id)

    def heartbeat(self, lease: Lease, *, command_id: str | None = None) -> Lease:
        """Renew ``lease`` without progress; the lease with its new expiry."""
        return self.ledger.heartbeat(lease, command_id=command_id)

    def release(self, lease: Lease, *, command_id: str | None = None) -> CheckpointState:
        """Give ``lease`` up; another worker may claim the checkpoint at once."""
        return self.ledger.release(lease, command_id=command_id)

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
        """Claim the run's next batch that needs a worker, or ``None`` if none does now."""
        return self.ledger.claim_next(
            run_id,
            owner,
            ttl,
            retry_delay=retry_delay,
            max_retry_delay=max_retry_delay,
            command_id=command_id,
        )

    def run_states(self, run_id: str) -> dict[int, CheckpointState]:
        """Every checkpoint of ``run_id`` by batch index, read from the store."""
        return self.ledger.run_states(run_id)

    @overload
    def await_checkpoint(
        self, token: CheckpointToken, timeout: float | None = None, *, result_type: None = None
    ) -> JSONValue: ...
    @overload
    def await_checkpoint(
        self, token: CheckpointToken, timeout: float | None = None, *, result_type: type[T]
    ) -> T: ...
    def await_checkpoint(
        self,
        token: CheckpointToken,
        timeout: float | None = None,
        *,
        result_type: type[T] | None = None,
    ) -> JSONValue | T:
        """The seed's ``awaitCheckpoint``: the result, or ``CheckpointFailedError`` / timeout.

        With ``result_type`` the result is validated as that type (a model, a TypedDict…).

        Raises:
            PayloadMismatch: the result does not fit ``result_type``.
        """
        result = await_checkpoint(self.ledger, token, timeout)
        return result if result_type is None else read_as(result_type, result, "result")

    @overload
    async def await_checkpoint_async(
        self,
        token: CheckpointToken,
        timeout: float | None = None,  # noqa: ASYNC109  (the seed's API)
        *,
        result_type: None = None,
    ) -> JSONValue: ...
    @overload
    async def await_checkpoint_async(
        self,
        token: CheckpointToken,
        timeout: float | None = None,  # noqa: ASYNC109
        *,
        result_type: type[T],
    ) -> T: ...
    async def await_checkpoint_async(
        self,
        token: CheckpointToken,
        timeout: float | None = None,  # noqa: ASYNC109
        *,
        result_type: type[T] | None = None,
    ) -> JSONValue | T:
        """Asyncio twin of :meth:`await_checkpoint`."""
        result = await await_checkpoint_async(self.ledger, token, timeout)
        return result if result_type is None else read_as(result_type, result, "result")

    def find_checkpoint(self, run_id: str, batch_index: int) -> CheckpointToken | None:
        """The seed's ``findCheckpoint``: a key lookup, never a scan."""
        return self.ledger.find_checkpoint(run_id, batch_index)

    def get_checkpoint(self, token: CheckpointToken) -> CheckpointState:
        """The checkpoint's current state."""
        return self.ledger.get_checkpoint(token)

    def get_pending_checkpoints(self, run_id: str) -> list[CheckpointToken]:
        """The seed's ``getPendingCheckpoints``: the open checkpoints, as of now."""
        self.projections.sync()
        return self.projections.pending_checkpoints(run_id)

    def close(self) -> None:
        """Release the projections this coordinator made (the ledger stays open)."""
        if self._own_projections:
            self.projections.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
