"""The immutable facts of a checkpoint's life, as frozen pydantic models.

One event per accepted command: ``Created``, ``Yielded``, ``Completed``, ``Failed``, ``Retried``,
``Reset``, and for many workers ``Claimed``, ``LeaseRenewed``, ``Released`` and ``Cancelled``.
Each carries the checkpoint id (``originator_id``), its position in the checkpoint's own
sequence (``originator_version``, from 1), the time it was decided (``timestamp``, UTC, on the
ledger's clock: the database's on PostgreSQL) and the id of the command that decided it
(``command_id``; ``None`` only on events stored before command ids existed). Events are
validated when built and when read back, and never change once stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal, TypeAlias
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ledger._json import (
    StrictCursor,
    StrictJSONObject,
    StrictJSONValue,
)

__all__ = [
    "EVENT_TYPES",
    "Cancelled",
    "CheckpointEvent",
    "Claimed",
    "Completed",
    "Created",
    "Failed",
    "LeaseRenewed",
    "Released",
    "Reset",
    "Retried",
    "Snapshot",
    "Status",
    "Yielded",
]

Status: TypeAlias = Literal["open", "completed", "failed", "cancelled"]

RunId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
NonNegative = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
CommandId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Owner = Annotated[str, StringConstraints(min_length=1, max_length=200)]
LeaseId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class CheckpointEvent(BaseModel):
    """Base of all checkpoint events (eventsourcing's ``DomainEvent`` protocol)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    topic: ClassVar[str]
    """Stable name the event is stored under; never renamed once released."""

    originator_id: UUID
    originator_version: Positive
    timestamp: datetime
    command_id: CommandId | None = None
    """The command that decided this event: a re-sent command finds it and writes nothing."""


class Created(CheckpointEvent):
    """A checkpoint for ``(run_id, batch_index)`` was created; attempt 1 begins."""

    topic: ClassVar[str] = "checkpoint.Created"
    run_id: RunId
    batch_index: NonNegative
    total_batches: Positive | None = None
    metadata: StrictJSONObject = Field(default_factory=dict)


class Yielded(CheckpointEvent):
    """A worker saved progress: where it is, how many items are done, what it has so far."""

    topic: ClassVar[str] = "checkpoint.Yielded"
    attempt: Positive
    cursor: StrictCursor
    items_processed: NonNegative
    accumulated_results: StrictJSONObject | None = None
    lease_expires_at: datetime | None = None
    """Set when the yield was made under a lease: the lease's new expiry (a yield renews it)."""


class Completed(CheckpointEvent):
    """The checkpoint's work is done and durable; this is what progress counts."""

    topic: ClassVar[str] = "checkpoint.Completed"
    attempt: Positive
    result: StrictJSONValue = None


class Failed(CheckpointEvent):
    """An attempt failed; transient failures may be retried, permanent ones stop the batch."""

    topic: ClassVar[str] = "checkpoint.Failed"
    attempt: Positive
    error_type: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    message: str
    transient: bool
    cursor: StrictCursor | None = None
    items_processed: NonNegative = 0
    traceback: str | None = None
    """The exception's traceback, bounded like the message (``None`` for a failure by message)."""
    host: str | None = None
    """The host name of the process that recorded the failure."""
    pid: int | None = None
    """The process id that recorded the failure."""


class Retried(CheckpointEvent):
    """After a transient failure, a new attempt resumes from the last cursor."""

    topic: ClassVar[str] = "checkpoint.Retried"
    attempt: Positive


class Reset(CheckpointEvent):
    """An operator cleared the cursor and results; a new attempt starts from scratch."""

    topic: ClassVar[str] = "checkpoint.Reset"
    attempt: Positive
    reason: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class Claimed(CheckpointEvent):
    """A worker took the checkpoint's lease: until ``lease_expires_at`` no other worker may.

    ``taken_over``: the lease of ``previous_owner`` had expired and this claim took it; the
    previous owner's attempt is superseded (a new attempt resumes from the last cursor) and
    its later writes are refused. ``retried``: the claim started the next attempt after a
    transient failure (the retry and the claim in one event). Otherwise the attempt goes on.
    """

    topic: ClassVar[str] = "checkpoint.Claimed"
    attempt: Positive
    owner: Owner
    lease_id: LeaseId
    ttl: Annotated[float, Field(gt=0)]
    lease_expires_at: datetime
    previous_owner: Owner | None = None
    taken_over: bool = False
    retried: bool = False


class LeaseRenewed(CheckpointEvent):
    """The owner renewed its lease without progress (a heartbeat)."""

    topic: ClassVar[str] = "checkpoint.LeaseRenewed"
    lease_id: LeaseId
    lease_expires_at: datetime


class Released(CheckpointEvent):
    """The owner gave its lease up; the checkpoint stays open and another worker may claim it."""

    topic: ClassVar[str] = "checkpoint.Released"
    lease_id: LeaseId


class Cancelled(CheckpointEvent):
    """An operator cancelled the checkpoint: terminal (a reset reopens it); writes are refused."""

    topic: ClassVar[str] = "checkpoint.Cancelled"
    attempt: Positive
    reason: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class Snapshot(CheckpointEvent):
    """The checkpoint's whole state at ``originator_version``, so loading never replays it all.

    Snapshots are derived data, kept in their own table; the event log alone is the truth.
    """

    topic: ClassVar[str] = "checkpoint.Snapshot"
    state: dict[str, StrictJSONValue]


EVENT_TYPES: dict[str, type[CheckpointEvent]] = {
    cls.topic: cls
    for cls in (
        Created,
        Yielded,
        Completed,
        Failed,
        Retried,
        Reset,
        Claimed,
        LeaseRenewed,
        Released,
        Cancelled,
        Snapshot,
    )
}
