"""A plain-Python model of one checkpoint's state machine: dicts and a transition table.

Written independently of ``ledger.checkpoint`` so the state machine tests compare two
implementations of the rules in ARCHITECTURE.md, not one implementation with itself.

Many workers: the model keeps its own clock (seconds since the machine's start, moved only by
the machine) and numbers the leases it hands out (1, 2, 3…) where the ledger draws random lease
ids; the machine maps one to the other. A write carries a :class:`ModelFence` (the attempt
and, from a leaseholder, the lease number). Every command that wrote an event has its command
id recorded on its checkpoint: re-sending it must write nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from ledger import (
    CheckpointCancelled,
    CheckpointClaimed,
    ConflictingCommand,
    InvalidTransition,
    LeaseLost,
    LedgerError,
    ProgressWentBackwards,
    StaleAttempt,
)


def canon(value: object) -> str:
    """JSON identity: 1, 1.0 and True differ."""
    return json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class ModelCheckpoint:
    """What the model knows of one checkpoint."""

    status: str = "open"
    attempt: int = 1
    cursor: Any = None
    items: int = 0
    results: Any = None
    result: Any = None
    error: tuple[str, str, bool] | None = None
    last_event: str = "Created"
    last_transition: str = "created"
    reset_reason: str | None = None
    version: int = 1
    yields: int = 0
    owner: str | None = None
    lease: int | None = None
    """The model's number of the current lease (``None``: nobody holds one)."""
    ttl: float | None = None
    expires: float | None = None
    """When the lease expires, in seconds on the model's clock."""
    cancel_reason: str | None = None
    taken_over_from: str | None = None
    commands: frozenset[str] = frozenset()
    """The ids of the commands that wrote this checkpoint's events."""

    def lease_is_live(self, now: float) -> bool:
        """Someone holds a lease that has not expired at ``now``."""
        return self.owner is not None and self.expires is not None and self.expires > now


NO_LEASE: dict[str, Any] = {
    "owner": None,
    "lease": None,
    "ttl": None,
    "expires": None,
    "taken_over_from": None,
}


@dataclass(frozen=True)
class ModelFence:
    """What a write was issued under: an attempt, and a lease (its number and owner) or none."""

    attempt: int | None = None
    lease: int | None = None
    owner: str | None = None


@dataclass
class Outcome:
    """What a command should do: raise ``error``, or leave ``state`` (``wrote`` an event or not)."""

    state: ModelCheckpoint | None = None
    wrote: bool = False
    error: type[LedgerError] | None = None
    lease: int | None = None
    """For a claim: the number of the lease it returns."""


@dataclass
class LedgerModel:
    """Checkpoints by batch index, each with its past states by version."""

    checkpoints: dict[int, ModelCheckpoint] = field(default_factory=dict)
    history: dict[int, dict[int, ModelCheckpoint]] = field(default_factory=dict)
    events: int = 0
    now: float = 0.0
    """The clock, in seconds since the start."""
    leases: int = 0
    """Lease numbers handed out so far."""
    command: str | None = None
    """The id of the command being decided (recorded on the checkpoint if it writes)."""

    def commit(self, batch: int, outcome: Outcome) -> None:
        """Apply an outcome the real ledger agreed with."""
        if outcome.error is None and outcome.state is not None:
            state = outcome.state
            if outcome.wrote and self.command is not None:
                state = replace(state, commands=state.commands | {self.command})
            self.checkpoints[batch] = state
            self.history.setdefault(batch, {})[state.version] = state
            if outcome.wrote:
                self.events += 1
            if outcome.lease is not None:
                self.leases = max(self.leases, outcome.lease)

    def create(self, batch: int) -> Outcome:
        if batch in self.checkpoints:
            return Outcome(self.checkpoints[batch], wrote=False)
        return Outcome(ModelCheckpoint(), wrote=True)

    @staticmethod
    def _step(cp: ModelCheckpoint, event: str, **changes: Any) -> Outcome:
        return Outcome(replace(cp, version=cp.version + 1, last_event=event, **changes), wrote=True)

    def _check_write(self, cp: ModelCheckpoint, fence: ModelFence) -> type[LedgerError] | None:
        """The fencing of a yield, complete or fail, in the order the rules give."""
        if cp.status == "cancelled":
            return CheckpointCancelled
        if fence.lease is not None and fence.lease != cp.lease:
            return LeaseLost
        if fence.attempt is not None and fence.attempt != cp.attempt:
            return StaleAttempt
        if fence.lease is None and cp.lease_is_live(self.now):
            return CheckpointClaimed
        return None

    def _renewed(self, cp: ModelCheckpoint, fence: ModelFence) -> dict[str, Any]:
        """A leaseholder's write renews its lease."""
        if fence.lease is None or cp.ttl is None:
            return {}
        return {"expires": self.now + cp.ttl}

    def checkpoint_yield(
        self, batch: int, cursor: Any, items: int, results: Any, fence: ModelFence = ModelFence()
    ) -> Outcome:
        cp = self.checkpoints[batch]
        refused = self._check_write(cp, fence)
        if refused is not None:
            return Outcome(error=refused)
        if cp.status != "open":
            return Outcome(error=InvalidTransition)
        if items < cp.items:
            return Outcome(error=ProgressWentBackwards)
        if (
            fence.lease is None
            and cp.last_event == "Yielded"
            and items == cp.items
            and canon(cursor) == canon(cp.cursor)
            and canon(results) == canon(cp.results)
        ):
            return Outcome(cp, wrote=False)
        return self._step(
            cp,
            "Yielded",
            cursor=cursor,
            items=items,
            results=results,
            yields=cp.yields + 1,
            **self._renewed(cp, fence),
        )

    def complete(self, batch: int, result: Any, fence: ModelFence = ModelFence()) -> Outcome:
        cp = self.checkpoints[batch]
        if cp.status == "completed":
            if canon(cp.result) == canon(result):
                return Outcome(cp, wrote=False)
            return Outcome(error=ConflictingCommand)
        refused = self._check_write(cp, fence)
        if refused is not None:
            return Outcome(error=refused)
        if cp.status == "failed":
            return Outcome(error=InvalidTransition)
        return self._step(
            cp,
            "Completed",
            status="completed",
            result=result,
            last_transition="completed",
            **NO_LEASE,
        )

    def fail(
        self, batch: int, message: str, transient: bool, fence: ModelFence = ModelFence()
    ) -> Outcome:
        cp = self.checkpoints[batch]
        error = ("Error", message, transient)
        if cp.status == "failed":
            if cp.error == error:
                return Outcome(cp, wrote=False)
            return Outcome(error=ConflictingCommand)
        if cp.status == "completed":
            return Outcome(error=InvalidTransition)
        refused = self._check_write(cp, fence)
        if refused is not None:
            return Outcome(error=refused)
        return self._step(
            cp, "Failed", status="failed", error=error, last_transition="failed", **NO_LEASE
        )

    def retry(self, batch: int) -> Outcome:
        cp = self.checkpoints[batch]
        if cp.status == "open":
            if cp.last_transition == "retried":
                return Outcome(cp, wrote=False)
            return Outcome(error=InvalidTransition)
        if cp.status in {"completed", "cancelled"} or (cp.error is not None and not cp.error[2]):
            return Outcome(error=InvalidTransition)
        return self._step(
            cp,
            "Retried",
            status="open",
            attempt=cp.attempt + 1,
            error=None,
            last_transition="retried",
            **NO_LEASE,
        )

    def reset(self, batch: int, reason: str) -> Outcome:
        cp = self.checkpoints[batch]
        if cp.last_event == "Reset" and cp.reset_reason == reason:
            return Outcome(cp, wrote=False)
        return self._step(
            cp,
            "Reset",
            status="open",
            attempt=cp.attempt + 1,
            cursor=None,
            items=0,
            results=None,
            result=None,
            error=None,
            last_transition="reset",
            reset_reason=reason,
            cancel_reason=None,
            **NO_LEASE,
        )

    def cancel(self, batch: int, reason: str) -> Outcome:
        cp = self.checkpoints[batch]
        if cp.status == "cancelled":
            if cp.cancel_reason == reason:
                return Outcome(cp, wrote=False)
            return Outcome(error=ConflictingCommand)
        if cp.status == "completed":
            return Outcome(error=InvalidTransition)
        return self._step(
            cp,
            "Cancelled",
            status="cancelled",
            cancel_reason=reason,
            last_transition="cancelled",
            **NO_LEASE,
        )

    def claim(self, batch: int, owner: str, ttl: float) -> Outcome:
        """A claim: continue, retry (transiently failed), take over (expired), or renew (own)."""
        cp = self.checkpoints[batch]
        if cp.status == "cancelled":
            return Outcome(error=CheckpointCancelled)
        if cp.status == "completed" or (cp.status == "failed" and not (cp.error and cp.error[2])):
            return Outcome(error=InvalidTransition)
        number = self.leases + 1
        lease = {"owner": owner, "lease": number, "ttl": ttl, "expires": self.now + ttl}
        if cp.status == "failed":
            outcome = self._step(
                cp,
                "Claimed",
                status="open",
                attempt=cp.attempt + 1,
                error=None,
                last_transition="retried",
                taken_over_from=None,
                **lease,
            )
            outcome.lease = number
            return outcome
        if cp.owner == owner:
            if ttl == cp.ttl:
                outcome = self._step(cp, "LeaseRenewed", expires=self.now + ttl)
            else:  # the same lease, claimed again with the new ttl
                outcome = self._step(
                    cp, "Claimed", expires=self.now + ttl, ttl=ttl, taken_over_from=None
                )
            outcome.lease = cp.lease
            return outcome
        if cp.lease_is_live(self.now):
            return Outcome(error=CheckpointClaimed)
        taken_over = cp.owner is not None
        outcome = self._step(
            cp,
            "Claimed",
            attempt=cp.attempt + 1 if taken_over else cp.attempt,
            taken_over_from=cp.owner if taken_over else None,
            **lease,
        )
        outcome.lease = number
        return outcome

    def heartbeat(self, batch: int, lease: int) -> Outcome:
        cp = self.checkpoints[batch]
        if cp.status == "cancelled":
            return Outcome(error=CheckpointCancelled)
        if cp.lease != lease or cp.ttl is None:
            return Outcome(error=LeaseLost)
        outcome = self._step(cp, "LeaseRenewed", expires=self.now + cp.ttl)
        outcome.lease = lease
        return outcome

    def release(self, batch: int, lease: int) -> Outcome:
        cp = self.checkpoints[batch]
        if cp.lease is None and cp.last_event == "Released":
            return Outcome(cp, wrote=False)
        if cp.lease != lease and cp.status in {"completed", "failed"}:
            return Outcome(cp, wrote=False)
        if cp.status == "cancelled":
            return Outcome(error=CheckpointCancelled)
        if cp.lease != lease:
            return Outcome(error=LeaseLost)
        return self._step(cp, "Released", **NO_LEASE)

    def resent(self, batch: int) -> Outcome:
        """A command re-sent with the id of one that wrote: the state as it is, nothing written."""
        return Outcome(self.checkpoints[batch], wrote=False)
