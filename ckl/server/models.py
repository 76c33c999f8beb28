"""The bodies the HTTP API takes and gives: pydantic models, so ``/openapi.json`` is exact.

Request bodies are strict (``"5"`` is not an int, unknown keys are refused) and frozen; the
ledger checks them again, as it checks every caller. Responses reuse the ledger's and the
projections' own models (``CheckpointState``, ``Lease``, ``RunSummary``…), so a JSON key
means the same everywhere: the API, ``ckl … --json`` and Python.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, SerializeAsAny

from ledger import CheckpointEvent, CheckpointState, Lease
from projections import (
    CheckpointSummary,
    FailureRecord,
    RunProgress,
    RunSummary,
    StuckCheckpoint,
    TimelineEntry,
)

__all__ = [
    "CheckpointEventEntry",
    "ClaimBody",
    "ClaimNextBody",
    "ClaimNextResult",
    "CompleteBody",
    "CreateBody",
    "EventList",
    "FailBody",
    "FailureList",
    "Health",
    "LeaseBody",
    "PendingList",
    "ReasonBody",
    "RunDetail",
    "RunList",
    "StuckList",
    "Timeline",
    "VerifyBody",
    "YieldBody",
]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class _Fenced(_Body):
    attempt: int | None = Field(
        default=None, description="The attempt this write belongs to (fences stale workers)."
    )
    lease: Lease | None = Field(
        default=None, description="The lease this write is made under, as claim returned it."
    )


class CreateBody(_Body):
    """``create_checkpoint``'s options (the body may be empty or absent)."""

    total_batches: int | None = Field(default=None, description="How many batches the run has.")
    metadata: dict[str, JsonValue] | None = Field(
        default=None, description="Anything to keep with it (e.g. {'total_items': 1000})."
    )


class YieldBody(_Fenced):
    """``checkpoint_yield``: progress on an open checkpoint, durable when the reply comes."""

    cursor: int | str | dict[str, JsonValue] | list[JsonValue] = Field(
        description="Where to resume: an offset, a key, or a JSON object."
    )
    items_processed: int = Field(description="Items done so far this attempt (never less).")
    accumulated_results: dict[str, JsonValue] | None = None


class CompleteBody(_Fenced):
    """``complete_checkpoint``: the durable confirmation, with its result."""

    result: JsonValue = None


class FailBody(_Fenced):
    """``fail_checkpoint``: the current attempt failed (transient ones may be retried)."""

    error: str = Field(description="The failure's message.")
    error_type: str | None = Field(default=None, description="The error's type ('Error').")
    transient: bool = False
    traceback: str | None = Field(default=None, description="The worker's traceback, if any.")
    host: str | None = Field(default=None, description="The worker's host (default: server's).")
    pid: int | None = Field(default=None, description="The worker's process id.")


class ReasonBody(_Body):
    """``reset_checkpoint`` and ``cancel_checkpoint``: why (kept in the audit)."""

    reason: str


class ClaimBody(_Body):
    """``claim_checkpoint``: take (or take over, or renew) the checkpoint's lease."""

    owner: str = Field(description="Who claims: unique per worker, e.g. 'host:pid'.")
    ttl: float = Field(description="Seconds the lease lasts without a write or heartbeat.")


class ClaimNextBody(ClaimBody):
    """``claim_next``: the run's first claimable checkpoint, in batch order."""

    retry_delay: float = Field(default=1.0, description="First back-off of a transient failure.")
    max_retry_delay: float = Field(default=60.0, description="Longest back-off.")


class LeaseBody(_Body):
    """``heartbeat`` and ``release``: the lease as claim returned it."""

    lease: Lease


class VerifyBody(_Body):
    """``verify_chains``: one run, or the whole store."""

    run_id: str | None = None


class ClaimNextResult(BaseModel):
    """What ``claim-next`` found: a lease, or ``null`` when nothing is claimable now."""

    lease: Lease | None


class CheckpointEventEntry(BaseModel):
    """One event of a checkpoint, with its topic (what kind of event it is)."""

    topic: str = Field(description="The event's kind: checkpoint.Created, checkpoint.Yielded…")
    event: SerializeAsAny[CheckpointEvent] = Field(
        description="The event with all its fields (a Yielded with its cursor…)."
    )


class EventList(BaseModel):
    """A checkpoint's events in version order (a page of them)."""

    events: list[CheckpointEventEntry]
    next_after_version: int | None = Field(description="Pass as after_version for the next page.")


class RunDetail(BaseModel):
    """A run's progress and each batch's state, now or as of a moment."""

    run_id: str
    as_of: str | None = Field(description="The moment asked for (ISO-8601), or null for now.")
    progress: RunProgress
    items_processed: int
    total_items: int | None = Field(
        description="Summed metadata.total_items of the batches that declare it."
    )
    checkpoints: list[CheckpointState]


class RunList(BaseModel):
    """The store's runs, latest activity first."""

    runs: list[RunSummary]


class Timeline(BaseModel):
    """A page of a run's events in global order."""

    entries: list[TimelineEntry]
    next_after: int | None = Field(description="Pass as `after` for the next page (null: done).")


class PendingList(BaseModel):
    """A run's open checkpoints and where each resumes."""

    pending: list[CheckpointSummary]


class StuckList(BaseModel):
    """Open checkpoints nobody is moving, longest idle first."""

    stuck: list[StuckCheckpoint]


class FailureList(BaseModel):
    """A page of the failure audit, oldest first."""

    failures: list[FailureRecord]
    next_after: int | None = Field(description="Pass as `after` for the next page (null: done).")


class Health(BaseModel):
    """Liveness and where the server's log reading stands."""

    status: Literal["ok"]
    store: str = Field(description="The store, password masked.")
    version: str
    views_position: int = Field(
        description="The global position the views have applied (queries bring them up to date)."
    )
    stream_position: int = Field(description="The global position the event streams have reached.")
    streams: int = Field(description="Event streams attached now.")
    awaiting: int = Field(description="Long-polls (…/await) waiting now.")
