"""The Checkpoint aggregate: identity, state, the state machine and its guards.

The aggregate is two pure functions over frozen models:

* :func:`apply` folds one event into a :class:`CheckpointState` (how the past is read);
* the ``decide_*`` functions turn a command and the current state into the one event to append,
  ``None`` when the command is an idempotent repeat, or a typed error (how the future is written).

State machine (yields, claims, renewals and releases never change the status)::

    open ─yield*─▶ open ─complete─▶ completed   (terminal, except for reset)
                     └───fail────▶ failed ─retry (transient only)─▶ open, attempt+1, cursor kept
    open or failed ─cancel─▶ cancelled           (terminal, except for reset)
    any state ─reset─▶ open, attempt+1, cursor and results cleared

Leases and fencing (many workers): a worker claims an open checkpoint (``Claimed``) and holds
its lease until it expires; yields made under the lease renew it. Claiming a transiently
failed checkpoint retries it in the same event; claiming one whose lease expired takes it
over: a new attempt that resumes from the last cursor. A write carries the attempt it was
issued under and, from a leaseholder, its lease id: a write for a superseded attempt
(reset, retry, takeover) is refused with ``StaleAttempt``, one under a lease that is no longer
the checkpoint's with ``LeaseLost``, one without a lease while another owner's lease is live
with ``CheckpointClaimed``. All of it is decided here, from the event history alone, so it
holds under optimistic concurrency without a lock: two writers deciding from the same version
cannot both append.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import BaseModel, ConfigDict

from ledger._json import Cursor, JSONObject, JSONValue, same_json
from ledger.checks import check_count, check_run_id
from ledger.errors import (
    CheckpointCancelled,
    CheckpointClaimed,
    CheckpointFailedError,
    ConflictingCommand,
    InvalidInput,
    InvalidTransition,
    LeaseLost,
    ProgressWentBackwards,
    StaleAttempt,
)
from ledger.events import (
    Cancelled,
    CheckpointEvent,
    Claimed,
    Completed,
    Created,
    Failed,
    LeaseRenewed,
    Released,
    Reset,
    Retried,
    Status,
    Yielded,
)
from ledger.typed import read_as

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "CHECKPOINT_NAMESPACE",
    "CheckpointError",
    "CheckpointState",
    "CheckpointToken",
    "Fence",
    "Lease",
    "apply",
    "check_token",
    "checkpoint_id_for",
    "decide_cancel",
    "decide_claim",
    "decide_complete",
    "decide_fail",
    "decide_heartbeat",
    "decide_release",
    "decide_reset",
    "decide_retry",
    "decide_yield",
    "failure_of",
    "retry_due_at",
    "run_is_settled",
]

CHECKPOINT_NAMESPACE = uuid5(NAMESPACE_URL, "https://checkpoint-ledger.dev/checkpoint")
"""Namespace of checkpoint ids; changing it would orphan every stored checkpoint."""

T = TypeVar("T")

Transition: TypeAlias = Literal["created", "completed", "failed", "retried", "reset", "cancelled"]

RECENT_COMMANDS = 64
"""How many of the latest command ids a state keeps, so that a re-sent command is found without
a query; the store's unique index on ``(checkpoint, command id)`` covers the older ones."""


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
    owner: str | None = None
    """Who holds the lease (``None``: nobody; complete, fail, retry, reset, release end it)."""
    lease_id: str | None = None
    lease_ttl: float | None = None
    lease_expires_at: datetime | None = None
    """When the lease expires unless renewed, on the ledger's clock."""
    cancel_reason: str | None = None
    recent_commands: tuple[str, ...] = ()
    """The ids of the latest commands applied (at most ``RECENT_COMMANDS``), newest last."""
    recent_topics: tuple[str, ...] = ()
    """The topic of the event each of ``recent_commands`` appended, in the same order."""
    taken_over_from: str | None = None
    """The owner whose expired lease the current lease took over (``None``: no takeover)."""
    unproductive_attempts: int = 0
    """Ended attempts in a row (retried or taken over) that made no progress."""
    attempt_started_items: int = 0
    """``items_processed`` when the current attempt began."""

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
        """True when completed, failed permanently or cancelled: nothing happens without a reset.

        The one meaning of "settled" (archiving, ``ckl tail --progress``, the demo): an open
        checkpoint may still progress and a transient failure may still be retried, so
        neither is settled. (An await ends at any failure, transient or not: see
        :func:`failure_of`.)
        """
        if self.status in {"completed", "cancelled"}:
            return True
        return self.status == "failed" and self.error is not None and not self.error.transient

    @property
    def stalled_attempts(self) -> int:
        """Attempts in a row without progress, the current one included if it made none.

        What ``max_attempts`` counts: an attempt that moved ``items_processed`` forward resets
        it, so a long batch that keeps progressing between transient failures is not stopped.
        """
        if self.items_processed > self.attempt_started_items:
            return 0  # this attempt moved forward: the streak is broken
        return self.unproductive_attempts + 1

    def command_topic(self, command_id: str) -> str | None:
        """The topic of the event ``command_id`` appended, if it is among the recent ones."""
        for cid, topic in zip(
            reversed(self.recent_commands), reversed(self.recent_topics), strict=False
        ):
            if cid == command_id:
                return topic
        return None

    def lease_is_live(self, now: datetime) -> bool:
        """True when someone holds the lease and it has not expired at ``now``."""
        return self.owner is not None and (
            self.lease_expires_at is None or self.lease_expires_at > now
        )

    # Typed views (ledger/typed.py): the worker's own types, validated, instead of JSON unions.
    def cursor_as(self, kind: type[T]) -> T | None:
        """The cursor as ``kind`` (a model, a TypedDict, ``int``…), or ``None`` if none yet.

        Raises:
            PayloadMismatch: the stored cursor does not fit ``kind``.
        """
        return None if self.cursor is None else read_as(kind, self.cursor, "cursor")

    def results_as(self, kind: type[T]) -> T | None:
        """The accumulated results as ``kind``, or ``None`` if the last yield carried none.

        Raises:
            PayloadMismatch: the stored results do not fit ``kind``.
        """
        if self.accumulated_results is None:
            return None
        return read_as(kind, self.accumulated_results, "accumulated_results")

    def result_as(self, kind: type[T]) -> T:
        """The completion's result as ``kind`` (``None`` fits only a type that allows it).

        Raises:
            PayloadMismatch: the stored result does not fit ``kind``.
        """
        return read_as(kind, self.result, "result")


class Lease(BaseModel):
    """A worker's hold on one checkpoint, from ``claim_checkpoint`` or ``claim_next``.

    Pass it as ``lease=`` to every write: the write is fenced by it (refused with
    ``LeaseLost`` once another worker took the checkpoint over, or an operator reset,
    retried or cancelled it) and renews it. ``expires_at`` is the expiry when the lease was
    given or last renewed through :meth:`Ledger.heartbeat`; writes renew it further.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: CheckpointToken
    owner: str
    attempt: int
    lease_id: str
    ttl: float
    expires_at: datetime
    taken_over: bool = False
    """True when this lease took the checkpoint over from an owner whose lease had expired."""
    previous_owner: str | None = None

    @classmethod
    def of(cls, state: CheckpointState) -> Lease:
        """The lease a state records (it must have one)."""
        if state.owner is None or state.lease_id is None or state.lease_expires_at is None:
            msg = f"{state.token} holds no lease"
            raise ValueError(msg)
        return cls(
            token=state.token,
            owner=state.owner,
            attempt=state.attempt,
            lease_id=state.lease_id,
            ttl=state.lease_ttl or 0.0,
            expires_at=state.lease_expires_at,
            taken_over=state.taken_over_from is not None,
            previous_owner=state.taken_over_from,
        )


class Fence(BaseModel):
    """What a write was issued under: the attempt, and the lease if the writer holds one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempt: int | None = None
    lease_id: str | None = None
    owner: str | None = None

    @classmethod
    def of(cls, attempt: int | None, lease: Lease | None) -> Fence | None:
        """The fence of a write's ``attempt=`` and ``lease=`` arguments (``None``: unfenced)."""
        if lease is not None:
            return cls(attempt=lease.attempt, lease_id=lease.lease_id, owner=lease.owner)
        if attempt is not None:
            return cls(attempt=attempt)
        return None


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
            recent_commands=() if event.command_id is None else (event.command_id,),
            recent_topics=() if event.command_id is None else (event.topic,),
        )
    if state is None:
        msg = f"event {event.topic} v{event.originator_version} has no Created before it"
        raise ValueError(msg)
    common: dict[str, object] = {
        "version": event.originator_version,
        "updated_at": event.timestamp,
        "last_event": event.topic,
    }
    if event.command_id is not None:
        keep = 1 - RECENT_COMMANDS
        common["recent_commands"] = (*state.recent_commands[keep:], event.command_id)
        common["recent_topics"] = (*state.recent_topics[keep:], event.topic)
    effect = _EFFECTS.get(type(event))
    if effect is None:
        msg = f"unknown event type {type(event).__name__}"
        raise TypeError(msg)
    changes = effect(state, event)
    return _evolve(state, {**state.__dict__, **common, **changes}, common.keys() | changes.keys())


_NO_LEASE: dict[str, object] = {
    "owner": None,
    "lease_id": None,
    "lease_ttl": None,
    "lease_expires_at": None,
    "taken_over_from": None,
}


def _yielded(state: CheckpointState, event: Any) -> dict[str, object]:  # noqa: ANN401
    changes: dict[str, object] = {
        "cursor": event.cursor,
        "items_processed": event.items_processed,
        "accumulated_results": event.accumulated_results,
        "yields": state.yields + 1,
    }
    if event.lease_expires_at is not None:
        changes["lease_expires_at"] = event.lease_expires_at
    return changes


def _completed(state: CheckpointState, event: Any) -> dict[str, object]:  # noqa: ANN401, ARG001
    return {
        "status": "completed",
        "result": event.result,
        "last_transition": "completed",
        **_NO_LEASE,
    }


def _failed(state: CheckpointState, event: Any) -> dict[str, object]:  # noqa: ANN401, ARG001
    return {
        "status": "failed",
        "error": CheckpointError(
            type=event.error_type, message=event.message, transient=event.transient
        ),
        "last_transition": "failed",
        **_NO_LEASE,
    }


def _retried(state: CheckpointState, event: Any) -> dict[str, object]:  # noqa: ANN401
    return {
        "status": "open",
        "attempt": event.attempt,
        "error": None,
        "last_transition": "retried",
        **_NO_LEASE,
        **_next_attempt(state),
    }


def _reset(state: CheckpointState, event: Any) -> dict[str, object]:  # noqa: ANN401, ARG001
    return {
        "status": "open",
        "attempt": event.attempt,
        "cursor": None,
        "items_processed": 0,
        "accumulated_results": None,
        "result": None,
        "error": None,
        "last_transition": "reset",
        "last_reset_reason": event.reason,
        "cancel_reason": None,
        "unproductive_attempts": 0,
        "attempt_started_items": 0,
        **_NO_LEASE,
    }


def _claimed(state: CheckpointState, event: Any) -> dict[str, object]:  # noqa: ANN401
    changes: dict[str, object] = {
        "owner": event.owner,
        "lease_id": event.lease_id,
        "lease_ttl": event.ttl,
        "lease_expires_at": event.lease_expires_at,
        "taken_over_from": event.previous_owner if event.taken_over else None,
    }
    if event.retried or event.taken_over:
        changes.update(status="open", attempt=event.attempt, error=None, **_next_attempt(state))
        if event.retried:
            changes["last_transition"] = "retried"
    return changes


def _renewed(state: CheckpointState, event: Any) -> dict[str, object]:  # noqa: ANN401, ARG001
    return {"lease_expires_at": event.lease_expires_at}


def _released(state: CheckpointState, event: Any) -> dict[str, object]:  # noqa: ANN401, ARG001
    return dict(_NO_LEASE)


def _cancelled(state: CheckpointState, event: Any) -> dict[str, object]:  # noqa: ANN401, ARG001
    return {
        "status": "cancelled",
        "cancel_reason": event.reason,
        "last_transition": "cancelled",
        **_NO_LEASE,
    }


# Each event's effect on the state (``Any``: each function receives its own event type).
_EFFECTS: dict[type[CheckpointEvent], Callable[[CheckpointState, Any], dict[str, object]]] = {
    Yielded: _yielded,
    Completed: _completed,
    Failed: _failed,
    Retried: _retried,
    Reset: _reset,
    Claimed: _claimed,
    LeaseRenewed: _renewed,
    Released: _released,
    Cancelled: _cancelled,
}


def _next_attempt(state: CheckpointState) -> dict[str, object]:
    """The bookkeeping of ``max_attempts`` when a new attempt resumes from the cursor."""
    progressed = state.items_processed > state.attempt_started_items
    return {
        "unproductive_attempts": 0 if progressed else state.unproductive_attempts + 1,
        "attempt_started_items": state.items_processed,
    }


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


def _header(state: CheckpointState, now: datetime, command_id: str | None) -> dict[str, object]:
    return {
        "originator_id": state.token.checkpoint_id,
        "originator_version": state.version + 1,
        "timestamp": now,
        "command_id": command_id,
    }


def _expiry(now: datetime, ttl: float) -> datetime:
    return now + timedelta(seconds=ttl)


def _check_write(state: CheckpointState, now: datetime, fence: Fence | None) -> None:
    """The fencing every worker write (yield, complete, fail) passes before its own rules."""
    token = str(state.token)
    if state.status == "cancelled":
        raise CheckpointCancelled(token, state.cancel_reason or "cancelled")
    if fence is not None and fence.lease_id is not None and fence.lease_id != state.lease_id:
        raise LeaseLost(token, fence.owner or "?", state.owner, fence.attempt or 0, state.attempt)
    if fence is not None and fence.attempt is not None and fence.attempt != state.attempt:
        raise StaleAttempt(token, fence.attempt, state.attempt)
    if (fence is None or fence.lease_id is None) and state.lease_is_live(now):
        raise CheckpointClaimed(token, state.owner or "?", _iso(state.lease_expires_at))


def _failed_kind(state: CheckpointState) -> str:
    if state.status != "failed" or state.error is None:
        return state.status
    return "failed (transient)" if state.error.transient else "failed permanently"


def _after_failure(state: CheckpointState) -> str:
    """What to do about a failed checkpoint: a retry keeps the progress, a reset loses it."""
    if state.error is not None and state.error.transient:
        return "retry it to resume from its last cursor (retry_checkpoint, or ckl retry)"
    return "a permanent failure stops the batch; reset it to redo it from the start"


def _iso(moment: datetime | None) -> str:
    return "never" if moment is None else moment.isoformat()


def decide_yield(
    state: CheckpointState,
    now: datetime,
    cursor: Cursor,
    items_processed: int,
    accumulated_results: JSONObject | None,
    *,
    command_id: str | None = None,
    fence: Fence | None = None,
) -> Yielded | None:
    """A yield on an open checkpoint; repeating the latest yield unchanged is a no-op.

    Under a lease (``fence.lease_id``) the yield renews it: the event carries the new expiry.
    """
    _check_write(state, now, fence)
    if state.status != "open":
        raise InvalidTransition(
            str(state.token),
            _failed_kind(state),
            "checkpoint_yield",
            _after_failure(state) if state.status == "failed" else "",
        )
    if items_processed < state.items_processed:
        raise ProgressWentBackwards(
            str(state.token), state.attempt, state.items_processed, items_processed
        )
    leased = fence is not None and fence.lease_id is not None
    if (
        not leased
        and state.last_event == Yielded.topic
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
            "command_id": command_id,
            "attempt": state.attempt,
            "cursor": cursor,
            "items_processed": items_processed,
            "accumulated_results": accumulated_results,
            "lease_expires_at": _expiry(now, state.lease_ttl or 0.0) if leased else None,
        },
    )
    _set(event, "__pydantic_fields_set__", set(_YIELDED_FIELDS))
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


def decide_complete(
    state: CheckpointState,
    now: datetime,
    result: JSONValue,
    *,
    command_id: str | None = None,
    fence: Fence | None = None,
) -> Completed | None:
    """Completing an open checkpoint; the same result again is a no-op, another one an error."""
    if state.status == "completed":
        if same_json(state.result, result):
            return None
        raise ConflictingCommand(str(state.token), "completed", "complete_checkpoint")
    _check_write(state, now, fence)
    if state.status == "failed":
        raise InvalidTransition(
            str(state.token), _failed_kind(state), "complete_checkpoint", _after_failure(state)
        )
    return Completed.model_validate(
        {**_header(state, now, command_id), "attempt": state.attempt, "result": result}
    )


def decide_fail(  # noqa: PLR0917
    state: CheckpointState,
    now: datetime,
    error_type: str,
    message: str,
    transient: bool,
    context: Mapping[str, object] | None = None,
    *,
    command_id: str | None = None,
    fence: Fence | None = None,
) -> Failed | None:
    """Failing an open checkpoint; the same failure again is a no-op, another one an error.

    ``context``: the failure's ``traceback``, ``host`` and ``pid``, recorded as they are.
    """
    if state.status == "failed":
        if state.error == CheckpointError(type=error_type, message=message, transient=transient):
            return None
        raise ConflictingCommand(
            str(state.token),
            _failed_kind(state),
            "fail_checkpoint",
            f"it already failed with another error; {_after_failure(state)}",
        )
    if state.status == "completed":
        raise InvalidTransition(str(state.token), "completed", "fail_checkpoint")
    _check_write(state, now, fence)
    return Failed.model_validate(
        {
            **_header(state, now, command_id),
            **(context or {}),
            "attempt": state.attempt,
            "error_type": error_type,
            "message": message,
            "transient": transient,
            "cursor": state.cursor,
            "items_processed": state.items_processed,
        }
    )


def decide_retry(
    state: CheckpointState, now: datetime, *, command_id: str | None = None
) -> Retried | None:
    """Retrying after a transient failure; a retry already applied is a no-op."""
    if state.status == "open":
        if state.last_transition == "retried":
            return None
        raise InvalidTransition(
            str(state.token), "open", "retry_checkpoint", "only a failed checkpoint can be retried"
        )
    if state.status in {"completed", "cancelled"}:
        raise InvalidTransition(str(state.token), state.status, "retry_checkpoint")
    if state.error is not None and not state.error.transient:
        raise InvalidTransition(
            str(state.token),
            "failed permanently",
            "retry_checkpoint",
            "a permanent failure stops the batch; reset it to redo it",
        )
    return Retried.model_validate({**_header(state, now, command_id), "attempt": state.attempt + 1})


def decide_reset(
    state: CheckpointState, now: datetime, reason: str, *, command_id: str | None = None
) -> Reset | None:
    """An operator reset, allowed in any state; the same reset repeated at once is a no-op."""
    if state.last_event == Reset.topic and state.last_reset_reason == reason:
        return None
    return Reset.model_validate(
        {**_header(state, now, command_id), "attempt": state.attempt + 1, "reason": reason}
    )


def decide_cancel(
    state: CheckpointState, now: datetime, reason: str, *, command_id: str | None = None
) -> Cancelled | None:
    """An operator cancel of an open or failed checkpoint; the same cancel again is a no-op."""
    if state.status == "cancelled":
        if state.cancel_reason == reason:
            return None
        raise ConflictingCommand(
            str(state.token),
            "cancelled",
            "cancel_checkpoint",
            "it was cancelled for another reason",
        )
    if state.status == "completed":
        raise InvalidTransition(
            str(state.token), "completed", "cancel_checkpoint", "its work is done and durable"
        )
    return Cancelled.model_validate(
        {**_header(state, now, command_id), "attempt": state.attempt, "reason": reason}
    )


def decide_claim(
    state: CheckpointState,
    now: datetime,
    owner: str,
    ttl: float,
    lease_id: str,
    *,
    command_id: str | None = None,
) -> Claimed | LeaseRenewed:
    """A claim of the checkpoint's lease by ``owner`` for ``ttl`` seconds.

    Open and unowned: the claim continues the current attempt. Transiently failed: it
    retries (attempt+1, from the last cursor). Leased by another owner whose lease expired:
    it takes over (attempt+1, from the last cursor, naming the previous owner). Leased by
    ``owner`` itself: the lease is renewed (a ``LeaseRenewed``, the same lease id; a
    ``Claimed`` with the same lease id when the ttl changes).

    Raises:
        CheckpointClaimed: another owner's lease is live.
        CheckpointCancelled: the checkpoint was cancelled.
        InvalidTransition: completed, or failed permanently.
    """
    token = str(state.token)
    if state.status == "cancelled":
        raise CheckpointCancelled(token, state.cancel_reason or "cancelled")
    if state.status == "completed":
        raise InvalidTransition(token, "completed", "claim_checkpoint", "nothing is left to do")
    header = _header(state, now, command_id)
    expires = _expiry(now, ttl)
    if state.status == "failed":
        if state.error is not None and not state.error.transient:
            raise InvalidTransition(
                token,
                "failed permanently",
                "claim_checkpoint",
                "a permanent failure stops the batch; reset it to redo it",
            )
        return Claimed.model_validate(
            {
                **header,
                "attempt": state.attempt + 1,
                "owner": owner,
                "lease_id": lease_id,
                "ttl": ttl,
                "lease_expires_at": expires,
                "retried": True,
            }
        )
    if state.owner == owner and state.lease_id is not None:
        if ttl == state.lease_ttl:
            return LeaseRenewed.model_validate(
                {**header, "lease_id": state.lease_id, "lease_expires_at": expires}
            )
        # The same owner asks for another ttl: the same lease, claimed again with it.
        return Claimed.model_validate(
            {
                **header,
                "attempt": state.attempt,
                "owner": owner,
                "lease_id": state.lease_id,
                "ttl": ttl,
                "lease_expires_at": expires,
            }
        )
    if state.owner is not None and state.lease_is_live(now):
        raise CheckpointClaimed(token, state.owner, _iso(state.lease_expires_at))
    taken_over = state.owner is not None
    return Claimed.model_validate(
        {
            **header,
            "attempt": state.attempt + 1 if taken_over else state.attempt,
            "owner": owner,
            "lease_id": lease_id,
            "ttl": ttl,
            "lease_expires_at": expires,
            "previous_owner": state.owner,
            "taken_over": taken_over,
        }
    )


def _check_lease(state: CheckpointState, lease: Lease) -> None:
    token = str(state.token)
    if state.status == "cancelled":
        raise CheckpointCancelled(token, state.cancel_reason or "cancelled")
    if state.lease_id != lease.lease_id:
        raise LeaseLost(token, lease.owner, state.owner, lease.attempt, state.attempt)


def decide_heartbeat(
    state: CheckpointState, now: datetime, lease: Lease, *, command_id: str | None = None
) -> LeaseRenewed:
    """Renew ``lease`` without progress.

    Raises:
        LeaseLost: the lease is no longer the checkpoint's.
        CheckpointCancelled: the checkpoint was cancelled.
    """
    _check_lease(state, lease)
    return LeaseRenewed.model_validate(
        {
            **_header(state, now, command_id),
            "lease_id": lease.lease_id,
            "lease_expires_at": _expiry(now, state.lease_ttl or lease.ttl),
        }
    )


def decide_release(
    state: CheckpointState, now: datetime, lease: Lease, *, command_id: str | None = None
) -> Released | None:
    """Give ``lease`` up; releasing it again is a no-op.

    Raises:
        LeaseLost: the lease was taken over, reset or retried before the release.
    """
    if state.lease_id is None and state.last_event == Released.topic:
        return None  # released, and nobody claimed since: the same release repeated
    if state.lease_id != lease.lease_id and state.status in {"completed", "failed"}:
        return None  # a complete or fail under the lease ended it already
    _check_lease(state, lease)
    return Released.model_validate({**_header(state, now, command_id), "lease_id": lease.lease_id})


def retry_due_at(state: CheckpointState, delay: float, max_delay: float) -> datetime:
    """When a transiently failed checkpoint may be retried: exponential back-off with jitter.

    The delay doubles with each attempt in a row that made no progress, up to ``max_delay``,
    times a jitter in [0.5, 1) that every process computes alike (from the checkpoint id and
    the attempt), so workers polling one run agree and do not retry in lockstep.
    """
    stalled = max(0, state.stalled_attempts - 1)
    base = min(max_delay, delay * 2.0 ** min(stalled, 30))
    digest = hashlib.blake2b(
        f"{state.token.checkpoint_id}/{state.attempt}".encode(), digest_size=8
    ).digest()
    jitter = 0.5 + int.from_bytes(digest) / 2**65
    return state.updated_at + timedelta(seconds=base * jitter)
