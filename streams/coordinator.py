"""Coordinator: the Effect seed's ``CheckpointCoordinator``, in Python, over the ledger.

One object for a worker: the seed's create / complete / fail / await / find / pending, plus the
ledger's yield, retry and reset. Unlike the seed's in-memory ``Deferred``, every signal is a
durable event, so an awaiter in another process, or one that starts after the fact, still gets
the outcome.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from projections import Projections
from streams.completion import await_checkpoint, await_checkpoint_async

if TYPE_CHECKING:
    from types import TracebackType

    from ledger import (
        CheckpointState,
        CheckpointToken,
        CursorInput,
        JSONObjectInput,
        JSONValue,
        Ledger,
    )

__all__ = ["Coordinator"]


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
    ) -> CheckpointToken:
        """The seed's ``createCheckpoint``: idempotent, returns the token."""
        return self.ledger.create_checkpoint(
            run_id, batch_index, total_batches=total_batches, metadata=metadata
        )

    def checkpoint_yield(
        self,
        token: CheckpointToken,
        cursor: CursorInput,
        items_processed: int,
        accumulated_results: JSONObjectInput | None = None,
    ) -> CheckpointState:
        """Save progress on an open checkpoint (durable when it returns)."""
        return self.ledger.checkpoint_yield(token, cursor, items_processed, accumulated_results)

    def complete_checkpoint(self, token: CheckpointToken, result: object = None) -> CheckpointState:
        """The seed's ``completeCheckpoint``: the durable signal awaiters receive."""
        return self.ledger.complete_checkpoint(token, result)

    def fail_checkpoint(
        self, token: CheckpointToken, error: BaseException | str, transient: bool = False
    ) -> CheckpointState:
        """The seed's ``failCheckpoint``: awaiters receive a ``CheckpointFailedError``."""
        return self.ledger.fail_checkpoint(token, error, transient)

    def retry_checkpoint(self, token: CheckpointToken) -> CheckpointState:
        """Next attempt after a transient failure, resuming from the last cursor."""
        return self.ledger.retry_checkpoint(token)

    def reset_checkpoint(self, token: CheckpointToken, reason: str) -> CheckpointState:
        """Operator reset: cursor and results cleared, a fresh attempt."""
        return self.ledger.reset_checkpoint(token, reason)

    def await_checkpoint(self, token: CheckpointToken, timeout: float | None = None) -> JSONValue:
        """The seed's ``awaitCheckpoint``: the result, or ``CheckpointFailedError`` / timeout."""
        return await_checkpoint(self.ledger, token, timeout)

    async def await_checkpoint_async(
        self,
        token: CheckpointToken,
        timeout: float | None = None,  # noqa: ASYNC109  (the seed's API)
    ) -> JSONValue:
        """Asyncio twin of :meth:`await_checkpoint`."""
        return await await_checkpoint_async(self.ledger, token, timeout)

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
