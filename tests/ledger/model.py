"""A plain-Python model of one checkpoint's state machine: dicts and a transition table.

Written independently of ``ledger.checkpoint`` so the state machine tests compare two
implementations of the rules in ARCHITECTURE.md, not one implementation with itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from ledger import (
    ConflictingCommand,
    InvalidTransition,
    LedgerError,
    ProgressWentBackwards,
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


@dataclass
class Outcome:
    """What a command should do: raise ``error``, or leave ``state`` (``wrote`` an event or not)."""

    state: ModelCheckpoint | None = None
    wrote: bool = False
    error: type[LedgerError] | None = None


@dataclass
class LedgerModel:
    """Checkpoints by batch index, each with its past states by version."""

    checkpoints: dict[int, ModelCheckpoint] = field(default_factory=dict)
    history: dict[int, dict[int, ModelCheckpoint]] = field(default_factory=dict)
    events: int = 0

    def commit(self, batch: int, outcome: Outcome) -> None:
        """Apply an outcome the real ledger agreed with."""
        if outcome.error is None and outcome.state is not None:
            self.checkpoints[batch] = outcome.state
            self.history.setdefault(batch, {})[outcome.state.version] = outcome.state
            if outcome.wrote:
                self.events += 1

    def create(self, batch: int) -> Outcome:
        if batch in self.checkpoints:
            return Outcome(self.checkpoints[batch], wrote=False)
        return Outcome(ModelCheckpoint(), wrote=True)

    @staticmethod
    def _step(cp: ModelCheckpoint, event: str, **changes: Any) -> Outcome:
        return Outcome(replace(cp, version=cp.version + 1, last_event=event, **changes), wrote=True)

    def checkpoint_yield(self, batch: int, cursor: Any, items: int, results: Any) -> Outcome:
        cp = self.checkpoints[batch]
        if cp.status != "open":
            return Outcome(error=InvalidTransition)
        if items < cp.items:
            return Outcome(error=ProgressWentBackwards)
        if (
            cp.last_event == "Yielded"
            and items == cp.items
            and canon(cursor) == canon(cp.cursor)
            and canon(results) == canon(cp.results)
        ):
            return Outcome(cp, wrote=False)
        return self._step(
            cp, "Yielded", cursor=cursor, items=items, results=results, yields=cp.yields + 1
        )

    def complete(self, batch: int, result: Any) -> Outcome:
        cp = self.checkpoints[batch]
        if cp.status == "completed":
            if canon(cp.result) == canon(result):
                return Outcome(cp, wrote=False)
            return Outcome(error=ConflictingCommand)
        if cp.status == "failed":
            return Outcome(error=InvalidTransition)
        return self._step(
            cp, "Completed", status="completed", result=result, last_transition="completed"
        )

    def fail(self, batch: int, message: str, transient: bool) -> Outcome:
        cp = self.checkpoints[batch]
        error = ("Error", message, transient)
        if cp.status == "failed":
            if cp.error == error:
                return Outcome(cp, wrote=False)
            return Outcome(error=ConflictingCommand)
        if cp.status == "completed":
            return Outcome(error=InvalidTransition)
        return self._step(cp, "Failed", status="failed", error=error, last_transition="failed")

    def retry(self, batch: int) -> Outcome:
        cp = self.checkpoints[batch]
        if cp.status == "open":
            if cp.last_transition == "retried":
                return Outcome(cp, wrote=False)
            return Outcome(error=InvalidTransition)
        if cp.status == "completed" or (cp.error is not None and not cp.error[2]):
            return Outcome(error=InvalidTransition)
        return self._step(
            cp,
            "Retried",
            status="open",
            attempt=cp.attempt + 1,
            error=None,
            last_transition="retried",
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
        )
