"""The Checkpoint aggregate: identity, state, the state machine and its guards.

The aggregate is two pure functions over frozen models:

* :func:`apply` folds one event into a :class:`CheckpointState` (how the past is read);
* the ``decide_*`` functions turn a command and the current state into the one event to append,
  ``None`` when the command is an idempotent repeat, or a typed error (how the future is written).

State machine (yields never change the status)::

    open ─yield*─▶ open ─complete─▶ completed   (terminal, except for reset)
                     └───fail────▶ failed ─retry (transient only)─▶ open, attempt+1, cursor kept
    any state ─reset─▶ open, attempt+1, cursor and results cleared
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Literal, TypeAlias
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import BaseModel, ConfigDict

from ledger._json import Cursor, JSONObject, JSONValue, same_json
from ledger.checks import check_count, check_run_id
from ledger.errors import (
    CheckpointFailedError,
    ConflictingCommand,
    InvalidInput,
    InvalidTransition,
    ProgressWentBackwards,
)
from ledger.events import (
    CheckpointEvent,
    Completed,
    Created,
    Failed,
    Reset,
    Retried,
    Status,
    Yielded,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "CHECKPOINT_NAMESPACE",
    "CheckpointError",
    "CheckpointState",
    "CheckpointToken",
    "apply",
    "check_token",
    "checkpoint_id_for",
    "decide_complete",
    "decide_fail",
    "decide_reset",
    "decide_retry",
    "decide_yield",
    "failure_of",
    "run_is_settled",
]

CHECKPOINT_NAMESPACE = uuid5(NAMESPACE_URL, "https://checkpoint-ledger.dev/checkpoint")
"""Namespace of checkpoint ids; changing it would orphan every stored checkpoint."""

Transition: TypeAlias = Literal["created", "completed", "failed", "retried", "reset"]


@lru_cache(maxsize=65536)
def checkpoint_id_for(run_id: str, batch_index: int) -> UUID:
    """The checkpoint id of ``(run_id, batch_index)``: a uuid5, the same in every process."""
    return uuid5(CHECKPOINT_NAMESPACE, f"{len(run_id)}:{run_id}/{batch_index}")


class CheckpointToken(BaseModel):
    """Names one checkpoint: what ``create_checkpoint`` returns and every command takes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    batch_index: int
    checkpoint_id: UUID

    @classmethod
    def for_batch(cls, run_id: str, batch_index: int) -> CheckpointToken:
        """The token of ``(run_id, batch_index)``, whether or not the checkpoint exists.

        Raises:
            InvalidInput: a run id or batch index the ledger would refuse.
        """
        check_run_id(run_id)
        check_count(batch_index, "batch_index")
        return cls(
            run_id=run_id,
            batch_index=batch_index,
            checkpoint_id=checkpoint_id_for(run_id, batch_index),
        )

    def __str__(self) -> str:
        return f"{self.run_id}/{self.batch_index}"


class CheckpointError(BaseModel):
    """Why an attempt failed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    message: str
    transient: bool


class CheckpointState(BaseModel):
    """A checkpoint's state at one version, plus the worker-side accessors of the tasker seed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: CheckpointToken
    total_batches: int | None = None
    metadata: JSONObject
    status: Status
    attempt: int
    cursor: Cursor | None = None
    items_processed: int = 0
    accumulated_results: JSONObject | None = None
    result: JSONValue = None
    error: CheckpointError | None = None
    version: int
    created_at: datetime
    updated_at: datetime
    yields: int = 0
    """Yields recorded over the checkpoint's whole life (all attempts)."""
    last_transition: Transition = "created"
    """The last status-changing event (yields are not transitions)."""
    last_event: str = Created.topic
    """Topic of the last event, which decides whether a repeated command is a no-op."""
    last_reset_reason: str | None = None

    # The tasker seed's BatchWorkerContext accessors, so handlers read a checkpoint the same way.
    @property
    def checkpoint_cursor(self) -> Cursor | None:
        """Where to resume: the last yielded cursor of this attempt, or ``None``."""
        return self.cursor

    @property
    def checkpoint_items_processed(self) -> int:
        """Items done as of the last yield (0 when nothing was yielded)."""
        return self.items_processed

    def has_checkpoint(self) -> bool:
        """True when there is a cursor to resume from."""
        return self.cursor is not None

    @property
    def is_settled(self) -> bool:
        """True when completed or failed permanently: nothing more happens without a reset.

        The one meaning of "settled" (archiving, ``ckl tail --progress``, the demo): an open
        checkpoint may still progress and a transient failure may still be retried, so
        neither is settled. (An await ends at any failure, transient or not: see
        :func:`failure_of`.)
        """
        if self.status == "completed":
            return True
        return self.status == "failed" and self.error is not None and not self.error.transient


def run_is_settled(states: Mapping[int, CheckpointState]) -> bool:
    """True when a run is settled: every declared batch exists and each one is settled.

    Args:
        states: the run's checkpoint states by batch index (those that exist). The declared
            number of batches is the largest ``total_batches`` among them; a run that
            declares none is settled when every checkpoint it has is.
    """
    if not states:
        return False
    totals = [state.total_batches for state in states.values() if state.total_batches]
    if totals and len(states) < max(totals):
        return False
    return all(state.is_settled for state in states.values())


def failure_of(state: CheckpointState) -> CheckpointFailedError | None:
    """The error an awaiter of this state receives: its failure, or ``None`` unless failed.

    Transient failures included: the awaiter decides whether to retry and await again.
    """
    error = state.error
    if state.status != "failed" or error is None:
        return None
    return CheckpointFailedError(
        str(state.token), error.type, error.message, error.transient, state.attempt
    )


def check_token(token: object) -> CheckpointToken:
    """The token if it is a ``CheckpointToken`` the ledger could have given.

    Raises:
        InvalidInput: not a token, or its checkpoint id does not match its run and batch.
    """
    if not isinstance(token, CheckpointToken):
        raise InvalidInput(
            "token",
            f"expected a CheckpointToken (from create_checkpoint or find_checkpoint), "
            f"got {type(token).__name__}",
        )
    if checkpoint_id_for(token.run_id, token.batch_index) != token.checkpoint_id:
        raise InvalidInput(
            "token", f"checkpoint_id does not match {token}; use the token the ledger gave"
        )
    return token


def apply(state: CheckpointState | None, event: CheckpointEvent) -> CheckpointState:
    """Fold one event into the state: the only place the state machine's effects live."""
    if isinstance(event, Created):
        return CheckpointState(
            token=CheckpointToken(
                run_id=event.run_id,
                batch_index=event.batch_index,
                checkpoint_id=event.originator_id,
            ),
            total_batches=event.total_batches,
            metadata=event.metadata,
            status="open",
            attempt=1,
            version=event.originator_version,
            created_at=event.timestamp,
            updated_at=event.timestamp,
        )
    if state is None:
        msg = f"event {event.topic} v{event.originator_version} has no Created before it"
        raise ValueError(msg)
    common = {
        "version": event.originator_version,
        "updated_at": event.timestamp,
        "last_event": event.topic,
    }
    if isinstance(event, Yielded):
        changes: dict[str, object] = {
            "cursor": event.cursor,
            "items_processed": event.items_processed,
            "accumulated_results": event.accumulated_results,
            "yields": state.yields + 1,
        }
    elif isinstance(event, Completed):
        changes = {"status": "completed", "result": event.result, "last_transition": "completed"}
    elif isinstance(event, Failed):
        changes = {
            "status": "failed",
            "error": CheckpointError(
                type=event.error_type, message=event.message, transient=event.transient
            ),
            "last_transition": "failed",
        }
    elif isinstance(event, Retried):
        changes = {
            "status": "open",
            "attempt": event.attempt,
            "error": None,
            "last_transition": "retried",
        }
    elif isinstance(event, Reset):
        changes = {
            "status": "open",
            "attempt": event.attempt,
            "cursor": None,
            "items_processed": 0,
            "accumulated_results": None,
            "result": None,
            "error": None,
            "last_transition": "reset",
            "last_reset_reason": event.reason,
        }
    else:
        msg = f"unknown event type {type(event).__name__}"
        raise TypeError(msg)
    return _evolve(state, {**state.__dict__, **common, **changes}, common.keys() | changes.keys())


_new = object.__new__
_set = object.__setattr__  # pydantic's frozen models refuse their own __setattr__


def _evolve(
    state: CheckpointState, values: dict[str, object], changed: set[str]
) -> CheckpointState:
    """``state.model_copy(update=...)`` for the hot path: the same model, a third cheaper.

    ``values`` is the new state's whole field dict (the old one with the changes applied), all
    already typed by the event they come from. As ``model_copy`` does, the fields set are the
    old ones plus the changed ones; CheckpointState has no extra and no private attributes.
    """
    new = _new(CheckpointState)
    _set(new, "__dict__", values)
    _set(new, "__pydantic_fields_set__", state.__pydantic_fields_set__ | changed)
    _set(new, "__pydantic_extra__", None)
    _set(new, "__pydantic_private__", None)
    return new


_YIELDED_FIELDS = frozenset(Yielded.model_fields)


def _header(state: CheckpointState, now: datetime) -> dict[str, object]:
    return {
        "originator_id": state.token.checkpoint_id,
        "originator_version": state.version + 1,
        "timestamp": now,
    }


def decide_yield(
    state: CheckpointState,
    now: datetime,
    cursor: Cursor,
    items_processed: int,
    accumulated_results: JSONObject | None,
) -> Yielded | None:
    """A yield on an open checkpoint; repeating the latest yield unchanged is a no-op."""
    if state.status != "open":
        raise InvalidTransition(
            str(state.token),
            state.status,
            "checkpoint_yield",
            "retry it after a transient failure, or reset it to redo it"
            if state.status == "failed"
            else "",
        )
    if items_processed < state.items_processed:
        raise ProgressWentBackwards(
            str(state.token), state.attempt, state.items_processed, items_processed
        )
    if (
        state.last_event == Yielded.topic
        and state.items_processed == items_processed
        and same_json(state.cursor, cursor)
        and same_json(state.accumulated_results, accumulated_results)
    ):
        return None
    # The Ledger validated the payload and the rest comes from the state: build the event
    # without validating it a second time. What ``Yielded.model_construct(...)`` builds with
    # every field given, at a fifth of its cost (the hot path of every yield).
    event = _new(Yielded)
    _set(
        event,
        "__dict__",
        {
            "originator_id": state.token.checkpoint_id,
            "originator_version": state.version + 1,
            "timestamp": now,
            "attempt": state.attempt,
            "cursor": cursor,
            "items_processed": items_processed,
            "accumulated_results": accumulated_results,
        },
    )
    _set(event, "__pydantic_fields_set__", set(_YIELDED_FIELDS))
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


def decide_complete(state: CheckpointState, now: datetime, result: JSONValue) -> Completed | None:
    """Completing an open checkpoint; the same result again is a no-op, another one an error."""
    if state.status == "completed":
        if same_json(state.result, result):
            return None
        raise ConflictingCommand(str(state.token), "completed", "complete_checkpoint")
    if state.status == "failed":
        raise InvalidTransition(
            str(state.token),
            "failed",
            "complete_checkpoint",
            "retry it first if the failure was transient, or reset it to redo it",
        )
    return Completed.model_validate(
        {**_header(state, now), "attempt": state.attempt, "result": result}
    )


def decide_fail(
    state: CheckpointState, now: datetime, error_type: str, message: str, transient: bool
) -> Failed | None:
    """Failing an open checkpoint; the same failure again is a no-op, another one an error."""
    if state.status == "failed":
        if state.error == CheckpointError(type=error_type, message=message, transient=transient):
            return None
        raise ConflictingCommand(str(state.token), "failed", "fail_checkpoint")
    if state.status == "completed":
        raise InvalidTransition(str(state.token), "completed", "fail_checkpoint")
    return Failed.model_validate(
        {
            **_header(state, now),
            "attempt": state.attempt,
            "error_type": error_type,
            "message": message,
            "transient": transient,
            "cursor": state.cursor,
            "items_processed": state.items_processed,
        }
    )


def decide_retry(state: CheckpointState, now: datetime) -> Retried | None:
    """Retrying after a transient failure; a retry already applied is a no-op."""
    if state.status == "open":
        if state.last_transition == "retried":
            return None
        raise InvalidTransition(
            str(state.token), "open", "retry_checkpoint", "only a failed checkpoint can be retried"
        )
    if state.status == "completed":
        raise InvalidTransition(str(state.token), "completed", "retry_checkpoint")
    if state.error is not None and not state.error.transient:
        raise InvalidTransition(
            str(state.token),
            "failed permanently",
            "retry_checkpoint",
            "a permanent failure stops the batch; reset it to redo it",
        )
    return Retried.model_validate({**_header(state, now), "attempt": state.attempt + 1})


def decide_reset(state: CheckpointState, now: datetime, reason: str) -> Reset | None:
    """An operator reset, allowed in any state; the same reset repeated at once is a no-op."""
    if state.last_event == Reset.topic and state.last_reset_reason == reason:
        return None
    return Reset.model_validate(
        {**_header(state, now), "attempt": state.attempt + 1, "reason": reason}
    )
