"""What the projection queries return: frozen pydantic models, JSON-ready."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypeAlias
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

from ledger import CheckpointEvent, Cursor, JSONObject, Status

__all__ = [
    "AuditKind",
    "CheckpointSummary",
    "FailureRecord",
    "History",
    "HistoryEntry",
    "RunProgress",
    "RunStatus",
    "RunSummary",
    "StuckCheckpoint",
    "StuckReason",
    "TimelineEntry",
]

AuditKind: TypeAlias = Literal["failure", "takeover", "cancel"]
"""What a row of the failure audit records: a ``Failed``, a lease takeover or a cancel."""

RunStatus: TypeAlias = Literal["failed", "running", "completed"]
"""A run as a whole: ``failed`` if any checkpoint is failed (transient ones included, until
retried), else ``running`` while any is open or fewer than ``total_batches`` exist, else
``completed`` (every checkpoint completed or cancelled)."""

StuckReason: TypeAlias = Literal["lease expired", "idle"]
"""Why a checkpoint is stuck: its owner's lease ran out, or nothing happened for too long."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CheckpointSummary(_Frozen):
    """A checkpoint's current state, as the cursor view keeps it."""

    checkpoint_id: UUID
    run_id: str
    batch_index: int
    total_batches: int | None
    status: Status
    attempt: int
    cursor: Cursor | None
    items_processed: int
    accumulated_results: JSONObject | None
    yields: int = Field(description="Yields over the checkpoint's whole life.")
    version: int
    created_at: datetime
    updated_at: datetime
    position: int = Field(description="Global position of the last event applied to it.")
    owner: str | None = Field(description="Who holds the lease (None: unowned or ended).")
    lease_expires_at: datetime | None = Field(description="When the owner's lease runs out.")
    last_activity: datetime = Field(
        description="Time of the checkpoint's last event of any kind (claims and renewals too)."
    )


class HistoryEntry(_Frozen):
    """One yield in the bounded history."""

    seq: int = Field(description="1 for the checkpoint's first yield ever, 2 for the next…")
    attempt: int
    cursor: Cursor
    items_processed: int
    at: datetime
    position: int


class History(_Frozen):
    """The last N yields of a checkpoint (oldest first) and how many there were in all."""

    checkpoint_id: UUID
    total_yields: int
    entries: list[HistoryEntry]


class RunProgress(_Frozen):
    """Batches of a run by status; ``completed`` counts durable completions only."""

    run_id: str
    total_batches: int | None = Field(description="As declared at create, if it was.")
    created: int
    completed: int
    failed: int
    open: int
    cancelled: int

    @property
    def fraction(self) -> float | None:
        """Completed / total_batches, when the total is known."""
        return None if not self.total_batches else self.completed / self.total_batches


class RunSummary(_Frozen):
    """One run of the store, for a run list: counts by status, items, first and last activity."""

    run_id: str
    status: RunStatus
    total_batches: int | None = Field(description="The largest declared at create, if any.")
    created: int = Field(description="Checkpoints created.")
    completed: int
    failed: int
    open: int
    cancelled: int
    items_processed: int = Field(description="Summed over the run's checkpoints.")
    created_at: datetime = Field(description="When its first checkpoint was created.")
    last_activity: datetime = Field(description="The time of its latest event of any kind.")


class FailureRecord(_Frozen):
    """One row of the failure audit and what became of it.

    ``kind`` says what it records: ``"failure"`` (a ``Failed`` event, with its traceback, host
    and pid when the failure recorded them), ``"takeover"`` (a claim that took an expired lease:
    error type ``LeaseExpired``, transient, ``attempt`` the superseded one) or ``"cancel"``
    (error type ``Cancelled``, the reason as message, permanent). Only failures are resolved.
    """

    position: int
    checkpoint_id: UUID
    run_id: str
    batch_index: int
    attempt: int
    error_type: str
    message: str
    transient: bool
    cursor: Cursor | None
    items_processed: int
    failed_at: datetime
    resolution: Literal["retried", "reset"] | None
    resolved_at: datetime | None
    kind: AuditKind
    traceback: str | None
    host: str | None
    pid: int | None


class StuckCheckpoint(_Frozen):
    """An open checkpoint that nobody is moving: its lease expired, or it has been idle."""

    run_id: str
    batch_index: int
    status: Status
    attempt: int
    owner: str | None = Field(description="The lease's owner (the one presumed dead), if any.")
    lease_expires_at: datetime | None
    last_activity: datetime
    idle_seconds: float = Field(description="Seconds from the last activity to the query's now.")
    reason: StuckReason


class TimelineEntry(_Frozen):
    """One event of a run, at its place in the global order."""

    position: int
    at: datetime
    batch_index: int
    version: int
    topic: str
    event: SerializeAsAny[CheckpointEvent]
