"""The immutable facts of a checkpoint's life, as frozen pydantic models.

One event per accepted command: ``Created``, ``Yielded``, ``Completed``, ``Failed``, ``Retried``,
``Reset``. Each carries the checkpoint id (``originator_id``), its position in the checkpoint's
own sequence (``originator_version``, from 1) and the time it was decided (``timestamp``, UTC).
Events are validated when built and when read back, and never change once stored.
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
    "CheckpointEvent",
    "Completed",
    "Created",
    "Failed",
    "Reset",
    "Retried",
    "Snapshot",
    "Status",
    "Yielded",
]

Status: TypeAlias = Literal["open", "completed", "failed"]

RunId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
NonNegative = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]


class CheckpointEvent(BaseModel):
    """Base of all checkpoint events (eventsourcing's ``DomainEvent`` protocol)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    topic: ClassVar[str]
    """Stable name the event is stored under; never renamed once released."""

    originator_id: UUID
    originator_version: Positive
    timestamp: datetime


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


class Retried(CheckpointEvent):
    """After a transient failure, a new attempt resumes from the last cursor."""

    topic: ClassVar[str] = "checkpoint.Retried"
    attempt: Positive


class Reset(CheckpointEvent):
    """An operator cleared the cursor and results; a new attempt starts from scratch."""

    topic: ClassVar[str] = "checkpoint.Reset"
    attempt: Positive
    reason: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class Snapshot(CheckpointEvent):
    """The checkpoint's whole state at ``originator_version``, so loading never replays it all.

    Snapshots are derived data, kept in their own table; the event log alone is the truth.
    """

    topic: ClassVar[str] = "checkpoint.Snapshot"
    state: dict[str, StrictJSONValue]


EVENT_TYPES: dict[str, type[CheckpointEvent]] = {
    cls.topic: cls for cls in (Created, Yielded, Completed, Failed, Retried, Reset, Snapshot)
}
