"""The hot path builds states and yield events without pydantic's per-call machinery.

``apply`` evolves a ``CheckpointState`` and ``decide_yield`` builds its ``Yielded`` by setting
the model's internals directly (a fraction of ``model_copy`` / ``model_construct``'s cost).
These tests pin that the results are ordinary models, indistinguishable from validated ones,
so a pydantic release that changes those internals fails here rather than in production.
"""

from __future__ import annotations

import copy
import pickle
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ledger import CheckpointState, Ledger, Yielded
from ledger.checkpoint import apply, decide_yield

if TYPE_CHECKING:
    from pydantic import BaseModel


def assert_ordinary(model: BaseModel) -> None:
    cls = type(model)
    revalidated = cls.model_validate(model.model_dump())
    assert revalidated == model
    assert cls.model_validate_json(model.model_dump_json()) == model
    assert revalidated.model_dump_json() == model.model_dump_json()
    assert pickle.loads(pickle.dumps(model)) == model  # noqa: S301  (our own bytes)
    assert copy.deepcopy(model) == model
    assert model.model_fields_set <= set(cls.model_fields)
    assert model.model_extra is None
    assert repr(model) == repr(revalidated)


def test_every_state_along_a_life_is_an_ordinary_model() -> None:
    with Ledger.open("memory://") as ledger:
        token = ledger.create_checkpoint("fast", 0, total_batches=1, metadata={"m": 1})
        ledger.checkpoint_yield(token, 1, 1, {"sum": 1})
        ledger.fail_checkpoint(token, "upstream timed out", transient=True, error_type="E")
        ledger.retry_checkpoint(token)
        ledger.checkpoint_yield(token, {"key": "v", "n": [1, 2]}, 5)
        ledger.reset_checkpoint(token, "operator")
        ledger.checkpoint_yield(token, "k-2", 2, {"sum": 3})
        ledger.complete_checkpoint(token, {"ok": True})

        state: CheckpointState | None = None
        for event in ledger.checkpoint_events(token):
            state = apply(state, event)
            assert_ordinary(state)
        assert state == ledger.get_checkpoint(token)


def test_a_yield_event_built_on_the_fast_path_equals_a_validated_one() -> None:
    with Ledger.open("memory://") as ledger:
        token = ledger.create_checkpoint("fast-yield", 0)
        state = ledger.get_checkpoint(token)
    now = datetime.now(UTC)

    event = decide_yield(state, now, {"page": 3}, 30, {"sum": 6}, command_id="c-1")

    assert isinstance(event, Yielded)
    assert_ordinary(event)
    validated = Yielded.model_validate(
        {
            "originator_id": state.token.checkpoint_id,
            "originator_version": state.version + 1,
            "timestamp": now,
            "attempt": state.attempt,
            "cursor": {"page": 3},
            "items_processed": 30,
            "accumulated_results": {"sum": 6},
            "command_id": "c-1",
            "lease_expires_at": None,
        }
    )
    assert event == validated
    assert event.model_dump_json() == validated.model_dump_json()
    assert event.model_fields_set == validated.model_fields_set
    assert_ordinary(apply(state, event))
