"""What the projection queries return: frozen pydantic models, JSON-ready."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

from ledger import CheckpointEvent, Cursor, JSONObject, Status

__all__ = [
    "CheckpointSummary",
    "FailureRecord",
    "History",
    "HistoryEntry",
    "RunProgress",
    "TimelineEntry",
]


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

    @property
    def fraction(self) -> float | None:
        """Completed / total_batches, when the total is known."""
        return None if not self.total_batches else self.completed / self.total_batches


class FailureRecord(_Frozen):
    """One ``Failed`` event and what became of it."""

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


class TimelineEntry(_Frozen):
    """One event of a run, at its place in the global order."""

    position: int
    at: datetime
    batch_index: int
    version: int
    topic: str
    event: SerializeAsAny[CheckpointEvent]
